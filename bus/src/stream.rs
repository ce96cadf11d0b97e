//! Streams between the API server and node agents: `kubectl logs`, `exec`, `attach` and
//! `port-forward`. The API server terminates WebSocket or SPDY and speaks only this; a node agent
//! implements [`NodeStreams`] and runs [`serve_node_streams`].
//!
//! The protocol, over core NATS (no JetStream: nothing here outlives the connection):
//! 1. Open: request/reply on `kubus.<cluster>.node.<node>.stream` with a bincode [`StreamOpen`];
//!    the reply is `Result<(), StreamError>`, an error the API server returns as a Status before
//!    any upgrade.
//! 2. Frames on `kubus.<cluster>.node.<node>.stream.<sid>.up` (API server to node) and `.down`
//!    (node to API server). Every subject of a node is under `kubus.<cluster>.node.<node>.`, the
//!    name encoded as one token, so NATS permissions give a node its own subjects and no other's: `[channel u8][bytes]` data chunks of at most [`CHUNK`] bytes, or `[255][control]`.
//!    Control shares the data subject so that a close, or the final status, never overtakes data
//!    (NATS keeps order per publisher and subject, not across subjects).
//! 3. Credit flow control: at most [`WINDOW`] unacknowledged bytes per direction; the receiver
//!    acknowledges as its consumer takes data. This bounds memory on both ends and keeps
//!    subscribers clear of NATS slow-consumer limits.
//! 4. A ping every [`PING_INTERVAL`]; a side that hears nothing for [`IDLE_TIMEOUT`], or gets a
//!    reset, tears the stream down. Closing stdin kills nothing, as with kubelet.
//!
//! A port-forward stream carries one TCP connection (data on channel 0); the API server opens
//! one per forwarded connection.

use crate::api::{decode, encode, EnvelopeError};
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, TryFutureExt};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

/// Largest data payload of one message.
pub const CHUNK: usize = 32 * 1024;
/// Unacknowledged bytes a sender may have in flight per direction.
pub const WINDOW: usize = 256 * 1024;
/// The receiver acknowledges once this much was consumed (a quarter window keeps acks rare but
/// the sender busy).
const ACK_EVERY: usize = WINDOW / 4;
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the API server waits for a node agent to accept a stream.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long output may still drain after an exec's process exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(10);
const CONTROL: u8 = 255;

/// Channel numbers, as kubelet's remote command protocol numbers them.
pub mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// A port-forward stream's bytes, both ways.
    pub const DATA: u8 = 0;
}

/// Subject on which node `node` of `cluster` accepts streams.
pub fn open_subject(cluster: &str, node: &str) -> String {
    format!("kubus.{cluster}.node.{}.stream", crate::store::key::encode_token(node))
}

/// Subject of stream `sid`'s frames in direction `dir` (`up` to the node, `down` from it).
fn frame_subject(cluster: &str, node: &str, sid: &str, dir: &str) -> String {
    format!("{}.{sid}.{dir}", open_subject(cluster, node))
}

/// Whether `sid` is one subject token (the API server picks it; a node subscribes to it).
fn is_token(sid: &str) -> bool {
    !sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A refusal or failure, shaped as the Status the API server turns it into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StreamError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl StreamError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        StreamError { code, reason: reason.to_string(), message: message.into() }
    }
    /// 404: the pod or container is unknown on this node.
    pub fn not_found(message: impl Into<String>) -> Self {
        StreamError::new(404, "NotFound", message)
    }
    /// 400: the request cannot be served as asked (e.g. the container is not running).
    pub fn bad_request(message: impl Into<String>) -> Self {
        StreamError::new(400, "BadRequest", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        StreamError::new(500, "InternalError", message)
    }
}

/// `kubectl logs`: which log and how much of it. The container is always explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// `kubectl exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    /// Never set together with `tty` (a terminal merges stderr into stdout).
    pub stderr: bool,
    pub tty: bool,
}

/// `kubectl attach`: the container's own stdio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AttachRequest {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// One forwarded TCP connection to `port` of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortForwardRequest {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamKind {
    Logs(LogRequest),
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl StreamKind {
    /// The metric label / span field.
    pub fn name(&self) -> &'static str {
        match self {
            StreamKind::Logs(_) => "logs",
            StreamKind::Exec(_) => "exec",
            StreamKind::Attach(_) => "attach",
            StreamKind::PortForward(_) => "portforward",
        }
    }
    fn pod(&self) -> (&str, &str) {
        match self {
            StreamKind::Logs(r) => (&r.namespace, &r.pod),
            StreamKind::Exec(r) => (&r.namespace, &r.pod),
            StreamKind::Attach(r) => (&r.namespace, &r.pod),
            StreamKind::PortForward(r) => (&r.namespace, &r.pod),
        }
    }
}

