//! kubectl logs / exec / cp / port-forward through the API server to a node agent on NATS.
//!
//! The node here is a host-side executor implementing the real `NodeStreams` trait: exec runs
//! the command as a host process (a pty via `script` for `-t`), logs stream a real file, and
//! port-forward connects to a TCP listener of the test. Everything is driven by the real
//! kubectl (v1.32), over WebSocket first and over SPDY when kubectl is told to fall back.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::api::ApiClient;
use kubus_bus::stream::{
    serve_node_streams, AttachRequest, ExecRequest, LogRequest, NodeStreams, PortForwardRequest, StreamError, StreamIo,
    StreamKind,
};
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use serde_json::json;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "test-node";
const CLUSTER: &str = "t";

fn token() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let seed = (n as u64) ^ ((std::process::id() as u64) << 20) ^ (n as u64 >> 17);
    format!("{:08x}", seed & 0xffff_ffff)
}

/// The test's node: real processes, files and sockets on this host.
struct HostNode {
    /// Container logs: `<pod>_<container>.log`; a `.stopped` file ends a follow.
    logs: PathBuf,
    pods: Vec<&'static str>,
}

impl HostNode {
    fn known(&self, pod: &str) -> Result<(), StreamError> {
        if self.pods.contains(&pod) {
            Ok(())
        } else {
            Err(StreamError::not_found(format!("pod {pod:?} is not running on node {NODE}")))
        }
    }
}

