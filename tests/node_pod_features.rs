//! End-to-end on a real node: pod features of issue #11 beyond tests/node_workloads.rs.
//! Lifecycle hooks (postStart before the container counts as started, a failing postStart,
//! preStop before SIGTERM), HTTPS probes against a self-signed TLS server (Debian's
//! `openssl s_server`) and a plain HTTP port, gRPC probes against a real grpc.health.v1 server
//! (h2, run by the test), activeDeadlineSeconds, termination messages, image pull secrets
//! against a registry with htpasswd auth, and hostname/subdomain with the cluster DNS. Each
//! test runs its own `kubus up` with a real node agent (root), driven by the real kubectl.

mod common;

use common::{condition, container_status, eventually, Cluster};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = common::unique_dir(tag);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process killed when the test ends, even on a failure.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn events_with(c: &Cluster, pod: &str, reason: &str) -> Vec<String> {
    c.events_of(pod).into_iter().filter(|(r, _)| r == reason).map(|(_, m)| m).collect()
}

#[test]
fn lifecycle_hooks_run_around_the_container() {
    let c = Cluster::start_with_node("pod-hooks", &[]);
    let data = TempDir::new("hooks-data");
    let log = data.0.join("log");
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{{name: data, hostPath: {{path: "{dir}", type: Directory}}}}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, "trap 'echo term >> /data/log; exit 0' TERM; echo main >> /data/log; while true; do sleep 1; done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "sleep 2; echo poststart >> /data/log"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo prestop >> /data/log"]}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bad-hook}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sleep, "3600"]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo no way; exit 7"]}}}}
"#,
        dir = data.0.display()
    ));
    // The first time the container shows as running, its postStart hook (2 s) is already done.
    let p = c.wait_pod("hooked", 60, "main running", |p| container_status(p, "main")["state"]["running"].is_object());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("poststart"), "running before postStart returned: {text:?}\n{p:#}");
    assert_eq!(container_status(&p, "main")["started"], true);
    c.wait_pod_ready("hooked", 30);

    // A failing postStart: FailedPostStartHook, the container killed and restarted (Always).
    let p =
        c.wait_pod("bad-hook", 60, "a restart", |p| container_status(p, "main")["restartCount"].as_u64() >= Some(1));
    assert_ne!(condition(&p, "Ready"), "True");
    let failed = events_with(&c, "bad-hook", "FailedPostStartHook");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        failed.first().map(String::as_str),
        Some(
            format!(
                "Exec lifecycle hook ([sh -c echo no way; exit 7]) for Container \"main\" in Pod \"bad-hook_default({uid})\" \
                 failed - error: command 'sh -c echo no way; exit 7' exited with 7: no way\n, message: \"no way\\n\""
            )
            .as_str()
        ),
        "{failed:?}"
    );
    assert!(events_with(&c, "bad-hook", "Killing").iter().any(|m| m == "FailedPostStartHook"));

    // preStop runs before the container gets SIGTERM, within the grace period.
    let t0 = Instant::now();
    c.kubectl(&["delete", "pod", "hooked", "--wait=true", "--timeout=60s"]).expect_ok();
    assert!(t0.elapsed() < Duration::from_secs(15), "the container stopped at SIGTERM: {:?}", t0.elapsed());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |w: &str| lines.iter().position(|l| *l == w).unwrap_or_else(|| panic!("no {w} in {lines:?}"));
    assert!(at("prestop") < at("term"), "{lines:?}");
    c.kubectl(&["delete", "pod", "bad-hook", "--wait=true", "--timeout=60s"]).expect_ok();
}

/// A self-signed certificate and key in `dir` (Debian's openssl).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kubus-probe-test",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    (cert, key)
}

/// A plain HTTP server answering 200 to everything, on all addresses.
fn plain_http_server() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