/// The open request: `sid` names the frame subjects of this stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpen {
    pub sid: String,
    pub kind: StreamKind,
}

type OpenReply = Result<(), StreamError>;

/// The stdio of an exec or attach, as the node agent sees it.
pub struct StreamIo {
    /// `None` when stdin was not requested; the channel ends when the client closes stdin.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Terminal size changes (width, height), for `tty`.
    pub resize: mpsc::Receiver<(u16, u16)>,
}

/// What a node agent serves. Errors returned before the stream starts reach kubectl as a Status.
pub trait NodeStreams: Send + Sync + 'static {
    /// The log bytes; the stream ends when the log does (or, following, when the container stops).
    fn logs(&self, req: LogRequest) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, StreamError>>;
    /// Runs the command and resolves to its exit code once it exited.
    fn exec(&self, req: ExecRequest, io: StreamIo) -> BoxFuture<'static, Result<i32, StreamError>>;
    /// Attaches to the container's stdio until the container stops or the client leaves.
    fn attach(&self, req: AttachRequest, io: StreamIo) -> BoxFuture<'static, Result<(), StreamError>>;
    /// A connection to the port in the pod's network namespace.
    fn port_forward(&self, req: PortForwardRequest) -> BoxFuture<'static, Result<tokio::net::TcpStream, StreamError>>;
    /// Called before an exec or attach is accepted, so that an unknown pod or container, or one
    /// not running, is refused with a Status before kubectl upgrades. Accepts by default.
    fn check(&self, _kind: &StreamKind) -> BoxFuture<'static, Result<(), StreamError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Failures of the stream machinery itself.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot subscribe on the bus: {0}")]
    Subscribe(String),
    #[error("cannot publish on the bus: {0}")]
    Publish(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the stream is closed")]
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Control {
    /// The receiver consumed this many more bytes.
    Ack(u32),
    Ping,
    /// No more data on this channel from the sender (stdin closed, TCP half-close).
    Close(u8),
    Resize {
        width: u16,
        height: u16,
    },
    /// The last message of a stream: an exec's exit code, `None` for the other kinds.
    Done(Result<Option<i32>, StreamError>),
    /// Teardown without a result (the client left, the peer timed out).
    Reset(String),
}

/// What arrives from the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Data(u8, Bytes),
    Close(u8),
    Resize(u16, u16),
    Done(Result<Option<i32>, StreamError>),
    Reset(String),
}

/// Background tasks of one stream end; the last handle to go aborts them and, unless the
/// stream finished, tells the peer so that it does not wait for the idle timeout.
struct Tasks {
    handles: Vec<tokio::task::AbortHandle>,
    client: async_nats::Client,
    subject: String,
    finished: AtomicBool,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
        if !self.finished.load(Ordering::Relaxed) {
            if let (Ok(payload), Ok(rt)) =
                (control_payload(&Control::Reset("the peer went away".into())), tokio::runtime::Handle::try_current())
            {
                let (client, subject) = (self.client.clone(), self.subject.clone());
                rt.spawn(async move {
                    let _ = client.publish(subject, payload).await;
                });
            }
        }
    }
}

fn control_payload(c: &Control) -> Result<Bytes, EnvelopeError> {
    let body = encode(c)?;
    let mut b = BytesMut::with_capacity(body.len() + 1);
    b.put_u8(CONTROL);
    b.put_slice(&body);
    Ok(b.freeze())
}

/// The sending half of a stream end (cheap to clone).
#[derive(Clone)]
pub struct StreamSender {
    client: async_nats::Client,
    subject: String,
    credit: Arc<Semaphore>,
    tasks: Arc<Tasks>,
}

impl StreamSender {
    /// Sends data on `channel` in chunks, waiting for credit when the peer lags.
    pub async fn send(&self, channel: u8, data: &[u8]) -> Result<(), SessionError> {
        debug_assert!(channel != CONTROL);
        for chunk in data.chunks(CHUNK) {
            let permit = self.credit.acquire_many(chunk.len() as u32).await.map_err(|_| SessionError::Closed)?;
            permit.forget();
            let mut b = BytesMut::with_capacity(chunk.len() + 1);
            b.put_u8(channel);
            b.put_slice(chunk);
            self.publish(b.freeze()).await?;
        }
        Ok(())
    }

