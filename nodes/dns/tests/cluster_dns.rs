//! The cluster DNS against a real nats-server: Services and EndpointSlices written to the
//! store reach the server through informers, and a real DNS client (wire format over UDP and
//! TCP) queries it; names outside the cluster go to an upstream DNS server run by the test.

use actix::Actor;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use kubus_controller_runtime::Informer;
use kubus_dns::{ClusterDns, DnsConfig};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

// The store helper shared with the kube-proxy tests.
#[path = "../../proxy/tests/common/mod.rs"]
mod common;
use common::put;

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("kubus-dns-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An upstream resolver for the test: `example.test.` A 192.0.2.7, NXDOMAIN for the rest.
struct Upstream;

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let name = Name::from(request.request_info().unwrap().query.name().clone());
        let mut header = Header::response_from_request(request.header());
        let builder = MessageResponseBuilder::from_message_request(request);
        let answers = if name == Name::from_ascii("example.test.").unwrap() {
            vec![Record::from_rdata(name, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 7))))]
        } else {
            header.set_response_code(ResponseCode::NXDomain);
            vec![]
        };
        let msg = builder.build(header, answers.iter(), [], [], []);
        response.send_response(msg).await.unwrap()
    }
}

async fn start_upstream() -> (ServerFuture<Upstream>, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let mut server = ServerFuture::new(Upstream);
    server.register_socket(sock);
    (server, addr)
}

fn message(name: &str, t: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(rand_id()).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() & 0xffff) as u16
}

async fn udp_query(sock: &UdpSocket, server: SocketAddr, name: &str, t: RecordType) -> Message {
    let q = message(name, t);
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.expect("answer in 5 s").unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.id(), q.id());
    m
}

async fn udp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_query(&sock, server, name, t).await
}

async fn tcp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let q = message(name, t).to_vec().unwrap();
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q[..]].concat()).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
    v.sort();
    v
}

/// Waits until the answer's data equals `want` (informer propagation is asynchronous).
async fn eventually(server: SocketAddr, name: &str, t: RecordType, want: &[&str]) -> Message {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = udp(server, name, t).await;
        if data(&m) == want {
            return m;
        }
        assert!(Instant::now() < deadline, "{name} {t}: got {:?} {:?}, want {want:?}", m.response_code(), data(&m));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn service(ns: &str, name: &str, cluster_ip: &str) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}))
    .unwrap()
}

fn slice(ns: &str, svc: &str, ips: &[(&str, bool)]) -> EndpointSlice {
    let eps: Vec<Value> =
        ips.iter().map(|(ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false}})).collect();
    serde_json::from_value(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": svc, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
    .unwrap()
}

struct Cluster {
    _dir: TempDir,
    nats: EmbeddedNats,
    store: Store,
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
}

async fn cluster(tag: &str) -> Cluster {
    let dir = TempDir::new(tag);
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
    let client = kubus_bus::connect(nats.url(), "dns-test").await.unwrap();
    let store = Store::open(client, StoreConfig::default()).await.unwrap();
    let services = Informer::<Service>::start(store.clone());
    let slices = Informer::<EndpointSlice>::start(store.clone());
    Cluster { _dir: dir, nats, store, services, slices }
}

fn config(upstreams: Vec<SocketAddr>) -> DnsConfig {
    let mut c = DnsConfig::new("127.0.0.1:0".parse().unwrap());
    c.upstreams = upstreams;
    c.forward_timeout = Duration::from_millis(300);
    c
}