/// A real grpc.health.v1 server over HTTP/2 cleartext (h2) on all addresses: SERVING for the
/// service `kubus.test`, SERVICE_UNKNOWN for any other.
fn grpc_health_server() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(s).await else { return };
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        tokio::spawn(async move {
                            let mut body = req.into_body();
                            let mut msg = Vec::new();
                            while let Some(Ok(chunk)) = body.data().await {
                                let _ = body.flow_control().release_capacity(chunk.len());
                                msg.extend_from_slice(&chunk);
                            }
                            // HealthCheckRequest{service = 1}: [0, len(4), 0x0a, n, service...].
                            let service =
                                msg.get(7..).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default();
                            let status = if service == "kubus.test" { 1 } else { 3 };
                            let head = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc")
                                .body(())
                                .unwrap();
                            let Ok(mut send) = respond.send_response(head, false) else { return };
                            let _ = send.send_data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]), false);
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let _ = send.send_trailers(trailers);
                        });
                    }
                });
            }
        });
    });
    port
}

fn ready(p: &Value, container: &str) -> bool {
    container_status(p, container)["ready"] == true
}

#[test]
fn https_and_grpc_probes() {
    let c = Cluster::start_with_node("pod-probes", &[]);
    let certs = TempDir::new("probe-certs");
    let (cert, key) = self_signed(&certs.0);
    let tls_port = common::free_port();
    // Real TLS with a self-signed certificate: `-www` answers GET / with a status page.
    let _tls = Background(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &tls_port.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server runs"),
    );
    let plain_port = plain_http_server();
    let grpc_port = grpc_health_server();
    // A host-network pod: its probes go to the node's address, where the test's servers listen.
    // Generous timeouts and thresholds: a busy 2-core machine must not flap the passing probes.
    let probe = |name: &str, handler: String| {
        format!(
            "  - name: {name}\n    image: busybox\n    command: [sleep, \"3600\"]\n    readinessProbe: {{{handler}, periodSeconds: 1, timeoutSeconds: 5, failureThreshold: 3}}\n"
        )
    };
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: probed}\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n",
    );
    yaml += &probe("tls", format!("httpGet: {{scheme: HTTPS, path: /, port: {tls_port}}}"));
    yaml += &probe("grpc", format!("grpc: {{port: {grpc_port}, service: kubus.test}}"));
    yaml += &probe("grpc-other", format!("grpc: {{port: {grpc_port}, service: other}}"));
    yaml += &probe("plain", format!("httpGet: {{scheme: HTTPS, path: /, port: {plain_port}}}"));
    c.apply(&yaml);
    let p = c.wait_pod("probed", 60, "tls and grpc ready", |p| ready(p, "tls") && ready(p, "grpc"));
    assert!(!ready(&p, "plain") && !ready(&p, "grpc-other"), "{p:#}");
    assert_eq!(condition(&p, "Ready"), "False");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let unhealthy = eventually(30, || {
        let e = events_with(&c, "probed", "Unhealthy");
        (e.iter().any(|m| m.contains("https://")) && e.iter().any(|m| m.contains("SERVICE_UNKNOWN"))).then_some(e)
    });
    let https = format!(
        "Readiness probe failed: Get \"https://{ip}:{plain_port}/\": http: server gave HTTP response to HTTPS client"
    );
    assert!(unhealthy.contains(&https), "{unhealthy:?}");
    assert!(
        unhealthy
            .contains(&"Readiness probe failed: service unhealthy (responded with \"SERVICE_UNKNOWN\")".to_string()),
        "{unhealthy:?}"
    );
    c.kubectl(&["delete", "pod", "probed", "--wait=true", "--timeout=60s"]).expect_ok();
}