    /// No more data on `channel` from this side.
    pub async fn close(&self, channel: u8) -> Result<(), SessionError> {
        self.control(&Control::Close(channel)).await
    }

    pub async fn resize(&self, width: u16, height: u16) -> Result<(), SessionError> {
        self.control(&Control::Resize { width, height }).await
    }

    /// Ends the stream with its result (node side).
    pub async fn done(&self, result: Result<Option<i32>, StreamError>) -> Result<(), SessionError> {
        self.tasks.finished.store(true, Ordering::Relaxed);
        self.control(&Control::Done(result)).await
    }

    /// Tears the stream down without a result.
    pub async fn reset(&self, reason: &str) -> Result<(), SessionError> {
        self.tasks.finished.store(true, Ordering::Relaxed);
        self.control(&Control::Reset(reason.to_string())).await
    }

    async fn control(&self, c: &Control) -> Result<(), SessionError> {
        self.publish(control_payload(c)?).await
    }

    async fn publish(&self, payload: Bytes) -> Result<(), SessionError> {
        self.client.publish(self.subject.clone(), payload).await.map_err(|e| SessionError::Publish(e.to_string()))
    }
}

/// The receiving half of a stream end.
pub struct StreamReceiver {
    rx: mpsc::UnboundedReceiver<Incoming>,
    client: async_nats::Client,
    /// Where acks go: the subject this end sends on.
    subject: String,
    unacked: usize,
    tasks: Arc<Tasks>,
}

impl StreamReceiver {
    /// The next message; `None` once the stream is over (after a `Done` or `Reset`).
    pub async fn recv(&mut self) -> Option<Incoming> {
        let m = self.rx.recv().await?;
        match &m {
            Incoming::Data(_, b) => {
                // The sink took the bytes: hand the credit back in batches.
                self.unacked += b.len();
                if self.unacked >= ACK_EVERY {
                    if let Ok(p) = control_payload(&Control::Ack(self.unacked as u32)) {
                        let _ = self.client.publish(self.subject.clone(), p).await;
                    }
                    self.unacked = 0;
                }
            }
            Incoming::Done(_) | Incoming::Reset(_) => self.tasks.finished.store(true, Ordering::Relaxed),
            _ => {}
        }
        Some(m)
    }
}

/// Builds one end from its inbound subscription and outbound subject.
fn session(
    client: async_nats::Client,
    send_subject: String,
    inbound: async_nats::Subscriber,
) -> (StreamSender, StreamReceiver) {
    let credit = Arc::new(Semaphore::new(WINDOW));
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_loop(inbound, tx, credit.clone()));
    let pinger = {
        let (client, subject) = (client.clone(), send_subject.clone());
        tokio::spawn(async move {
            let Ok(ping) = control_payload(&Control::Ping) else { return };
            loop {
                tokio::time::sleep(PING_INTERVAL).await;
                if client.publish(subject.clone(), ping.clone()).await.is_err() {
                    return;
                }
            }
        })
    };
    let tasks = Arc::new(Tasks {
        handles: vec![reader.abort_handle(), pinger.abort_handle()],
        client: client.clone(),
        subject: send_subject.clone(),
        finished: AtomicBool::new(false),
    });
    let sender = StreamSender { client: client.clone(), subject: send_subject.clone(), credit, tasks: tasks.clone() };
    let receiver = StreamReceiver { rx, client, subject: send_subject, unacked: 0, tasks };
    (sender, receiver)
}

async fn read_loop(mut sub: async_nats::Subscriber, tx: mpsc::UnboundedSender<Incoming>, credit: Arc<Semaphore>) {
    loop {
        let msg = match tokio::time::timeout(IDLE_TIMEOUT, sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                let _ = tx.send(Incoming::Reset("the bus subscription ended".into()));
                break;
            }
            Err(_) => {
                let _ = tx.send(Incoming::Reset(format!("nothing heard from the peer for {IDLE_TIMEOUT:?}")));
                break;
            }
        };
        let Some((&ch, rest)) = msg.payload.split_first() else { continue };
        let incoming = if ch != CONTROL {
            Incoming::Data(ch, msg.payload.slice(1..))
        } else {
            match decode::<Control>(rest) {
                Ok(Control::Ack(n)) => {
                    credit.add_permits(n as usize);
                    continue;
                }
                Ok(Control::Ping) => continue,
                Ok(Control::Close(c)) => Incoming::Close(c),
                Ok(Control::Resize { width, height }) => Incoming::Resize(width, height),
                Ok(Control::Done(r)) => Incoming::Done(r),
                Ok(Control::Reset(r)) => Incoming::Reset(r),
                Err(e) => Incoming::Reset(format!("undecodable control message: {e}")),
            }
        };
        let last = matches!(incoming, Incoming::Done(_) | Incoming::Reset(_));
        if tx.send(incoming).is_err() || last {
            break;
        }
    }
    // Wakes senders waiting for credit that will never come.
    credit.close();
}

