//! `portforward`: kubectl port-forward. kubectl 1.32 first asks for a WebSocket with subprotocol
//! `SPDY/3.1+portforward.k8s.io` (SPDY frames carried as a byte stream in binary messages), then
//! falls back to a plain SPDY/3.1 upgrade (`X-Stream-Protocol-Version: portforward.k8s.io`).
//! Either way, each forwarded TCP connection is a pair of SPDY streams sharing a `requestID`:
//! `error` (the server writes a message if forwarding fails) and `data`, both with header `port`.
//! Each pair becomes one internal stream to the node agent.

use super::spdy::{self, Event, SpdyWriter};
use super::{
    accept_websocket, count_bytes, header_values, upgrade_header, Active, MultiQuery, PodTarget, Rejection,
    StreamContext, Upgrade,
};
use actix_web::HttpResponse;
use bytes::Bytes;
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use kubus_apimachinery::StatusError;
use kubus_bus::stream::{channel, open_stream, Incoming, PortForwardRequest, StreamKind};
use serde_json::Value;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tracing::Instrument;

pub const PROTOCOL: &str = "portforward.k8s.io";
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Validates the request as upstream does: every listed port is a valid non-zero port, and the
/// pod has a node.
pub(crate) fn accept(method: &str, q: &MultiQuery, pod: &Value) -> Result<PodTarget, Rejection> {
    if method != "GET" && method != "POST" {
        return Err(StatusError::method_not_allowed().into());
    }
    for p in q.all("ports").iter().flat_map(|p| p.split(',').map(str::to_string).collect::<Vec<_>>()) {
        if !matches!(p.trim().parse::<u16>(), Ok(n) if n > 0) {
            return Err(StatusError::bad_request(format!("invalid port {p:?}: must be between 1 and 65535")).into());
        }
    }
    PodTarget::of(pod)
}

/// The SPDY upgrade's protocol check (`X-Stream-Protocol-Version`).
pub(crate) fn negotiate_spdy(offered: &[String]) -> Result<(), Rejection> {
    if offered.iter().any(|p| p == PROTOCOL) {
        Ok(())
    } else {
        // Upstream refuses with a plain-text 403; this is how clients read it.
        Err(StatusError::server_response(403, &format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{PROTOCOL}]"))
        .into())
    }
}

/// The actix-web route: the WebSocket tunnel (plain SPDY upgrades are taken off the connection
/// earlier, see [`super::raw`]).
pub(crate) async fn serve(up: Upgrade<'_>) -> Result<HttpResponse, Rejection> {
    let Upgrade { req, payload, query, pod, ctx } = up;
    let target = accept(req.method().as_str(), query, pod)?;
    if upgrade_header(req).as_deref() != Some("websocket") {
        return Err(StatusError::bad_request("Upgrade request required").into());
    }
    let offered = header_values(req, "sec-websocket-protocol");
    if !offered.iter().any(|p| p.eq_ignore_ascii_case(TUNNEL_PROTOCOL)) {
        return Err(StatusError::bad_request(format!(
            "unable to upgrade: none of the requested subprotocols {offered:?} is supported; supported: [{TUNNEL_PROTOCOL}]"
        ))
        .into());
    }
    let (resp, session, messages) = accept_websocket(req, payload, TUNNEL_PROTOCOL)?;
    let incoming = futures::stream::unfold((messages, session.clone()), |(mut m, mut s)| async move {
        loop {
            match m.recv().await? {
                Ok(actix_ws::Message::Binary(b)) => return Some((b, (m, s))),
                Ok(actix_ws::Message::Ping(p)) => {
                    let _ = s.pong(&p).await;
                }
                Ok(actix_ws::Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .boxed_local();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
    let mut session = session;
    actix_web::rt::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if session.binary(b).await.is_err() {
                return;
            }
        }
        let _ = session.close(Some(actix_ws::CloseCode::Normal.into())).await;
    });
    run(target, ctx.clone(), incoming, out_tx).map_err(|e| StatusError::internal(e.to_string()))?;
    Ok(resp)
}

/// Serves port-forward over an upgraded connection's bytes (tunnelled or plain SPDY).
pub(crate) fn run(
    target: PodTarget,
    ctx: StreamContext,
    incoming: LocalBoxStream<'static, Bytes>,
    outgoing: mpsc::Sender<Bytes>,
) -> Result<(), spdy::SpdyError> {
    let (writer, events) = spdy::start(incoming, outgoing)?;
    actix_web::rt::spawn(relay(writer, events, ctx, target));
    Ok(())
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
}

/// Pairs the client's streams by requestID and forwards each pair.
async fn relay(writer: SpdyWriter, mut events: mpsc::Receiver<Event>, ctx: StreamContext, target: PodTarget) {
    let target = std::rc::Rc::new(target);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    // Data stream id -> its forwarder; `None` is the client's FIN.
    let mut forwarders: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Opened { stream_id, headers, .. } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or("").to_string();
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
                let Some(port) = port else {
                    writer.reset(stream_id, spdy::RST_REFUSED_STREAM).await;
                    continue;
                };
                // Clients too old to send a requestID pair streams in creation order.
                let rid = spdy::header(&headers, "requestid").map(str::to_string).unwrap_or_else(|| {
                    if kind == "error" { stream_id } else { stream_id.saturating_sub(2) }.to_string()
                });
                let pair = pending.entry(rid.clone()).or_default();
                match kind.as_str() {
                    "error" => pair.error = Some(stream_id),
                    "data" => pair.data = Some(stream_id),
                    _ => {
                        writer.reset(stream_id, spdy::RST_PROTOCOL_ERROR).await;
                        continue;
                    }
                }
                if let Pair { error: Some(error), data: Some(data) } = *pair {
                    pending.remove(&rid);
                    let (tx, rx) = mpsc::channel(16);
                    forwarders.insert(data, tx);
                    let (writer, ctx, target) = (writer.clone(), ctx.clone(), target.clone());
                    let span = tracing::info_span!("port_forward", pod = %target.name, port, stream = data);
                    actix_web::rt::spawn(forward(writer, ctx, target, port, data, error, rx).instrument(span));
                }
            }
            Event::Data { stream_id, data, fin } => {
                if let Some(f) = forwarders.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = f.send(Some(data)).await;
                    }
                    if fin {
                        let _ = f.send(None).await;
                    }
                }
            }
            Event::Reset { stream_id } => {
                forwarders.remove(&stream_id);
            }
        }
    }
    // The connection is gone: every forwarder sees its input end and resets its node stream.
}

