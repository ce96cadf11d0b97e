//! What the node serves to `kubectl logs`, `exec` and `port-forward` (through the API server
//! and the bus): log files of the pod's containers, processes run in a container by its shim,
//! and TCP connections to the pod's address.

use crate::context::{NodeContext, PodHandleInner};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use kubus_bus::stream::{
    AttachRequest, ExecRequest, LogRequest, NodeStreams, PortForwardRequest, StreamError, StreamIo, StreamKind,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub struct NodeStreamHandler {
    ctx: Arc<NodeContext>,
}

impl NodeStreamHandler {
    pub fn new(ctx: Arc<NodeContext>) -> Self {
        NodeStreamHandler { ctx }
    }
}

fn pod(ctx: &NodeContext, ns: &str, name: &str, uid: Option<&str>) -> Result<PodHandleInner, StreamError> {
    let handle = ctx.pods.read().expect("pods lock").get(&(ns.to_string(), name.to_string())).cloned();
    let snap = handle.map(|h| h.snapshot()).filter(|p| uid.is_none_or(|u| u == p.uid));
    snap.ok_or_else(|| StreamError::not_found(format!("pod {ns}/{name} is not running on this node")))
}

/// (run id, attempt, running) of a container.
fn container(p: &PodHandleInner, name: &str) -> Result<(String, u32, bool), StreamError> {
    p.containers.get(name).cloned().ok_or_else(|| {
        StreamError::bad_request(format!(
            "container \"{name}\" in pod \"{}\" is waiting to start: ContainerCreating",
            p.name
        ))
    })
}

fn running(p: &PodHandleInner, name: &str) -> Result<String, StreamError> {
    let (id, _, up) = container(p, name)?;
    if !up {
        return Err(StreamError::bad_request(format!(
            "container {name} is not valid for pod {}: container is not running",
            p.name
        )));
    }
    Ok(id)
}

impl NodeStreamHandler {
    fn log_path(&self, p: &PodHandleInner, container: &str, attempt: u32) -> PathBuf {
        self.ctx.host.pod_log_dir(&p.namespace, &p.name, &p.uid).join(container).join(format!("{attempt}.log"))
    }
}

impl NodeStreams for NodeStreamHandler {
    fn logs(&self, req: LogRequest) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, StreamError>> {
        let p = pod(&self.ctx, &req.namespace, &req.pod, req.uid.as_deref());
        let ctx = self.ctx.clone();
        let this = NodeStreamHandler { ctx: ctx.clone() };
        Box::pin(async move {
            let p = p?;
            let (id, attempt, up) = container(&p, &req.container)?;
            let path = if req.previous {
                if attempt == 0 {
                    return Err(StreamError::bad_request(format!(
                        "previous terminated container \"{}\" in pod \"{}\" not found",
                        req.container, p.name
                    )));
                }
                this.log_path(&p, &req.container, attempt - 1)
            } else {
                this.log_path(&p, &req.container, attempt)
            };
            // A follow ends when the container does.
            let following = req.follow && up && !req.previous;
            let (stop_tx, stop) = watch::channel(!following);
            if following {
                let runtime = ctx.runtime.clone();
                tokio::spawn(async move {
                    let _ = runtime.wait(&id).await;
                    let _ = stop_tx.send(true);
                });
            }
            let since_time = match (&req.since_time, req.since_seconds) {
                (Some(t), _) => kubus_apimachinery::time::parse_rfc3339(t),
                (None, Some(s)) => SystemTime::now().checked_sub(Duration::from_secs(s.max(0) as u64)),
                _ => None,
            };
            let opts = kubus_container_runtime::LogOptions {
                follow: following,
                tail_lines: req.tail_lines.filter(|n| *n >= 0).map(|n| n as u64),
                timestamps: req.timestamps,
                since_time,
                limit_bytes: req.limit_bytes.filter(|n| *n > 0).map(|n| n as u64),
            };
            let s = kubus_container_runtime::read_logs(path, opts, stop).await.map_err(|e| {
                StreamError::bad_request(format!("failed to read the log of container \"{}\": {e}", req.container))
            })?;
            Ok(s.boxed())
        })
    }

    fn exec(&self, req: ExecRequest, io: StreamIo) -> BoxFuture<'static, Result<i32, StreamError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let p = pod(&ctx, &req.namespace, &req.pod, req.uid.as_deref())?;
            let id = running(&p, &req.container)?;
            let spec = kubus_container_runtime::ExecSpec {
                args: req.command.clone(),
                // As containerd's CRI does: a terminal session says what terminal it is.
                env: if req.tty { vec!["TERM=xterm".to_string()] } else { vec![] },
                cwd: None,
                tty: req.tty,
                stdin: req.stdin,
            };
            let session = ctx.runtime.exec(&id, spec).await.map_err(|e| StreamError::internal(e.to_string()))?;
            Ok(bridge(session, io, false).await)
        })
    }

    fn attach(&self, req: AttachRequest, io: StreamIo) -> BoxFuture<'static, Result<(), StreamError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let p = pod(&ctx, &req.namespace, &req.pod, req.uid.as_deref())?;
            let id = running(&p, &req.container)?;
            let session =
                ctx.runtime.attach(&id, req.stdin).await.map_err(|e| StreamError::bad_request(e.to_string()))?;
            // Ends when the container does (or the client detaches).
            bridge(session, io, true).await;
            Ok(())
        })
    }

    fn port_forward(&self, req: PortForwardRequest) -> BoxFuture<'static, Result<tokio::net::TcpStream, StreamError>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let p = pod(&ctx, &req.namespace, &req.pod, req.uid.as_deref())?;
            let ip = p.ips.first().cloned().ok_or_else(|| StreamError::bad_request("the pod has no IP address yet"))?;
            let addr = format!("{ip}:{}", req.port);
            tokio::net::TcpStream::connect(&addr).await.map_err(|e| {
                StreamError::internal(format!(
                    "error forwarding port {} to pod {}: dial tcp {addr}: {e}",
                    req.port, p.name
                ))
            })
        })
    }

    fn check(&self, kind: &StreamKind) -> BoxFuture<'static, Result<(), StreamError>> {
        let r = match kind {
            StreamKind::Exec(r) => pod(&self.ctx, &r.namespace, &r.pod, r.uid.as_deref())
                .and_then(|p| running(&p, &r.container).map(|_| ())),
            StreamKind::Attach(r) => pod(&self.ctx, &r.namespace, &r.pod, r.uid.as_deref()).map(|_| ()),
            StreamKind::PortForward(r) => pod(&self.ctx, &r.namespace, &r.pod, r.uid.as_deref()).map(|_| ()),
            StreamKind::Logs(r) => pod(&self.ctx, &r.namespace, &r.pod, r.uid.as_deref()).map(|_| ()),
        };
        Box::pin(async move { r })
    }
}

