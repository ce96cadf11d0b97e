//! The DNS server: a hickory `RequestHandler` answering from the index or forwarding, and the
//! `ClusterDns` actor that binds UDP and TCP and keeps the index in step with the informers.

use crate::forward::{self, Forwarder};
use crate::index::{Answer, IndexError, Resolver, DEFAULT_TTL};
use crate::metrics::{INDEX_REBUILDS, REQUESTS, REQUEST_SECONDS, RESPONSES};
use actix::{Actor, AsyncContext, Context};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::{Name, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_controller_runtime::{Change, Informer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind { proto: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// How the cluster DNS runs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Address for both UDP and TCP; port 0 picks one free for both.
    pub listen: SocketAddr,
    /// Cluster domain (kubelet's --cluster-domain).
    pub domain: String,
    pub ttl: u32,
    /// Where names outside the cluster domain go.
    pub upstreams: Vec<SocketAddr>,
    /// Per upstream; the client's own retry (glibc: 5 s) should exceed the total.
    pub forward_timeout: Duration,
    /// Idle TCP connections are closed after this.
    pub tcp_timeout: Duration,
}

impl DnsConfig {
    /// Defaults: cluster.local, TTL 5 s, the node's /etc/resolv.conf minus loopback, 2 s.
    pub fn new(listen: SocketAddr) -> DnsConfig {
        let upstreams = forward::upstreams_from_file("/etc/resolv.conf").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no upstream resolvers: names outside the cluster will fail");
            Vec::new()
        });
        DnsConfig {
            listen,
            domain: "cluster.local".into(),
            ttl: DEFAULT_TTL,
            upstreams,
            forward_timeout: Duration::from_secs(2),
            tcp_timeout: Duration::from_secs(10),
        }
    }
}

/// Answers one request: from the index when the name is in the cluster domain (or a known
/// ClusterIP's PTR), else from the upstreams.
pub struct Handler {
    resolver: Resolver,
    forwarder: Forwarder,
    /// The `server` label: the listen address as CoreDNS prints it (`dns://:53`).
    server: String,
}

impl Handler {
    pub fn new(resolver: Resolver, forwarder: Forwarder, listen: Option<std::net::SocketAddr>) -> Self {
        let server = listen.map_or_else(|| "dns://".to_string(), |a| format!("dns://{a}"));
        Handler { resolver, forwarder, server }
    }
}

fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::Unknown(_) => "other",
        t => t.into(),
    }
}

/// Rcode names as dig and CoreDNS's metrics spell them.
pub(crate) fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "other",
    }
}