#[test]
fn active_deadline_and_termination_messages() {
    let c = Cluster::start_with_node("pod-deadline", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: msg-file}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    terminationMessagePath: /tmp/my-message
    command: [sh, -c, "printf 'done by file' > /tmp/my-message; echo not this"]
---
apiVersion: v1
kind: Pod
metadata: {name: msg-logs}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, "for i in $(seq 1 100); do echo line $i; done; echo last words >&2; exit 3"]
---
apiVersion: v1
kind: Pod
metadata: {name: msg-logs-ok}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, "echo all good"]
"#,
    );
    let t0 = Instant::now();
    let p = c.wait_pod("deadline", 60, "Failed", |p| p["status"]["phase"] == "Failed");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(p["status"]["reason"], "DeadlineExceeded");
    assert_eq!(p["status"]["message"], "Pod was active on the node longer than the specified deadline");
    assert!(container_status(&p, "main")["state"]["terminated"].is_object(), "{p:#}");
    assert!(!events_with(&c, "deadline", "DeadlineExceeded").is_empty());

    let terminated = |name: &str| {
        let p = c.wait_pod(name, 60, "terminated", |p| container_status(p, "main")["state"]["terminated"].is_object());
        container_status(&p, "main")["state"]["terminated"].clone()
    };
    assert_eq!(terminated("msg-file")["message"], "done by file");
    let logs = terminated("msg-logs");
    assert_eq!(logs["exitCode"], 3);
    let message = logs["message"].as_str().unwrap();
    // The last 80 lines of the log: lines 22 to 100, then stderr's.
    assert!(message.starts_with("line 22\n") && message.ends_with("line 100\nlast words\n"), "{message:?}");
    assert!(terminated("msg-logs-ok")["message"].is_null(), "success: no message from the log");
}

/// The busybox image built from the host's busybox-static with umoci, as `layout:base`, with
/// `/marker` holding `marker`.
fn build_image(layout: &Path, scratch: &Path, marker: &str) {
    let l = layout.display().to_string();
    run("umoci", &["init", "--layout", &l]);
    run("umoci", &["new", "--image", &format!("{l}:empty")]);
    let bundle = scratch.join("bundle");
    run("umoci", &["unpack", "--image", &format!("{l}:empty"), bundle.to_str().unwrap()]);
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(bundle.join("rootfs/marker"), format!("{marker}\n")).unwrap();
    run("umoci", &["repack", "--image", &format!("{l}:base"), bundle.to_str().unwrap()]);
    run("umoci", &["config", "--image", &format!("{l}:base"), "--config.env", "PATH=/bin"]);
    let _ = std::fs::remove_dir_all(&bundle);
}

const REGISTRY_USER: &str = "kubus";
const REGISTRY_PASSWORD: &str = "kubus-secret-pw";
/// bcrypt (cost 4, so the registry checks it quickly) of REGISTRY_PASSWORD; distribution's
/// htpasswd auth takes only bcrypt.
const REGISTRY_HTPASSWD: &str = "kubus:$2b$04$abcdefghijklmnopqrstuuenVdsC1VWp94Zfj5NOxjvct2HrX9b7a";