/// Pumps the client's channels into the exec and back until the process exits; its exit
/// code (128+signal for a signal) is the result.
async fn bridge(mut s: kubus_container_runtime::ExecSession, io: StreamIo, detachable: bool) -> i32 {
    let StreamIo { stdin, stdout, stderr, mut resize } = io;
    // An attached client may leave while the container runs on: then the session ends.
    let watch = stdout.clone().or_else(|| stderr.clone()).filter(|_| detachable);
    let gone = async move {
        match watch {
            Some(w) => w.closed().await,
            None => std::future::pending().await,
        }
    };
    let mut pumps = vec![];
    if let (Some(mut from), Some(to)) = (stdin, s.stdin.take()) {
        pumps.push(tokio::spawn(async move {
            while let Some(b) = from.recv().await {
                if to.send(b).await.is_err() {
                    break;
                }
            }
            // Dropping `to` closes the process's stdin.
        }));
    }
    let resize_to = s.resize.clone();
    pumps.push(tokio::spawn(async move {
        while let Some(r) = resize.recv().await {
            if resize_to.send(r).await.is_err() {
                break;
            }
        }
    }));
    let out = forward(s.stdout, stdout);
    let err = forward(s.stderr, stderr);
    let code = tokio::select! {
        code = &mut s.exit => Some(code.unwrap_or(137)),
        _ = gone => None,
    };
    if code.is_some() {
        // Output written just before the exit is still delivered.
        let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join(out, err)).await;
    }
    for p in pumps {
        p.abort();
    }
    code.unwrap_or(0)
}

fn forward(
    mut from: tokio::sync::mpsc::Receiver<Bytes>,
    to: Option<tokio::sync::mpsc::Sender<Bytes>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(b) = from.recv().await {
            if let Some(to) = &to {
                if to.send(b).await.is_err() {
                    return;
                }
            }
        }
    })
}