fn failed(rcode: ResponseCode) -> ResponseInfo {
    let mut h = Header::new();
    h.set_response_code(rcode);
    h.into()
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let start = Instant::now();
        let builder = {
            let mut b = MessageResponseBuilder::from_message_request(request);
            if let Some(e) = request.edns() {
                let mut edns = Edns::new();
                edns.set_max_payload(e.max_payload().max(512));
                b.edns(edns);
            }
            b
        };
        let mut header = Header::response_from_request(request.header());
        let server = self.server.as_str();
        let proto = match request.protocol() {
            hickory_server::proto::xfer::Protocol::Tcp => "tcp",
            _ => "udp",
        };
        let family = if request.src().is_ipv6() { "2" } else { "1" };
        let info = match request.request_info() {
            Ok(i) if request.message_type() == MessageType::Query && request.op_code() == OpCode::Query => i,
            _ => {
                let rcode =
                    if request.op_code() == OpCode::Query { ResponseCode::FormErr } else { ResponseCode::NotImp };
                REQUESTS.with_label_values(&[server, ".", "", proto, family, "other"]).inc();
                RESPONSES.with_label_values(&[server, ".", "", rcode_label(rcode), ""]).inc();
                return match response.send_response(builder.error_msg(request.header(), rcode)).await {
                    Ok(i) => i,
                    Err(_) => failed(rcode),
                };
            }
        };
        let qname = Name::from(info.query.name().clone());
        let qtype = info.query.query_type();
        REQUESTS.with_label_values(&[server, ".", "", proto, family, type_label(qtype)]).inc();
        let span = tracing::debug_span!("dns_request", name = %qname, qtype = %qtype, src = %request.src());
        async move {
            let (source, sent) = match self.resolver.resolve(&qname, qtype) {
                Answer::Local { rcode, answers, additionals, soa } => {
                    header.set_authoritative(rcode != ResponseCode::ServFail);
                    header.set_response_code(rcode);
                    let msg =
                        builder.build(header, answers.iter(), std::iter::empty(), soa.as_deref(), additionals.iter());
                    ("kubernetes", response.send_response(msg).await)
                }
                Answer::Forward => {
                    header.set_recursion_available(true);
                    match self.forwarder.forward(&qname, qtype).await {
                        Ok(reply) => {
                            header.set_response_code(reply.response_code());
                            let msg = builder.build(
                                header,
                                reply.answers().iter(),
                                reply.name_servers().iter(),
                                std::iter::empty::<&Record>(),
                                reply.additionals().iter(),
                            );
                            ("forward", response.send_response(msg).await)
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "forwarding failed");
                            header.set_response_code(ResponseCode::ServFail);
                            ("forward", response.send_response(builder.build_no_records(header)).await)
                        }
                    }
                }
            };
            REQUEST_SECONDS
                .with_label_values(&[server, ".", "", type_label(qtype)])
                .observe(start.elapsed().as_secs_f64());
            match sent {
                Ok(info) => {
                    RESPONSES.with_label_values(&[server, ".", "", rcode_label(info.response_code()), source]).inc();
                    info
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot send the answer");
                    RESPONSES.with_label_values(&[server, ".", "", "SERVFAIL", source]).inc();
                    failed(ResponseCode::ServFail)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Binds UDP and TCP on the same port (when port 0 is asked, one free for both).
fn bind(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let mut attempt = 0;
    loop {
        let udp = std::net::UdpSocket::bind(addr).map_err(|source| DnsError::Bind { proto: "udp", addr, source })?;
        let bound = udp.local_addr().map_err(|source| DnsError::Bind { proto: "udp", addr, source })?;
        match std::net::TcpListener::bind(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            // The free UDP port may be taken on TCP: pick another one.
            Err(_) if addr.port() == 0 && attempt < 20 => attempt += 1,
            Err(source) => return Err(DnsError::Bind { proto: "tcp", addr: bound, source }),
        }
    }
}

/// The cluster DNS actor: serves on its sockets from an index it keeps up to date with the
/// Service and EndpointSlice informers.
pub struct ClusterDns {
    config: DnsConfig,
    resolver: Resolver,
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    sockets: Option<(std::net::UdpSocket, std::net::TcpListener)>,
    local: SocketAddr,
    server: Option<ServerFuture<Handler>>,
}

impl ClusterDns {
    /// Binds the sockets now (so that errors and the chosen port are known before starting).
    pub fn new(
        config: DnsConfig,
        services: Informer<Service>,
        slices: Informer<EndpointSlice>,
    ) -> Result<ClusterDns, DnsError> {
        let resolver = Resolver::new(&config.domain, config.ttl)?;
        let (udp, tcp) = bind(config.listen)?;
        let local = udp.local_addr().map_err(|source| DnsError::Bind { proto: "udp", addr: config.listen, source })?;
        Ok(ClusterDns { config, resolver, services, slices, sockets: Some((udp, tcp)), local, server: None })
    }

    /// The address served on, UDP and TCP.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The resolver answering for this server (shares its index).
    pub fn resolver(&self) -> Resolver {
        self.resolver.clone()
    }
}

fn rebuild(resolver: &Resolver, services: &Informer<Service>, slices: &Informer<EndpointSlice>) {
    let (svcs, sls) = (services.list(), slices.list());
    let mut index = resolver.index().write().expect("dns index lock");
    index.rebuild(svcs.iter().map(|s| &**s), sls.iter().map(|s| &**s));
    index.set_synced(true);
    INDEX_REBUILDS.inc();
}

/// What one informer notification asks of the index.
enum Step<K> {
    Apply(Arc<K>),
    Remove(Arc<K>),
    Rebuild,
    Stop,
}

fn step<K>(received: Result<Change<K>, RecvError>) -> Step<K> {
    match received {
        Ok(Change::Applied { new, .. }) => Step::Apply(new),
        Ok(Change::Deleted(old)) => Step::Remove(old),
        Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => Step::Rebuild,
        Err(RecvError::Closed) => Step::Stop,
    }
}

/// Follows both informers: incremental updates per change, a full rebuild on resync or lag.
async fn follow(resolver: Resolver, services: Informer<Service>, slices: Informer<EndpointSlice>) {
    let mut svc_rx = services.subscribe();
    let mut slice_rx = slices.subscribe();
    services.wait_synced().await;
    slices.wait_synced().await;
    rebuild(&resolver, &services, &slices);
    tracing::info!(services = services.len(), slices = slices.len(), "cluster DNS index synced");
    loop {
        let index = || resolver.index().write().expect("dns index lock");
        tokio::select! {
            c = svc_rx.recv() => match step(c) {
                Step::Apply(svc) => index().apply_service(&svc),
                Step::Remove(svc) => index().remove_service(&svc),
                Step::Rebuild => rebuild(&resolver, &services, &slices),
                Step::Stop => return,
            },
            c = slice_rx.recv() => match step(c) {
                Step::Apply(slice) => index().apply_slice(&slice),
                Step::Remove(slice) => index().remove_slice(&slice),
                Step::Rebuild => rebuild(&resolver, &services, &slices),
                Step::Stop => return,
            },
        }
    }
}

impl Actor for ClusterDns {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some((udp, tcp)) = self.sockets.take() else {
            return;
        };
        let forwarder = Forwarder::new(self.config.upstreams.clone(), self.config.forward_timeout);
        let listen = udp.local_addr().ok();
        let mut server = ServerFuture::new(Handler::new(self.resolver.clone(), forwarder, listen));
        if let Err(e) = server.register_socket_std(udp) {
            tracing::error!(error = %e, "cluster DNS cannot serve UDP");
        }
        if let Err(e) = server.register_listener_std(tcp, self.config.tcp_timeout) {
            tracing::error!(error = %e, "cluster DNS cannot serve TCP");
        }
        self.server = Some(server);
        let span = tracing::info_span!("cluster_dns", addr = %self.local, domain = %self.config.domain);
        ctx.spawn(actix::fut::wrap_future(
            follow(self.resolver.clone(), self.services.clone(), self.slices.clone()).instrument(span),
        ));
        tracing::info!(addr = %self.local, domain = %self.config.domain, upstreams = ?self.config.upstreams, "cluster DNS serving");
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}