#[test]
fn image_pull_secrets_against_a_registry_with_htpasswd_auth() {
    let dir = TempDir::new("auth-registry");
    let port = common::free_port();
    std::fs::write(dir.0.join("htpasswd"), format!("{REGISTRY_HTPASSWD}\n")).unwrap();
    let cfg = dir.0.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {data}}}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd: {{realm: kubus-test, path: {htpasswd}}}\n",
            data = dir.0.join("data").display(),
            htpasswd = dir.0.join("htpasswd").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
    let _registry = Background(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs"),
    );
    let addr = format!("127.0.0.1:{port}");
    // Up, and refusing anonymous requests.
    eventually(20, || {
        let out = Command::new("busybox").args(["wget", "-qO-", &format!("http://{addr}/v2/")]).output().ok()?;
        String::from_utf8_lossy(&out.stderr).contains("401").then_some(())
    });
    let layout = dir.0.join("layout");
    build_image(&layout, &dir.0, "private-marker");
    let creds = format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}");
    let dest = format!("docker://{addr}/private/app:1");
    let src = format!("oci:{}:base", layout.display());
    run("skopeo", &["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &dest]);

    let c = Cluster::start_with_node("pod-pull-secrets", &[]);
    let pod = |name: &str, secret: Option<&str>| {
        let secrets = secret.map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n")).unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{secrets}  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {addr}/private/app:1\n    imagePullPolicy: Always\n    command: [sh, -c, \"cat /marker; exec sleep 3600\"]\n"
        )
    };
    // Anonymous: refused, the pull errors as any failed pull does.
    c.apply(&pod("anonymous", None));
    let p = c.wait_pod("anonymous", 60, "a pull error", |p| {
        let reason = container_status(p, "main")["state"]["waiting"]["reason"].as_str().unwrap_or("").to_string();
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    assert_ne!(p["status"]["phase"], "Running");
    // With the secret kubectl makes for that registry, the pull is served.
    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={addr}"),
        &format!("--docker-username={REGISTRY_USER}"),
        &format!("--docker-password={REGISTRY_PASSWORD}"),
    ])
    .expect_ok();
    c.apply(&pod("authorized", Some("regcred")));
    c.wait_pod_ready("authorized", 60);
    let logs = eventually(10, || {
        let l = c.kubectl(&["logs", "authorized"]).stdout;
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs, "private-marker\n");
    // A secret with the wrong password does not open the registry.
    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "wrong",
        &format!("--docker-server={addr}"),
        &format!("--docker-username={REGISTRY_USER}"),
        "--docker-password=not-it",
    ])
    .expect_ok();
    // The image is on the node by now: a refused pull under Always still fails (unlike an
    // unreachable registry, whose absence the node's copy covers).
    c.apply(&pod("wrong-password", Some("wrong")));
    c.wait_pod("wrong-password", 60, "a pull error", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"].as_str().is_some_and(|r| r.contains("ImagePull"))
    });
    let failed = eventually(20, || {
        let e = events_with(&c, "wrong-password", "Failed");
        e.iter().any(|m| m.starts_with("Failed to pull image") && m.contains("Not authorized")).then_some(e)
    });
    assert!(!failed.is_empty());
    c.kubectl(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]).expect_ok();
}

#[test]
fn hostname_and_subdomain_resolve_through_the_cluster_dns() {
    let c = Cluster::start_with_node("pod-hostname", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-pod, labels: {app: web}}
spec:
  hostname: web-0
  subdomain: web
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: [sleep, "3600"]}
"#,
    );
    let p = c.wait_pod_ready("web-pod", 60);
    c.wait_pod_ready("client", 60);
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let hostname = c.kubectl(&["exec", "web-pod", "--", "hostname"]).expect_ok();
    assert_eq!(hostname.trim(), "web-0");
    let hosts = c.kubectl(&["exec", "web-pod", "--", "cat", "/etc/hosts"]).expect_ok();
    assert!(hosts.contains(&format!("{ip}\tweb-0.web.default.svc.cluster.local\tweb-0")), "{hosts}");
    // The endpoints carry the pod's hostname, so the cluster DNS answers its name.
    let endpoints = c.get_json(&["endpoints", "web"]);
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["hostname"], "web-0", "{endpoints:#}");
    let answer = eventually(30, || {
        let r = c.kubectl(&["exec", "client", "--", "nslookup", "web-0.web.default.svc.cluster.local"]);
        (r.ok && r.stdout.contains(&ip)).then_some(r.stdout)
    });
    assert!(answer.contains("web-0.web.default.svc.cluster.local"), "{answer}");
    let nx = c.kubectl(&["exec", "client", "--", "nslookup", "web-1.web.default.svc.cluster.local"]);
    assert!(!nx.ok || nx.stdout.contains("NXDOMAIN") || nx.stderr.contains("NXDOMAIN"), "{}{}", nx.stdout, nx.stderr);
    c.kubectl(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]).expect_ok();
}