fn unique_sid(client: &async_nats::Client) -> String {
    // An inbox is a unique token (nuid) with a prefix; subjects need no other dependency.
    let inbox = client.new_inbox();
    inbox.rsplit('.').next().unwrap_or(&inbox).to_string()
}

/// API server side: asks node `node` for a stream. Any refusal or transport failure comes back
/// as the Status to send before the upgrade.
pub async fn open_stream(
    client: &async_nats::Client,
    cluster: &str,
    node: &str,
    kind: StreamKind,
) -> Result<(StreamSender, StreamReceiver), StreamError> {
    let sid = unique_sid(client);
    let unreachable = |e: &dyn std::fmt::Display| {
        StreamError::internal(format!("error dialing backend: node agent of node {node:?} unreachable: {e}"))
    };
    // Subscribed before the open goes out: the node may send as soon as it replies.
    let inbound = client.subscribe(frame_subject(cluster, node, &sid, "down")).await.map_err(|e| unreachable(&e))?;
    let payload = encode(&StreamOpen { sid: sid.clone(), kind }).map_err(|e| StreamError::internal(e.to_string()))?;
    let reply =
        match tokio::time::timeout(OPEN_TIMEOUT, client.request(open_subject(cluster, node), payload.into())).await {
            Err(_) => return Err(unreachable(&format!("no answer within {OPEN_TIMEOUT:?}"))),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(unreachable(&"no agent serves this node"))
            }
            Ok(Err(e)) => return Err(unreachable(&e)),
            Ok(Ok(m)) => m,
        };
    decode::<OpenReply>(&reply.payload).map_err(|e| StreamError::internal(e.to_string()))??;
    Ok(session(client.clone(), frame_subject(cluster, node, &sid, "up"), inbound))
}

/// Node side: serves the streams of node `node` until the subscription ends.
pub async fn serve_node_streams(
    client: async_nats::Client,
    cluster: &str,
    node: &str,
    handler: Arc<dyn NodeStreams>,
) -> Result<(), SessionError> {
    let subject = open_subject(cluster, node);
    let mut sub = client.subscribe(subject.clone()).await.map_err(|e| SessionError::Subscribe(e.to_string()))?;
    client.flush().await.map_err(|e| SessionError::Subscribe(e.to_string()))?;
    tracing::info!(%subject, "serving node streams");
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else { continue };
        let (client, handler) = (client.clone(), handler.clone());
        let frames = subject.clone();
        tokio::spawn(async move {
            let open = match decode::<StreamOpen>(&msg.payload) {
                Ok(o) if is_token(&o.sid) => o,
                Ok(_) => {
                    let r: OpenReply = Err(StreamError::bad_request("a stream id must be one subject token"));
                    if let Ok(p) = encode(&r) {
                        let _ = client.publish(reply, p.into()).await;
                    }
                    return;
                }
                Err(e) => {
                    let r: OpenReply = Err(StreamError::bad_request(format!("undecodable stream open: {e}")));
                    if let Ok(p) = encode(&r) {
                        let _ = client.publish(reply, p.into()).await;
                    }
                    return;
                }
            };
            let (ns, pod) = open.kind.pod();
            let span = tracing::info_span!("node_stream", sid = %open.sid, kind = open.kind.name(), namespace = %ns, pod = %pod);
            serve_one(client, frames, handler, reply, open).instrument(span).await;
        });
    }
    Ok(())
}