async fn copy_out(pipe: Option<impl tokio::io::AsyncRead + Unpin>, to: Option<tokio::sync::mpsc::Sender<Bytes>>) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(to) = &to {
                    if to.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl NodeStreams for HostNode {
    fn logs(&self, req: LogRequest) -> BoxFuture<'static, Result<BoxStream<'static, Bytes>, StreamError>> {
        let path = self.logs.join(format!("{}_{}.log", req.pod, req.container));
        let stopped = path.with_extension("stopped");
        let known = self.known(&req.pod);
        Box::pin(async move {
            known?;
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| StreamError::not_found(format!("no log for container {:?}: {e}", req.container)))?;
            let mut content = Vec::new();
            file.read_to_end(&mut content).await.map_err(|e| StreamError::internal(e.to_string()))?;
            if let Some(n) = req.tail_lines {
                let text = String::from_utf8_lossy(&content).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                let keep = lines[lines.len().saturating_sub(n as usize)..].join("\n");
                content = if keep.is_empty() { Vec::new() } else { format!("{keep}\n").into_bytes() };
            }
            let first = futures::stream::iter(Some(Bytes::from(content)));
            if !req.follow {
                return Ok(Box::pin(first) as BoxStream<'static, Bytes>);
            }
            // Following: new bytes as the file grows, until the container "stops".
            let rest = futures::stream::unfold((file, stopped), |(mut file, stopped)| async move {
                loop {
                    let mut buf = vec![0u8; 8192];
                    let n = file.read(&mut buf).await.ok()?;
                    if n > 0 {
                        buf.truncate(n);
                        return Some((Bytes::from(buf), (file, stopped)));
                    }
                    if stopped.exists() {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            Ok(Box::pin(futures::StreamExt::chain(first, rest)) as BoxStream<'static, Bytes>)
        })
    }

    fn exec(&self, req: ExecRequest, io: StreamIo) -> BoxFuture<'static, Result<i32, StreamError>> {
        Box::pin(async move {
            let mut cmd = if req.tty {
                // `script` gives the command a real pty on this host.
                let line = req.command.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))).collect::<Vec<_>>();
                let mut c = tokio::process::Command::new("script");
                c.args(["-qfec", &line.join(" "), "/dev/null"]);
                c
            } else {
                let mut c = tokio::process::Command::new(&req.command[0]);
                c.args(&req.command[1..]);
                c
            };
            cmd.stdin(if io.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let mut child =
                cmd.spawn().map_err(|e| StreamError::internal(format!("cannot run {:?}: {e}", req.command)))?;
            let stdin = match (io.stdin, child.stdin.take()) {
                (Some(mut rx), Some(mut pipe)) => Some(tokio::spawn(async move {
                    while let Some(b) = rx.recv().await {
                        if pipe.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    // Dropping the pipe is the process's EOF.
                })),
                _ => None,
            };
            let mut resize = io.resize;
            tokio::spawn(async move { while resize.recv().await.is_some() {} });
            let out = tokio::spawn(copy_out(child.stdout.take(), io.stdout));
            let err = tokio::spawn(copy_out(child.stderr.take(), io.stderr));
            let status = child.wait().await.map_err(|e| StreamError::internal(e.to_string()))?;
            let _ = tokio::join!(out, err);
            if let Some(s) = stdin {
                s.abort();
            }
            use std::os::unix::process::ExitStatusExt;
            Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
        })
    }

    fn attach(&self, req: AttachRequest, _io: StreamIo) -> BoxFuture<'static, Result<(), StreamError>> {
        // This node runs no container processes to attach to.
        Box::pin(async move {
            Err(StreamError::bad_request(format!("container {} has no attachable process", req.container)))
        })
    }

    fn port_forward(&self, req: PortForwardRequest) -> BoxFuture<'static, Result<tokio::net::TcpStream, StreamError>> {
        let known = self.known(&req.pod);
        Box::pin(async move {
            known?;
            tokio::net::TcpStream::connect(("127.0.0.1", req.port)).await.map_err(|e| {
                StreamError::internal(format!("failed to connect to localhost:{} inside namespace: {e}", req.port))
            })
        })
    }

    fn check(&self, kind: &StreamKind) -> BoxFuture<'static, Result<(), StreamError>> {
        let r = match kind {
            StreamKind::Exec(e) => self.known(&e.pod),
            StreamKind::Attach(a) => self.known(&a.pod),
            _ => Ok(()),
        };
        Box::pin(async move { r })
    }
}

/// Removes the test's directory, also when the setup itself fails.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An API server, a NATS server and the host node on their own thread; removed on drop.
struct Env {
    /// Dropped last, after the thread stopped.
    _cleanup: TempDir,
    dir: PathBuf,
    port: u16,
    echo_port: u16,
    kubeconfig: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pod(name: &str, node: &str, containers: &[&str], running: bool) -> serde_json::Value {
    let cs: Vec<_> = containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
    let statuses: Vec<_> = containers
        .iter()
        .map(|c| {
            let state = if running {
                json!({"running": {"startedAt": "2025-01-01T00:00:00Z"}})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            json!({"name": c, "image": "busybox", "imageID": "", "ready": running, "restartCount": 0, "state": state})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": cs},
        "status": {"phase": if running { "Running" } else { "Pending" }, "containerStatuses": statuses},
    })
}

impl Env {
    fn start() -> Env {
        let tok = token();
        let dir = std::env::temp_dir().join(format!("kubus-streams-{tok}"));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let cleanup = TempDir(dir.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_dir = dir.clone();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let nats = EmbeddedNats::start(&thread_dir.join("nats"), "127.0.0.1:0", None).await.unwrap();
                let client = kubus_bus::connect(nats.url(), "streams-test").await.unwrap();
                let store = Store::open(client.clone(), StoreConfig { cluster: CLUSTER.into(), ..Default::default() })
                    .await
                    .unwrap();
                let config = ApiServerConfig {
                    bind: "127.0.0.1:0".parse().unwrap(),
                    cluster: CLUSTER.into(),
                    watch_cache_events: 1000,
                    http_workers: 2,
                    tombstone_retention: Duration::from_secs(3600),
                    event_ttl: std::time::Duration::from_secs(3600),
                    tls: None,
                    advertise: None,
                    audit: None,
                    service_ranges: Default::default(),
                };
                let api = ApiServer::start(store, client.clone(), config).await.unwrap();
                // Pods: through the API, spec and then status, as a scheduler and kubelet would.
                let apic = ApiClient::new(client.clone(), CLUSTER, "streams-test");
                for (p, node, cs, running) in [
                    ("web", NODE, &["main"][..], true),
                    ("multi", NODE, &["a", "b"][..], true),
                    ("pending", NODE, &["c"][..], false),
                    ("orphan", "ghost-node", &["main"][..], true),
                ] {
                    let obj = pod(p, node, cs, running);
                    let (code, created) =
                        apic.json("POST", "/api/v1/namespaces/default/pods", "", None, Some(&obj)).await.unwrap();
                    assert_eq!(code, 201, "{created}");
                    let mut with_status = created.clone();
                    for (k, v) in obj["status"].as_object().unwrap() {
                        with_status["status"][k] = v.clone();
                    }
                    let path = format!("/api/v1/namespaces/default/pods/{p}/status");
                    let (code, out) = apic.json("PUT", &path, "", None, Some(&with_status)).await.unwrap();
                    assert_eq!(code, 200, "{out}");
                }
                // The pod's "server": a TCP echo listener on this host.
                let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let echo_port = echo.local_addr().unwrap().port();
                tokio::spawn(async move {
                    while let Ok((conn, _)) = echo.accept().await {
                        tokio::spawn(async move {
                            let (mut r, mut w) = conn.into_split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                            let _ = w.shutdown().await;
                        });
                    }
                });
                let node = Arc::new(HostNode { logs: thread_dir.join("logs"), pods: vec!["web", "multi", "pending"] });
                let node_client = kubus_bus::connect(nats.url(), "test-node").await.unwrap();
                let served = tokio::spawn(async move { serve_node_streams(node_client, CLUSTER, NODE, node).await });
                // Wait until the node subscription is live.
                for _ in 0..100 {
                    if client.request(kubus_bus::stream::open_subject(CLUSTER, NODE), Bytes::new()).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ready_tx.send((api.addr.port(), echo_port)).unwrap();
                let _ = stop_rx.await;
                served.abort();
                api.stop().await;
                nats.stop().await;
            })
        });
        let (port, echo_port) = ready_rx.recv_timeout(Duration::from_secs(60)).expect("test cluster starts");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: default\n\
                 current-context: t\nusers:\n- name: t\n  user: {{}}\n"
            ),
        )
        .unwrap();
        Env { _cleanup: cleanup, dir, port, echo_port, kubeconfig, stop: Some(stop_tx), thread: Some(thread) }
    }

    fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).env("KUBECACHEDIR", self.dir.join("kube-cache"));
        c
    }

    /// Runs kubectl with optional stdin; (exit code, stdout, stderr).
    fn run(&self, args: &[&str], stdin: Option<&[u8]>, envs: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
        let mut c = self.kubectl();
        c.args(args).envs(envs.iter().copied());
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl runs");
        let writer = stdin.map(|data| {
            let mut pipe = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            })
        });
        let out = wait_with_timeout(child, Duration::from_secs(60));
        if let Some(w) = writer {
            let _ = w.join();
        }
        out
    }

    fn log_path(&self, pod: &str, container: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{pod}_{container}.log"))
    }

    fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> (i32, Vec<u8>, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = String::new();
        let _ = stderr.read_to_string(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kubectl did not finish within {limit:?}; stderr: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), out.join().unwrap(), err.join().unwrap())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn exec_checks(env: &Env, envs: &[(&str, &str)]) {
    // stdout and the exit code.
    let (code, out, err) = env.run(&["exec", "web", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"], None, envs);
    assert_eq!((code, text(&out).as_str()), (3, "hi\n"), "stderr: {err}");
    assert!(err.contains("oops"), "stderr carries the command's stderr: {err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    let (code, out, err) = env.run(&["exec", "web", "--", "true"], None, envs);
    assert_eq!((code, out.len()), (0, 0), "{err}");

    // stdin piped and closed.
    let (code, out, err) = env.run(&["exec", "-i", "web", "--", "tr", "a-z", "A-Z"], Some(b"hello pod\n"), envs);
    assert_eq!((code, text(&out).as_str()), (0, "HELLO POD\n"), "{err}");

    // Several MiB each way: credit flow control in both directions.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i * 7 % 251) as u8).collect();
    let (code, out, err) = env.run(&["exec", "-i", "web", "--", "wc", "-c"], Some(&big), envs);
    assert_eq!((code, text(&out).trim()), (0, big.len().to_string().as_str()), "{err}");
    let (code, out, err) = env.run(&["exec", "web", "--", "head", "-c", "5000000", "/dev/zero"], None, envs);
    assert_eq!((code, out.len()), (0, 5_000_000), "{err}");
    assert!(out.iter().all(|b| *b == 0));

    // Errors reach kubectl as the server's Status.
    let (code, _, err) = env.run(&["exec", "multi", "-c", "nope", "--", "true"], None, envs);
    assert_ne!(code, 0);
    assert!(err.contains("container nope is not valid for pod multi"), "{err}");
    let (code, _, err) = env.run(&["exec", "orphan", "--", "true"], None, envs);
    assert_ne!(code, 0);
    assert!(err.contains("error dialing backend"), "{err}");
}

#[test]
fn exec_and_cp_over_websocket() {
    let env = Env::start();
    exec_checks(&env, &[]);

    // kubectl cp both ways (tar in the "container", stdin closed by v5's close signal).
    let local = env.dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let payload: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(local.join("data.bin"), &payload).unwrap();
    let remote = env.dir.join("in-pod");
    std::fs::create_dir_all(&remote).unwrap();
    let src = local.join("data.bin").display().to_string();
    let dst = format!("web:{}", remote.join("copied.bin").display());
    let (code, _, err) = env.run(&["cp", &src, &dst], None, &[]);
    assert_eq!(code, 0, "cp to the pod: {err}");
    assert_eq!(std::fs::read(remote.join("copied.bin")).unwrap(), payload);

    let back = local.join("back.bin").display().to_string();
    let from = format!("web:{}", remote.join("copied.bin").display());
    let (code, _, err) = env.run(&["cp", &from, &back], None, &[]);
    assert_eq!(code, 0, "cp from the pod: {err}");
    assert_eq!(std::fs::read(&back).unwrap(), payload);

    // A terminal: kubectl itself runs under a pty so that it asks for one.
    let line = format!(
        "kubectl --kubeconfig {} exec -it web -- sh -c 'test -t 0 && test -t 1 && echo on-a-tty'",
        env.kubeconfig.display()
    );
    let out = Command::new("script").args(["-qec", &line, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    assert!(text(&out.stdout).contains("on-a-tty"), "stdout: {} stderr: {}", text(&out.stdout), text(&out.stderr));

    // Request validation, straight over HTTP.
    let (code, body) = env.http_get("/api/v1/namespaces/default/pods/web/exec?stdout=true");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("you must specify at least 1 command"), "{body}");
    let (code, body) = env.http_get("/api/v1/namespaces/default/pods/web/exec?command=true&stdout=true");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Upgrade request required"), "{body}");

    // Metrics saw the streams.
    let (_, metrics) = env.http_get("/metrics");
    let served = metrics
        .lines()
        .find(|l| l.starts_with("kubus_apiserver_streams_total{kind=\"exec\",result=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(served >= 8.0, "exec streams counted: {served}\n{metrics}");
    assert!(metrics.contains("kubus_apiserver_stream_bytes_total{direction=\"to_node\",kind=\"exec\"}"));
}

#[test]
fn exec_over_spdy_fallback() {
    let env = Env::start();
    // kubectl's switch for the pre-WebSocket path: SPDY/3.1 with v4.channel.k8s.io.
    exec_checks(&env, &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")]);
}

#[test]
fn logs_plain_tail_follow_and_errors() {
    let env = Env::start();
    let log = env.log_path("web", "main");
    std::fs::write(&log, "one\ntwo\nthree\n").unwrap();
    let (code, out, err) = env.run(&["logs", "web"], None, &[]);
    assert_eq!((code, text(&out).as_str()), (0, "one\ntwo\nthree\n"), "{err}");
    let (code, out, err) = env.run(&["logs", "web", "--tail=1"], None, &[]);
    assert_eq!((code, text(&out).as_str()), (0, "three\n"), "{err}");

    // Follow: new lines arrive while kubectl waits; it exits when the log ends.
    let mut child =
        env.kubectl().args(["logs", "-f", "web"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = seen_tx.send(all.clone());
        }
        all
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen_rx.recv_timeout(left) {
                Ok(s) if s.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("kubectl logs -f never printed {needle:?}"),
            }
        }
    };
    wait_for("three\n");
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"four\n").unwrap();
    wait_for("four\n");
    assert!(child.try_wait().unwrap().is_none(), "still following");
    std::fs::write(log.with_extension("stopped"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "kubectl logs -f did not end with the log");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert_eq!(reader.join().unwrap(), "one\ntwo\nthree\nfour\n");

    // Errors, as upstream words them.
    let (code, _, err) = env.run(&["logs", "pending"], None, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("container \"c\" in pod \"pending\" is waiting to start: ContainerCreating"), "{err}");
    let (code, _, err) = env.run(&["logs", "multi", "-c", "nope"], None, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("container nope is not valid for pod multi"), "{err}");
    let (code, body) = env.http_get("/api/v1/namespaces/default/pods/multi/log");
    assert_eq!(code, 400);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(status["message"], "a container name must be specified for pod multi, choose one of: [a b]");
    // The node's own refusal (no log file) is a 404 Status too.
    let (code, body) = env.http_get("/api/v1/namespaces/default/pods/multi/log?container=a");
    assert_eq!(code, 404, "{body}");
    let (code, _) = env.http_get("/api/v1/namespaces/default/pods/web/log?tailLines=-1");
    assert_eq!(code, 422);
}

fn port_forward_round_trip(env: &Env, envs: &[(&str, &str)]) {
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = env
        .kubectl()
        .args(["port-forward", "pod/web", &format!("{local}:{}", env.echo_port)])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !text(&line).contains("Forwarding from") {
        assert_eq!(stdout.read(&mut b).unwrap(), 1, "kubectl port-forward ended early");
        line.push(b[0]);
    }
    // Two connections in turn, one of them several MiB each way (half-close included).
    for size in [5usize, 4 * 1024 * 1024] {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
        let mut w = conn.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echo differs");
    }
    drop(guard);
}

#[test]
fn port_forward_over_websocket_tunnel_and_spdy() {
    let env = Env::start();
    port_forward_round_trip(&env, &[]);
    port_forward_round_trip(&env, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]);
    let (_, metrics) = env.http_get("/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("kubus_apiserver_streams_total{kind=\"portforward\",result=\"ok\"} ")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}