#[test]
fn serves_cluster_records_over_udp_and_tcp_and_forwards() {
    actix::System::new().block_on(async {
        let c = cluster("serve").await;
        put(&c.store, &service("default", "web", "10.96.7.10")).await;
        put(&c.store, &service("default", "db", "None")).await;
        put(&c.store, &slice("default", "db", &[("10.244.0.5", true), ("10.244.0.6", true), ("10.244.0.9", false)]))
            .await;

        let (mut upstream, up_addr) = start_upstream().await;
        // An upstream that never answers comes first: the forwarder must move on to the next.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns =
            ClusterDns::new(config(vec![dead.local_addr().unwrap(), up_addr]), c.services.clone(), c.slices.clone())
                .unwrap();
        let addr = dns.local_addr();
        let _dns = dns.start();

        // ClusterIP Service.
        let m = eventually(addr, "web.default.svc.cluster.local.", RecordType::A, &["10.96.7.10"]).await;
        assert!(m.authoritative());
        assert_eq!(m.answers()[0].ttl(), 5);
        // Headless: the ready endpoints only; then the slice changes and so does the answer.
        eventually(addr, "db.default.svc.cluster.local.", RecordType::A, &["10.244.0.5", "10.244.0.6"]).await;
        put(&c.store, &slice("default", "db", &[("10.244.0.6", true), ("10.244.0.7", true)])).await;
        eventually(addr, "db.default.svc.cluster.local.", RecordType::A, &["10.244.0.6", "10.244.0.7"]).await;
        assert_eq!(data(&udp(addr, "10-244-0-7.db.default.svc.cluster.local.", RecordType::A).await), ["10.244.0.7"]);

        // SRV for a named port: the Service's port for a ClusterIP, endpoints' for headless.
        let m = udp(addr, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
        assert_eq!(data(&m), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(m.additionals().iter().map(|r| r.data().to_string()).collect::<Vec<_>>(), ["10.96.7.10"]);
        let m = udp(addr, "_http._tcp.db.default.svc.cluster.local.", RecordType::SRV).await;
        assert_eq!(
            data(&m),
            [
                "0 50 8080 10-244-0-6.db.default.svc.cluster.local.",
                "0 50 8080 10-244-0-7.db.default.svc.cluster.local."
            ]
        );

        // Pod record.
        assert_eq!(data(&udp(addr, "10-244-3-4.default.pod.cluster.local.", RecordType::A).await), ["10.244.3.4"]);

        // Unknown Service: NXDOMAIN with the zone's SOA in authority.
        let m = udp(addr, "nope.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(m.name_servers().len(), 1);
        assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
        assert_eq!(m.name_servers()[0].name().to_string(), "cluster.local.");

        // A deleted Service disappears.
        let key = Key::new("", "services", Some("default"), "web");
        let cur = c.store.get(&key).await.unwrap().unwrap();
        c.store.delete(&key, cur.value.clone(), cur.revision).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while udp(addr, "web.default.svc.cluster.local.", RecordType::A).await.response_code() != ResponseCode::NXDomain
        {
            assert!(Instant::now() < deadline, "deleted service still resolves");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // TCP gives the same answers.
        let m = tcp(addr, "db.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(data(&m), ["10.244.0.6", "10.244.0.7"]);
        assert_eq!(
            tcp(addr, "nope.default.svc.cluster.local.", RecordType::A).await.response_code(),
            ResponseCode::NXDomain
        );

        // Other names are forwarded (past the dead upstream), upstream NXDOMAIN passes through.
        let m = udp(addr, "example.test.", RecordType::A).await;
        assert_eq!((m.response_code(), data(&m)), (ResponseCode::NoError, vec!["192.0.2.7".to_string()]));
        assert!(!m.authoritative() && m.recursion_available());
        assert_eq!(tcp(addr, "example.test.", RecordType::A).await.answers().len(), 1);
        assert_eq!(udp(addr, "missing.test.", RecordType::A).await.response_code(), ResponseCode::NXDomain);

        // Only a dead upstream: SERVFAIL, promptly.
        let lonely =
            ClusterDns::new(config(vec![dead.local_addr().unwrap()]), c.services.clone(), c.slices.clone()).unwrap();
        let lonely_addr = lonely.local_addr();
        let _lonely = lonely.start();
        let t = Instant::now();
        assert_eq!(udp(lonely_addr, "example.test.", RecordType::A).await.response_code(), ResponseCode::ServFail);
        assert!(t.elapsed() < Duration::from_secs(2), "SERVFAIL took {:?}", t.elapsed());

        let metrics = prometheus::TextEncoder::new().encode_to_string(&prometheus::gather()).unwrap();
        // CoreDNS's series: an NXDOMAIN of a cluster name, and questions to the dead upstream.
        assert!(metrics.contains("coredns_dns_responses_total{plugin=\"kubernetes\",rcode=\"NXDOMAIN\""), "{metrics}");
        assert!(metrics.contains("coredns_dns_requests_total{family=\"1\",proto=\"tcp\""), "{metrics}");
        let dead_series = format!("coredns_forward_requests_total{{to=\"{}\"}}", dead.local_addr().unwrap());
        assert!(metrics.contains(&dead_series), "{metrics}");
        upstream.shutdown_gracefully().await.unwrap();
        c.nats.stop().await;
    });
}

/// Queries per second from one client sending one question at a time over UDP for 5 s.
#[test]
fn throughput_one_client() {
    actix::System::new().block_on(async {
        let c = cluster("qps").await;
        for i in 0..200 {
            put(&c.store, &service("default", &format!("s{i}"), &format!("10.96.1.{}", i % 250 + 1))).await;
        }
        let dns = ClusterDns::new(config(vec![]), c.services.clone(), c.slices.clone()).unwrap();
        let addr = dns.local_addr();
        let _dns = dns.start();
        eventually(addr, "s199.default.svc.cluster.local.", RecordType::A, &["10.96.1.200"]).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (start, mut n) = (Instant::now(), 0u64);
        while start.elapsed() < Duration::from_secs(5) {
            let m = udp_query(&sock, addr, &format!("s{}.default.svc.cluster.local.", n % 200), RecordType::A).await;
            assert_eq!(m.answers().len(), 1);
            n += 1;
        }
        let qps = n as f64 / start.elapsed().as_secs_f64();
        println!("cluster DNS: {qps:.0} queries/s from one sequential UDP client ({n} in 5 s)");
        assert!(qps > 100.0, "only {qps:.0} queries/s");
        c.nats.stop().await;
    });
}