/// A stream the node agent accepted, ready to be pumped.
enum Accepted {
    Logs(BoxStream<'static, Bytes>),
    /// An exec or attach: the stdio it wants (stdin, stdout, stderr) and what runs with it.
    Io((bool, bool, bool), RunIo),
    Tcp(tokio::net::TcpStream),
}

/// Serves one stream; `frames` is the node's open subject, under which its frames go.
async fn serve_one(
    client: async_nats::Client,
    frames: String,
    handler: Arc<dyn NodeStreams>,
    reply: async_nats::Subject,
    open: StreamOpen,
) {
    let answer = |r: OpenReply| {
        let client = client.clone();
        let reply = reply.clone();
        async move {
            if let Ok(p) = encode(&r) {
                let _ = client.publish(reply, p.into()).await;
            }
        }
    };
    // Subscribed before the reply: the API server sends as soon as it has it.
    let inbound = match client.subscribe(format!("{frames}.{}.up", open.sid)).await {
        Ok(s) => s,
        Err(e) => return answer(Err(StreamError::internal(format!("cannot subscribe: {e}")))).await,
    };
    let start = std::time::Instant::now();
    let kind = open.kind.name();
    let accepted = match open.kind.clone() {
        StreamKind::Logs(req) => handler.logs(req).await.map(Accepted::Logs),
        StreamKind::Exec(req) => handler.check(&open.kind).await.map(|()| {
            let want = (req.stdin, req.stdout, req.stderr && !req.tty);
            Accepted::Io(want, Box::new(move |io| handler.exec(req, io).map_ok(Some).boxed()))
        }),
        StreamKind::Attach(req) => handler.check(&open.kind).await.map(|()| {
            let want = (req.stdin, req.stdout, req.stderr && !req.tty);
            Accepted::Io(want, Box::new(move |io| handler.attach(req, io).map_ok(|()| None).boxed()))
        }),
        StreamKind::PortForward(req) => handler.port_forward(req).await.map(Accepted::Tcp),
    };
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(e) => return answer(Err(e)).await,
    };
    answer(Ok(())).await;
    let (tx, rx) = session(client.clone(), format!("{frames}.{}.down", open.sid), inbound);
    let result = match accepted {
        Accepted::Logs(logs) => pump_logs(tx, rx, logs).await,
        Accepted::Io(want, run) => pump_io(tx, rx, want, run).await,
        Accepted::Tcp(tcp) => pump_tcp(tx, rx, tcp).await,
    };
    match result {
        Ok(()) => tracing::debug!(kind, elapsed = ?start.elapsed(), "node stream finished"),
        Err(e) => tracing::info!(kind, error = %e, "node stream ended early"),
    }
}

/// Drains incoming messages until the peer ends the stream.
async fn until_reset(mut rx: StreamReceiver) -> String {
    while let Some(m) = rx.recv().await {
        if let Incoming::Reset(r) = m {
            return r;
        }
    }
    "the stream ended".into()
}

async fn pump_logs(tx: StreamSender, rx: StreamReceiver, mut logs: BoxStream<'static, Bytes>) -> Result<(), String> {
    let gone = until_reset(rx);
    tokio::pin!(gone);
    loop {
        tokio::select! {
            reason = &mut gone => return Err(reason),
            chunk = logs.next() => match chunk {
                Some(b) => tx.send(channel::STDOUT, &b).await.map_err(|e| e.to_string())?,
                None => return tx.done(Ok(None)).await.map_err(|e| e.to_string()),
            },
        }
    }
}

type RunIo = Box<dyn FnOnce(StreamIo) -> BoxFuture<'static, Result<Option<i32>, StreamError>> + Send>;

