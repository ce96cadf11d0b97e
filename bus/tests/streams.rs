//! Node streams against a real nats-server: each kind is accepted or refused before the upgrade,
//! and an accepted one carries the node agent's bytes and final result to the opener.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use kubus_bus::stream::{
    channel, open_stream, serve_node_streams, AttachRequest, ExecRequest, Incoming, LogRequest, NodeStreams,
    PortForwardRequest, StreamError, StreamIo, StreamKind, StreamReceiver,
};
use kubus_bus::EmbeddedNats;
use std::sync::Arc;
use std::time::Duration;

const CLUSTER: &str = "t";
const NODE: &str = "n1";

/// A node agent whose only pod is "web"; port-forward is never possible.
struct FakeNode;

fn known(pod: &str) -> Result<(), StreamError> {
    if pod == "web" {
        Ok(())
    } else {
        Err(StreamError::not_found(format!("pod {pod:?} is not on this node")))
    }
}

impl NodeStreams for FakeNode {
    fn logs(&self, req: LogRequest) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, StreamError>> {
        let known = known(&req.pod);
        Box::pin(async move {
            known?;
            let lines = vec![Bytes::from_static(b"one\n"), Bytes::from_static(b"two\n")];
            Ok(Box::pin(futures::stream::iter(lines)) as BoxStream<'static, Bytes>)
        })
    }

    fn exec(&self, req: ExecRequest, io: StreamIo) -> BoxFuture<'static, Result<i32, StreamError>> {
        Box::pin(async move {
            if let Some(out) = io.stdout {
                let _ = out.send(Bytes::from(req.command.join(" "))).await;
            }
            Ok(3)
        })
    }

    fn attach(&self, _req: AttachRequest, io: StreamIo) -> BoxFuture<'static, Result<(), StreamError>> {
        Box::pin(async move {
            if let Some(err) = io.stderr {
                let _ = err.send(Bytes::from_static(b"attached")).await;
            }
            Ok(())
        })
    }

    fn port_forward(&self, req: PortForwardRequest) -> BoxFuture<'static, Result<tokio::net::TcpStream, StreamError>> {
        Box::pin(async move { Err(StreamError::bad_request(format!("nothing listens on port {}", req.port))) })
    }

    fn check(&self, kind: &StreamKind) -> BoxFuture<'static, Result<(), StreamError>> {
        let known = match kind {
            StreamKind::Exec(r) => known(&r.pod),
            StreamKind::Attach(r) => known(&r.pod),
            _ => Ok(()),
        };
        Box::pin(async move { known })
    }
}

/// Everything the node sends until the stream is over.
async fn received(mut rx: StreamReceiver) -> Vec<Incoming> {
    let mut all = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("the node answers") {
        let last = matches!(m, Incoming::Done(_) | Incoming::Reset(_));
        all.push(m);
        if last {
            break;
        }
    }
    all
}

fn data(ch: u8, s: &'static str) -> Incoming {
    Incoming::Data(ch, Bytes::from_static(s.as_bytes()))
}

#[tokio::test]
async fn each_kind_is_accepted_or_refused_before_the_upgrade() {
    let dir = std::env::temp_dir().join(format!("kubus-bus-streams-{}", std::process::id()));
    let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.expect("nats-server starts");
    let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
    let server = tokio::spawn(serve_node_streams(client.clone(), CLUSTER, NODE, Arc::new(FakeNode)));
    let open = |kind| open_stream(&client, CLUSTER, NODE, kind);
    // The agent subscribes in the background: wait until it answers.
    let logs = LogRequest { pod: "web".into(), container: "c".into(), ..Default::default() };
    let mut accepted = None;
    for _ in 0..100 {
        match open(StreamKind::Logs(logs.clone())).await {
            Ok(stream) => {
                accepted = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let (_tx, rx) = accepted.expect("the node agent serves logs");
    assert_eq!(
        received(rx).await,
        [data(channel::STDOUT, "one\n"), data(channel::STDOUT, "two\n"), Incoming::Done(Ok(None))]
    );

    let missing = open(StreamKind::Logs(LogRequest { pod: "gone".into(), ..logs })).await.err().unwrap();
    assert_eq!((missing.code, missing.message.as_str()), (404, "pod \"gone\" is not on this node"));

    let exec = ExecRequest {
        pod: "web".into(),
        command: vec!["echo".into(), "hi".into()],
        stdout: true,
        ..Default::default()
    };
    let (_tx, rx) = open(StreamKind::Exec(exec.clone())).await.unwrap();
    assert_eq!(received(rx).await, [data(channel::STDOUT, "echo hi"), Incoming::Done(Ok(Some(3)))]);
    let refused = open(StreamKind::Exec(ExecRequest { pod: "gone".into(), ..exec })).await.err().unwrap();
    assert_eq!((refused.code, refused.reason.as_str()), (404, "NotFound"));

    let attach = AttachRequest { pod: "web".into(), stderr: true, ..Default::default() };
    let (_tx, rx) = open(StreamKind::Attach(attach.clone())).await.unwrap();
    assert_eq!(received(rx).await, [data(channel::STDERR, "attached"), Incoming::Done(Ok(None))]);
    // A terminal merges stderr into stdout, so an attach with a tty gets no stderr at all.
    let (_tx, rx) = open(StreamKind::Attach(AttachRequest { tty: true, ..attach.clone() })).await.unwrap();
    assert_eq!(received(rx).await, [Incoming::Done(Ok(None))]);
    let refused = open(StreamKind::Attach(AttachRequest { pod: "gone".into(), ..attach })).await.err().unwrap();
    assert_eq!(refused.code, 404);

    let forward = PortForwardRequest { pod: "web".into(), port: 8080, ..Default::default() };
    let refused = open(StreamKind::PortForward(forward)).await.err().unwrap();
    assert_eq!((refused.code, refused.message.as_str()), (400, "nothing listens on port 8080"));
    server.abort();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
