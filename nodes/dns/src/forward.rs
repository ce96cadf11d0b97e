//! Forwarding of names outside the cluster domain to the node's resolvers, over UDP with a
//! retry over TCP when the answer is truncated.

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RecordType};
use hickory_server::proto::ProtoError;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers configured")]
    NoUpstreams,
    #[error("upstream {upstream} timed out after {timeout:?}")]
    Timeout { upstream: SocketAddr, timeout: Duration },
    #[error("upstream {upstream}: {source}")]
    Io { upstream: SocketAddr, source: std::io::Error },
    #[error("upstream {upstream} sent an invalid message: {source}")]
    Proto { upstream: SocketAddr, source: ProtoError },
    #[error("cannot read {path}: {source}")]
    ResolvConf { path: String, source: std::io::Error },
}

/// The nameservers of a resolv.conf text, loopback ones left out: on a node they usually point
/// to a local stub (systemd-resolved) that pods cannot reach, and forwarding to ourselves loops.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A scoped IPv6 address (fe80::1%eth0) cannot be parsed as IpAddr: skip it.
            words.next()?.parse::<IpAddr>().ok()
        })
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// `upstreams_from_resolv_conf` of a file (normally /etc/resolv.conf).
pub fn upstreams_from_file(path: &str) -> Result<Vec<SocketAddr>, ForwardError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ForwardError::ResolvConf { path: path.into(), source })?;
    Ok(upstreams_from_resolv_conf(&text))
}

/// Sends questions to the upstreams in order until one answers.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

/// A random query id, so that off-path spoofing must guess it (std's per-instance SipHash
/// keys are random).
fn random_id() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() as u16
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Forwarder { upstreams, timeout }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Asks each upstream in turn (each within the timeout) and returns the first reply,
    /// whatever its rcode: an upstream's NXDOMAIN is an answer, not a failure.
    pub async fn forward(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut last = ForwardError::NoUpstreams;
        for &upstream in &self.upstreams {
            let to = upstream.to_string();
            crate::metrics::FORWARDED.with_label_values(&[&to]).inc();
            match tokio::time::timeout(self.timeout, self.ask(upstream, name, qtype)).await {
                Ok(Ok(m)) => {
                    let rcode = crate::server::rcode_label(m.response_code());
                    crate::metrics::FORWARD_RESPONSES.with_label_values(&[rcode, &to]).inc();
                    return Ok(m);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = ForwardError::Timeout { upstream, timeout: self.timeout },
            }
            tracing::debug!(%upstream, error = %last, "upstream failed");
        }
        Err(last)
    }

    async fn ask(&self, upstream: SocketAddr, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let io = |source| ForwardError::Io { upstream, source };
        let proto = |source| ForwardError::Proto { upstream, source };
        let id = random_id();
        let mut query = Message::new();
        query.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
        query.add_query(Query::query(name.clone(), qtype));
        let mut edns = Edns::new();
        // 1232: the DNS flag day 2020 payload size that avoids IP fragmentation.
        edns.set_max_payload(1232);
        query.set_edns(edns);
        let bytes = query.to_vec().map_err(proto)?;

        let local: SocketAddr = match upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local).await.map_err(io)?;
        sock.connect(upstream).await.map_err(io)?;
        sock.send(&bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        let reply = loop {
            let n = sock.recv(&mut buf).await.map_err(io)?;
            // Stray or spoofed datagrams with another id are ignored.
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.id() == id && m.message_type() == MessageType::Response => break m,
                _ => continue,
            }
        };
        if !reply.truncated() {
            return Ok(reply);
        }
        let mut tcp = TcpStream::connect(upstream).await.map_err(io)?;
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes();
        tcp.write_all(&[&len[..], &bytes[..]].concat()).await.map_err(io)?;
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut buf).await.map_err(io)?;
        Message::from_vec(&buf).map_err(proto)
    }
}
