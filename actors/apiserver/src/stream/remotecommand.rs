//! `exec` and `attach`: kubelet's remote command protocol, relayed to the node agent.
//!
//! WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`): binary messages `[channel][data]`,
//! 0 stdin, 1 stdout, 2 stderr, 3 the final metav1.Status, 4 resize `{"Width","Height"}`; v5 adds
//! `[255, channel]` to close a channel (kubectl closes stdin so). SPDY/3.1 (`v4.channel.k8s.io`,
//! kubectl's fallback): one stream per channel, named by the `streamType` header.

use super::spdy::{self, Event};
use super::{
    accept_websocket, count_bytes, failure_status, header_values, pick_container, upgrade_header, Active, MultiQuery,
    PodTarget, Rejection, StreamContext, Upgrade,
};
use actix_web::HttpResponse;
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::LocalBoxStream;
use kubus_apimachinery::StatusError;
use kubus_bus::stream::{
    channel, open_stream, AttachRequest, ExecRequest, Incoming, StreamError, StreamKind, StreamReceiver, StreamSender,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
const ERROR_CHANNEL: u8 = 3;
const RESIZE_CHANNEL: u8 = 4;
const CLOSE_SIGNAL: u8 = 255;
/// How long a SPDY client has to open every stream it asked for (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

enum Protocol {
    WebSocket { v5: bool },
    Spdy,
}

#[derive(Clone, Copy)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// A remote command the node accepted, on the protocol the client negotiated.
pub(crate) struct Accepted {
    protocol: Protocol,
    tx: StreamSender,
    rx: StreamReceiver,
    streams: Streams,
    command: Vec<String>,
    kind: &'static str,
}

/// Validates the request as upstream does, negotiates the protocol and has the node accept the
/// stream: everything that can still be refused with a plain Status. `header` reads request
/// header values (repeated or comma-separated).
pub(crate) async fn accept(
    method: &str,
    upgrade: Option<&str>,
    header: &dyn Fn(&str) -> Vec<String>,
    q: &MultiQuery,
    pod: &Value,
    ctx: &StreamContext,
    kind: &'static str,
) -> Result<Accepted, Rejection> {
    if method != "GET" && method != "POST" {
        return Err(StatusError::method_not_allowed().into());
    }
    let container = pick_container(pod, q.get("container"))?;
    let tty = q.flag("tty")?;
    // A terminal merges stderr into stdout.
    let s = Streams { stdin: q.flag("stdin")?, stdout: q.flag("stdout")?, stderr: q.flag("stderr")? && !tty, tty };
    if !s.stdin && !s.stdout && !s.stderr {
        return Err(StatusError::bad_request("you must specify at least 1 of stdin, stdout, stderr").into());
    }
    let command = q.all("command");
    if kind == "exec" && command.is_empty() {
        return Err(StatusError::bad_request("you must specify at least 1 command").into());
    }
    let target = PodTarget::of(pod)?;
    let protocol = negotiate(upgrade, header)?;
    let open = if kind == "exec" {
        StreamKind::Exec(ExecRequest {
            namespace: target.namespace,
            pod: target.name,
            uid: target.uid,
            container,
            command: command.clone(),
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
            tty,
        })
    } else {
        StreamKind::Attach(AttachRequest {
            namespace: target.namespace,
            pod: target.name,
            uid: target.uid,
            container,
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
            tty,
        })
    };
    // The node accepts before the client is upgraded: a refusal is still a plain Status.
    let (tx, rx) = open_stream(&ctx.client, &ctx.cluster, &target.node, open).await?;
    Ok(Accepted { protocol, tx, rx, streams: s, command, kind })
}

/// The actix-web route: WebSocket upgrades (SPDY ones are taken off the connection earlier,
/// see [`super::raw`]).
pub(crate) async fn serve(up: Upgrade<'_>, kind: &'static str) -> Result<HttpResponse, Rejection> {
    let Upgrade { req, payload, query, pod, ctx } = up;
    let upgrade = upgrade_header(req);
    let a =
        accept(req.method().as_str(), upgrade.as_deref(), &|n| header_values(req, n), query, pod, ctx, kind).await?;
    match a.protocol {
        Protocol::WebSocket { v5 } => {
            let (resp, session, messages) = accept_websocket(req, payload, if v5 { V5 } else { V4 })?;
            actix_web::rt::spawn(relay_websocket(session, messages, v5, a.tx, a.rx, a.kind, a.command));
            Ok(resp)
        }
        Protocol::Spdy => {
            let _ = a.tx.reset("SPDY upgrade reached the HTTP router").await;
            Err(StatusError::internal("SPDY upgrades are served before HTTP routing").into())
        }
    }
}

/// Runs an accepted remote command over an upgraded SPDY connection's bytes.
pub(crate) fn run_spdy(
    a: Accepted,
    incoming: LocalBoxStream<'static, Bytes>,
    outgoing: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(), spdy::SpdyError> {
    let (writer, events) = spdy::start(incoming, outgoing)?;
    actix_web::rt::spawn(relay_spdy(writer, events, a.streams, a.tx, a.rx, a.kind, a.command));
    Ok(())
}

/// The `X-Stream-Protocol-Version` the SPDY upgrade answers with.
pub(crate) const SPDY_PROTOCOL: &str = V4;

fn negotiate(upgrade: Option<&str>, header: &dyn Fn(&str) -> Vec<String>) -> Result<Protocol, Rejection> {
    match upgrade {
        Some("websocket") => {
            // The client's order decides, as in upstream's wsstream.
            let offered = header("sec-websocket-protocol");
            match offered.iter().find(|p| *p == V5 || *p == V4) {
                Some(p) => Ok(Protocol::WebSocket { v5: p == V5 }),
                // Not a 101: kubectl then falls back to SPDY.
                None => Err(StatusError::bad_request(format!(
                    "unable to upgrade: none of the requested subprotocols {offered:?} is supported; supported: [{V5} {V4}]"
                ))
                .into()),
            }
        }
        Some("spdy/3.1") => {
            let offered = header("x-stream-protocol-version");
            if offered.iter().any(|p| p == V4) {
                Ok(Protocol::Spdy)
            } else {
                // Upstream refuses with a plain-text 403; this is how clients read it.
                Err(StatusError::server_response(403, &format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{V4}]"))
                .into())
            }
        }
        _ => Err(StatusError::bad_request("Upgrade request required").into()),
    }
}

/// The final message on the error channel: metav1.Status as kubelet writes it.
pub(crate) fn exit_status(result: &Result<Option<i32>, StreamError>, command: &[String]) -> Value {
    match result {
        Ok(None) | Ok(Some(0)) => json!({"metadata": {}, "status": "Success"}),
        Ok(Some(code)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => failure_status(e),
    }
}

fn reset_status(reason: &str) -> Value {
    failure_status(&StreamError::internal(format!("error executing remote command: stream reset: {reason}")))
}

fn framed(ch: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(ch);
    b.put_slice(data);
    b.freeze()
}

/// `{"Width": w, "Height": h}` as kubectl sends it.
fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let v: Value = serde_json::from_slice(data).ok()?;
    Some((v["Width"].as_u64()? as u16, v["Height"].as_u64()? as u16))
}

async fn relay_websocket(
    session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    v5: bool,
    tx: StreamSender,
    mut rx: StreamReceiver,
    kind: &'static str,
    command: Vec<String>,
) {
    let _active = Active::new(kind);
    // Client to node, on its own task: waiting for credit must not stall the output.
    let inbound = {
        let (tx, mut session) = (tx.clone(), session.clone());
        actix_web::rt::spawn(async move {
            while let Some(msg) = messages.recv().await {
                match msg {
                    Ok(actix_ws::Message::Binary(b)) if !b.is_empty() => match b[0] {
                        channel::STDIN => {
                            count_bytes(kind, "to_node", b.len() - 1);
                            if tx.send(channel::STDIN, &b[1..]).await.is_err() {
                                return;
                            }
                        }
                        RESIZE_CHANNEL => {
                            if let Some((w, h)) = parse_resize(&b[1..]) {
                                let _ = tx.resize(w, h).await;
                            }
                        }
                        CLOSE_SIGNAL if v5 && b.get(1) == Some(&channel::STDIN) => {
                            let _ = tx.close(channel::STDIN).await;
                        }
                        _ => {}
                    },
                    Ok(actix_ws::Message::Ping(p)) => {
                        let _ = session.pong(&p).await;
                    }
                    Ok(actix_ws::Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // The client left: the node stops relaying (nothing is killed).
            let _ = tx.reset("the client closed the connection").await;
        })
    };
    let mut session = session;
    let status = loop {
        match rx.recv().await {
            Some(Incoming::Data(ch, b)) => {
                count_bytes(kind, "to_client", b.len());
                if session.binary(framed(ch, &b)).await.is_err() {
                    let _ = tx.reset("the client connection broke").await;
                    inbound.abort();
                    return;
                }
            }
            Some(Incoming::Close(ch)) if v5 => {
                let _ = session.binary(Bytes::from(vec![CLOSE_SIGNAL, ch])).await;
            }
            Some(Incoming::Done(result)) => break exit_status(&result, &command),
            Some(Incoming::Reset(reason)) => break reset_status(&reason),
            None => break reset_status("the node stream ended"),
            Some(_) => {}
        }
    };
    tracing::debug!(%status, "remote command finished");
    let _ = session.binary(framed(ERROR_CHANNEL, status.to_string().as_bytes())).await;
    let _ = session.close(Some(actix_ws::CloseCode::Normal.into())).await;
    inbound.abort();
}

/// SPDY: waits for the streams the request asked for, then relays like the WebSocket path.
async fn relay_spdy(
    writer: spdy::SpdyWriter,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    s: Streams,
    tx: StreamSender,
    mut rx: StreamReceiver,
    kind: &'static str,
    command: Vec<String>,
) {
    let _active = Active::new(kind);
    let expected = 1 + s.stdin as usize + s.stdout as usize + s.stderr as usize + s.tty as usize;
    let mut ids: HashMap<String, u32> = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while ids.len() < expected {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Opened { stream_id, headers, .. })) => {
                let t = spdy::header(&headers, "streamtype").unwrap_or("").to_string();
                ids.insert(t, stream_id);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                tracing::info!(got = ids.len(), expected, "SPDY client did not open its streams");
                let _ = tx.reset("the client did not open its streams").await;
                writer.go_away().await;
                return;
            }
        }
    }
    let id = |t: &str| ids.get(t).copied();
    let (stdin_id, resize_id) = (id("stdin"), id("resize"));
    let error_id = id("error");
    let out_ids = [(channel::STDOUT, id("stdout")), (channel::STDERR, id("stderr"))];
    let inbound = {
        let tx = tx.clone();
        actix_web::rt::spawn(async move {
            let mut resize_buf = Vec::new();
            while let Some(ev) = events.recv().await {
                match ev {
                    Event::Data { stream_id, data, fin } if Some(stream_id) == stdin_id => {
                        count_bytes(kind, "to_node", data.len());
                        if !data.is_empty() && tx.send(channel::STDIN, &data).await.is_err() {
                            return;
                        }
                        if fin {
                            let _ = tx.close(channel::STDIN).await;
                        }
                    }
                    Event::Data { stream_id, data, .. } if Some(stream_id) == resize_id => {
                        // A stream of JSON objects, not framed: take each complete one.
                        resize_buf.extend_from_slice(&data);
                        let mut de = serde_json::Deserializer::from_slice(&resize_buf).into_iter::<Value>();
                        let mut used = 0;
                        while let Some(Ok(v)) = de.next() {
                            used = de.byte_offset();
                            if let (Some(w), Some(h)) = (v["Width"].as_u64(), v["Height"].as_u64()) {
                                let _ = tx.resize(w as u16, h as u16).await;
                            }
                        }
                        resize_buf.drain(..used);
                    }
                    Event::Reset { stream_id } if Some(stream_id) == stdin_id => {
                        let _ = tx.close(channel::STDIN).await;
                    }
                    _ => {}
                }
            }
            let _ = tx.reset("the client closed the connection").await;
        })
    };
    let status = loop {
        match rx.recv().await {
            Some(Incoming::Data(ch, b)) => {
                let Some(sid) = out_ids.iter().find(|(c, _)| *c == ch).and_then(|(_, id)| *id) else { continue };
                count_bytes(kind, "to_client", b.len());
                if !writer.data(sid, b, false).await {
                    let _ = tx.reset("the client connection broke").await;
                    inbound.abort();
                    return;
                }
            }
            Some(Incoming::Done(result)) => break exit_status(&result, &command),
            Some(Incoming::Reset(reason)) => break reset_status(&reason),
            None => break reset_status("the node stream ended"),
            Some(_) => {}
        }
    };
    // Output streams end, then the status on the error stream, then the session.
    for (_, sid) in out_ids {
        if let Some(sid) = sid {
            writer.data(sid, Bytes::new(), true).await;
        }
    }
    if let Some(sid) = error_id {
        writer.data(sid, Bytes::from(status.to_string()), true).await;
    }
    writer.go_away().await;
    inbound.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_as_kubectl_reads_them() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(exit_status(&Ok(Some(0)), &cmd)["status"], "Success");
        let s = exit_status(&Ok(Some(3)), &cmd);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let e = exit_status(&Err(StreamError::not_found("container not found (\"x\")")), &cmd);
        assert_eq!((e["status"].as_str(), e["code"].as_u64()), (Some("Failure"), Some(404)));
        assert_eq!(parse_resize(br#"{"Width":80,"Height":24}"#), Some((80, 24)));
    }
}