async fn pump_io(
    tx: StreamSender,
    mut rx: StreamReceiver,
    (stdin, stdout, stderr): (bool, bool, bool),
    run: RunIo,
) -> Result<(), String> {
    let (stdin_tx, stdin_rx) = if stdin { Some(mpsc::channel::<Bytes>(8)).unzip() } else { (None, None) };
    let (out_tx, out_rx) = if stdout { Some(mpsc::channel::<Bytes>(8)).unzip() } else { (None, None) };
    let (err_tx, err_rx) = if stderr { Some(mpsc::channel::<Bytes>(8)).unzip() } else { (None, None) };
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let io = StreamIo { stdin: stdin_rx, stdout: out_tx, stderr: err_tx, resize: resize_rx };
    let work = tokio::spawn(run(io));
    // Client to process: stdin and resizes, until the client closes stdin or leaves.
    let inbound = tokio::spawn(async move {
        let mut stdin_tx = stdin_tx;
        while let Some(m) = rx.recv().await {
            match m {
                Incoming::Data(channel::STDIN, b) => {
                    // Awaiting here is the backpressure: no ack goes out until the process reads.
                    if let Some(t) = &stdin_tx {
                        if t.send(b).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                Incoming::Close(channel::STDIN) => stdin_tx = None,
                Incoming::Resize(w, h) => {
                    let _ = resize_tx.try_send((w, h));
                }
                Incoming::Reset(r) => return r,
                _ => {}
            }
        }
        "the stream ended".to_string()
    });
    // Process to client; a client that left makes the output go nowhere rather than block.
    let forward = |rx: Option<mpsc::Receiver<Bytes>>, ch: u8, tx: StreamSender| async move {
        let Some(mut rx) = rx else { return };
        let mut open = true;
        while let Some(b) = rx.recv().await {
            if open && tx.send(ch, &b).await.is_err() {
                open = false;
            }
        }
    };
    let outbound = tokio::spawn({
        let tx = tx.clone();
        async move {
            tokio::join!(forward(out_rx, channel::STDOUT, tx.clone()), forward(err_rx, channel::STDERR, tx));
        }
    });
    let result = match work.await {
        Ok(r) => r,
        Err(e) => Err(StreamError::internal(format!("the stream handler failed: {e}"))),
    };
    // Output written just before the exit is still in the pipes.
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, outbound).await;
    inbound.abort();
    tx.done(result).await.map_err(|e| e.to_string())
}

/// How long a forwarded connection the pod closed waits for the client to close its side.
const POD_CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

async fn pump_tcp(tx: StreamSender, mut rx: StreamReceiver, tcp: tokio::net::TcpStream) -> Result<(), String> {
    let (mut read, mut write) = tcp.into_split();
    let down = {
        let tx = tx.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) => {
                        tracing::debug!("the pod closed its side of the forwarded connection");
                        return tx.close(channel::DATA).await.map_err(|e| e.to_string());
                    }
                    Ok(n) => tx.send(channel::DATA, &buf[..n]).await.map_err(|e| e.to_string())?,
                    Err(e) => return Err(format!("reading from the pod: {e}")),
                }
            }
        }
    };
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let up = async move {
        let mut closed_tx = Some(closed_tx);
        while let Some(m) = rx.recv().await {
            match m {
                Incoming::Data(channel::DATA, b) => {
                    if let Err(e) = write.write_all(&b).await {
                        return format!("writing to the pod: {e}");
                    }
                }
                Incoming::Close(channel::DATA) => {
                    let _ = write.shutdown().await;
                    // Keep listening: a reset still has to end the other direction.
                    if let Some(t) = closed_tx.take() {
                        let _ = t.send(());
                    }
                }
                Incoming::Reset(r) => return r,
                _ => {}
            }
        }
        "the stream ended".to_string()
    };
    tokio::pin!(down, up, closed_rx);
    // Both directions finish, or the first failure ends everything. Once the pod has closed its
    // side, the client gets a second to close its own (as containerd's port-forward does):
    // a protocol that ends with the connection (HTTP/1.0, ...) must see the end locally too.
    let (mut down_done, mut up_closed) = (false, false);
    let linger = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(linger);
    while !(down_done && up_closed) {
        tokio::select! {
            r = &mut down, if !down_done => {
                r?;
                down_done = true;
                linger.as_mut().reset(tokio::time::Instant::now() + POD_CLOSE_LINGER);
            }
            _ = &mut closed_rx, if !up_closed => up_closed = true,
            _ = &mut linger, if down_done => {
                tracing::debug!("the client kept its side open after the pod closed; ending the connection");
                break;
            }
            reason = &mut up => return Err(reason),
        }
    }
    tx.done(Ok(None)).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_streams_under_its_own_subjects() {
        // The name is one token: node "a" holds nothing of node "a.b".
        assert_eq!(open_subject("c", "a.b"), "kubus.c.node.a_2eb.stream");
        assert_eq!(frame_subject("c", "a.b", "S1", "up"), "kubus.c.node.a_2eb.stream.S1.up");
        assert!(is_token("AbC09_-x"));
        for sid in ["", "a.b", "*", ">", "a b"] {
            assert!(!is_token(sid), "{sid}");
        }
    }

    #[test]
    fn open_and_control_round_trip() {
        let open = StreamOpen {
            sid: "abc".into(),
            kind: StreamKind::Exec(ExecRequest {
                namespace: "default".into(),
                pod: "p".into(),
                container: "c".into(),
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                stdout: true,
                ..Default::default()
            }),
        };
        assert_eq!(decode::<StreamOpen>(&encode(&open).unwrap()).unwrap(), open);
        let p = control_payload(&Control::Done(Err(StreamError::not_found("no such container")))).unwrap();
        assert_eq!(p[0], CONTROL);
        match decode::<Control>(&p[1..]).unwrap() {
            Control::Done(Err(e)) => assert_eq!((e.code, e.reason.as_str()), (404, "NotFound")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