async fn forward(
    writer: SpdyWriter,
    ctx: StreamContext,
    target: std::rc::Rc<PodTarget>,
    port: u16,
    data_id: u32,
    error_id: u32,
    mut input: mpsc::Receiver<Option<Bytes>>,
) {
    let _active = Active::new("portforward");
    let req = PortForwardRequest {
        namespace: target.namespace.clone(),
        pod: target.name.clone(),
        uid: target.uid.clone(),
        port,
    };
    let failed = |message: String| {
        let writer = writer.clone();
        async move {
            writer.data(data_id, Bytes::new(), true).await;
            writer.data(error_id, Bytes::from(message), true).await;
        }
    };
    let uid = target.uid.clone().unwrap_or_default();
    let describe = |m: &str| format!("error forwarding port {port} to pod {}, uid {uid}: {m}", target.name);
    let (tx, mut rx) = match open_stream(&ctx.client, &ctx.cluster, &target.node, StreamKind::PortForward(req)).await {
        Ok(s) => s,
        Err(e) => return failed(describe(&e.message)).await,
    };
    let up = async {
        loop {
            match input.recv().await {
                Some(Some(b)) => {
                    count_bytes("portforward", "to_node", b.len());
                    if tx.send(channel::DATA, &b).await.is_err() {
                        return;
                    }
                }
                Some(None) => {
                    let _ = tx.close(channel::DATA).await;
                }
                None => {
                    let _ = tx.reset("the client closed the connection").await;
                    return;
                }
            }
        }
    };
    let down = async {
        let mut data_open = true;
        let outcome = loop {
            match rx.recv().await {
                Some(Incoming::Data(channel::DATA, b)) => {
                    count_bytes("portforward", "to_client", b.len());
                    if !writer.data(data_id, b, false).await {
                        break None;
                    }
                }
                Some(Incoming::Close(channel::DATA)) => {
                    writer.data(data_id, Bytes::new(), true).await;
                    data_open = false;
                }
                Some(Incoming::Done(Ok(_))) => break None,
                Some(Incoming::Done(Err(e))) => break Some(describe(&e.message)),
                Some(Incoming::Reset(r)) => break Some(describe(&r)),
                None => break Some(describe("the node stream ended")),
                Some(_) => {}
            }
        };
        if data_open {
            writer.data(data_id, Bytes::new(), true).await;
        }
        // kubectl waits for the error stream's end before it lets the connection go.
        let message = outcome.map(Bytes::from).unwrap_or_default();
        writer.data(error_id, message, true).await;
    };
    tokio::pin!(up, down);
    // The node's side ending finishes the pair; the client leaving ends it early. Either way the
    // error stream ends: kubectl holds the local connection open until it does.
    tokio::select! {
        _ = &mut down => {}
        _ = &mut up => {
            writer.data(data_id, Bytes::new(), true).await;
            writer.data(error_id, Bytes::new(), true).await;
        }
    }
}
