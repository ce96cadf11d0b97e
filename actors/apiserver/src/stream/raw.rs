//! Plain SPDY/3.1 upgrades, taken off the TCP connection before actix-web parses it.
//!
//! actix-http streams the bytes after an upgrade only for `Upgrade: websocket` (and CONNECT):
//! any other upgrade request gets no payload and the client's SPDY frames would be parsed as the
//! next HTTP request. kubectl's SPDY round tripper dials a fresh connection for each upgrade, so
//! looking at a connection's first request head (read ahead, and read again by whoever serves
//! the connection) is enough: a SPDY upgrade
//! to a pod's `exec`, `attach` or `portforward` is served here, everything else goes to
//! actix-web untouched.

use super::{get_pod, portforward, remotecommand, MultiQuery, Rejection, StreamContext, STREAMS};
use crate::connection::Connection;
use crate::handler::ApiState;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

/// Request heads larger than this are never SPDY upgrades of ours.
const MAX_HEAD: usize = 16 * 1024;
/// How long a new connection may take to send its first request head before it is handed to
/// actix-web as it is (which applies its own timeouts).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The head of a SPDY upgrade request.
pub struct UpgradeHead {
    method: String,
    path: String,
    query: String,
    /// Lowercased names.
    headers: Vec<(String, String)>,
    /// Bytes of the head on the wire, consumed before the SPDY frames.
    len: usize,
}

/// Credentials never reach a log line: the head prints without its header values.
impl std::fmt::Debug for UpgradeHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("UpgradeHead")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

impl UpgradeHead {
    fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// Reads the connection's first request head (kept on the connection to be read again):
/// `Some` for a SPDY upgrade of a pod stream.
pub async fn sniff(io: &mut Connection) -> Option<UpgradeHead> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        let buf = io.ahead();
        let n = buf.len();
        // Only pod stream paths can be ours; most connections are decided on the first bytes.
        let plausible = [&b"POST /api/v1/namespaces/"[..], &b"GET /api/v1/namespaces/"[..]].iter().any(|p| {
            let k = n.min(p.len());
            buf[..k] == p[..k]
        });
        if !plausible {
            return None;
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse(&buf[..end + 4]);
        }
        if n >= MAX_HEAD {
            return None;
        }
        match tokio::time::timeout_at(deadline, io.read_ahead()).await {
            Ok(Ok(read)) if read > 0 => {}
            _ => return None,
        }
    }
}

fn parse(head: &[u8]) -> Option<UpgradeHead> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let has = |name: &str, token: &str| {
        headers.iter().any(|(n, v)| n == name && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has("connection", "upgrade") || !has("upgrade", "spdy/3.1") {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if !matches!(segs.as_slice(), ["api", "v1", "namespaces", _, "pods", _, "exec" | "attach" | "portforward"]) {
        return None;
    }
    Some(UpgradeHead { method, path: path.to_string(), query: query.to_string(), headers, len: head.len() })
}

/// Serves one SPDY upgrade: the same checks as over WebSocket, then 101 and the session.
pub async fn serve(mut io: Connection, head: UpgradeHead, state: ApiState, ctx: StreamContext) {
    let segs: Vec<String> = head.path.trim_matches('/').split('/').map(percent_decoded).collect();
    let (namespace, name, sub) = (segs[3].clone(), segs[5].clone(), segs[6].clone());
    let kind: &'static str = match sub.as_str() {
        "exec" => "exec",
        "attach" => "attach",
        _ => "portforward",
    };
    let span =
        tracing::info_span!("pod_stream", kind, %namespace, pod = %name, method = %head.method, protocol = "spdy");
    async move {
        // The head was read ahead, to be read again: consume it so that the frames come next.
        let mut skip = vec![0u8; head.len];
        if io.read_exact(&mut skip).await.is_err() {
            return;
        }
        let q = MultiQuery::parse(&head.query);
        let accepted = async {
            let presented = crate::authn::Presented::from_headers(
                io.channel.clone(),
                head.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            );
            let admission = state.admit_stream(&presented, &namespace, &name, &sub)?;
            let pod = get_pod(&state, &namespace, &name).await;
            state.audit_stream(&admission, pod.as_ref().map_or_else(|r| r.code, |_| if sub == "log" { 200 } else { 101 }));
            let pod = pod?;
            if kind == "portforward" {
                let target = portforward::accept(&head.method, &q, &pod)?;
                portforward::negotiate_spdy(&head.values("x-stream-protocol-version"))?;
                Ok::<_, Rejection>(Accepted::PortForward(target))
            } else {
                let header = |n: &str| head.values(n);
                let a =
                    remotecommand::accept(&head.method, Some("spdy/3.1"), &header, &q, &pod, &ctx, kind).await?;
                Ok(Accepted::Command(Box::new(a)))
            }
        }
        .await;
        let accepted = match accepted {
            Ok(a) => a,
            Err(r) => {
                r.record(kind);
                let body = r.status.to_string();
                let reason = actix_web::http::StatusCode::from_u16(r.code)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("Error");
                let resp = format!(
                    "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    r.code,
                    body.len()
                );
                let _ = io.write_all(resp.as_bytes()).await;
                let _ = io.shutdown().await;
                return;
            }
        };
        STREAMS.with_label_values(&[kind, "ok"]).inc();
        let protocol = match accepted {
            Accepted::PortForward(_) => portforward::PROTOCOL,
            Accepted::Command(_) => remotecommand::SPDY_PROTOCOL,
        };
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
        );
        if io.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        let (read, mut write) = tokio::io::split(io);
        let incoming = futures::stream::unfold((read, read_buf()), |(mut read, mut buf)| async move {
            buf.reserve(32 * 1024);
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(_) => Some((buf.split().freeze(), (read, buf))),
            }
        })
        .boxed_local();
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        actix_web::rt::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if write.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        });
        let started = match accepted {
            Accepted::PortForward(target) => portforward::run(target, ctx, incoming, out_tx),
            Accepted::Command(a) => remotecommand::run_spdy(*a, incoming, out_tx),
        };
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the SPDY session");
        }
    }
    .instrument(span)
    .await
}

fn read_buf() -> BytesMut {
    BytesMut::with_capacity(32 * 1024)
}

fn percent_decoded(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

enum Accepted {
    PortForward(super::PodTarget),
    // Boxed: the node stream handles make it several times larger than a target.
    Command(Box<remotecommand::Accepted>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_spdy_upgrades_of_pod_streams_are_taken() {
        let spdy = b"POST /api/v1/namespaces/default/pods/web/exec?command=true HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n";
        let head = parse(spdy).unwrap();
        assert_eq!((head.method.as_str(), head.query.as_str(), head.len), ("POST", "command=true", spdy.len()));
        assert_eq!(head.values("x-stream-protocol-version"), vec!["v4.channel.k8s.io", "v3.channel.k8s.io"]);
        let ws = b"GET /api/v1/namespaces/default/pods/web/exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(parse(ws).is_none());
        let other =
            b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n";
        assert!(parse(other).is_none());
    }
}
