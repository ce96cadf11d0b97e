//! End-to-end on a real node, part two: what issue #4 asks of workloads beyond tests/node.rs.
//! Init containers, restart policies, probes, graceful termination, the kubectl streams (logs,
//! exec with a tty, cp, port-forward), hostPort and hostNetwork, image pull errors and the
//! node's own status. Each test runs its own `kubus up` with a real node agent (root) and
//! drives it with the real kubectl.

mod common;

use common::{condition, container_status, eventually, status_column, Cluster};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A background process (kubectl logs -f, port-forward) killed when the test ends, even on a
/// failure.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.0 GET; the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("unexpected response: {text:?}"))),
    }
}

/// kubectl in the background with stdout and stderr in `out` (what went wrong stays visible).
fn kubectl_logged(c: &Cluster, args: &[&str], out: &std::path::Path) -> Background {
    let f = std::fs::File::create(out).unwrap();
    let child = Command::new("kubectl")
        .env("KUBECONFIG", c.kubeconfig())
        .arg(format!("--cache-dir={}", c.dir.join("kubectl-cache").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    Background(child)
}

fn running(p: &Value, container: &str) -> bool {
    container_status(p, container)["state"]["running"].is_object()
}

fn restarts(p: &Value, container: &str) -> u64 {
    container_status(p, container)["restartCount"].as_u64().unwrap_or(0)
}

/// Seconds since the epoch of an RFC 3339 UTC time as the API prints them (`...T..:..:..Z`).
fn unix_secs(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    days * 86400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

#[track_caller]
fn assert_event(c: &Cluster, pod: &str, reason: &str, needle: &str) {
    eventually(20, || c.events_of(pod).iter().any(|(r, m)| r == reason && m.contains(needle)).then_some(()));
}

#[test]
fn init_containers_run_in_order_before_the_app_and_gate_the_pod() {
    let c = Cluster::start_with_node("wl-init", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web-init}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: www, emptyDir: {}}]
  initContainers:
  - name: first
    image: busybox
    command: ["sh", "-c", "echo one > /www/order; sleep 3"]
    volumeMounts: [{name: www, mountPath: /www}]
  - name: second
    image: busybox
    command: ["sh", "-c", "echo two >> /www/order; cp /www/order /www/index.html; sleep 2"]
    volumeMounts: [{name: www, mountPath: /www}]
  containers:
  - name: web
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    volumeMounts: [{name: www, mountPath: /www}]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: init-fails}
spec:
  restartPolicy: Never
  initContainers:
  - {name: check, image: busybox, command: ["sh", "-c", "echo precondition failed; exit 3"]}
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: init-retries}
spec:
  initContainers:
  - {name: check, image: busybox, command: ["sh", "-c", "exit 1"]}
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
"#,
    );
    // kubectl's STATUS column follows the init containers as upstream's printer does.
    eventually(30, || (status_column(&c, "web-init") == "Init:0/2").then_some(()));
    let p = c.pod("web-init");
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    assert_eq!(condition(&p, "Initialized"), "False");
    eventually(30, || (status_column(&c, "web-init") == "Init:1/2").then_some(()));
    let p = c.pod("web-init");
    assert_eq!(container_status(&p, "first")["state"]["terminated"]["reason"], "Completed", "{p}");
    assert!(running(&p, "second"), "{p}");
    assert!(!running(&p, "web"), "the app waits for every init container: {p}");
    assert_eq!(container_status(&p, "web")["state"]["waiting"]["reason"], "PodInitializing", "{p}");
    let p = c.wait_pod_ready("web-init", 60);
    assert_eq!(condition(&p, "Initialized"), "True");
    assert_eq!(status_column(&c, "web-init"), "Running");
    // Order: each one starts after the previous one finished, the app after both.
    let t = |name: &str, state: &str, key: &str| {
        container_status(&p, name)["state"][state][key].as_str().unwrap().to_string()
    };
    assert!(t("first", "terminated", "finishedAt") <= t("second", "terminated", "startedAt"), "{p}");
    assert!(t("second", "terminated", "finishedAt") <= t("web", "running", "startedAt"), "{p}");
    let body = c.kubectl(&["exec", "web-init", "--", "wget", "-qO-", "http://127.0.0.1:8080/index.html"]).expect_ok();
    assert_eq!(body, "one\ntwo\n");
    // A failing init container under restartPolicy Never fails the pod; the app never runs.
    let p = c.wait_pod("init-fails", 60, "Failed", |p| p["status"]["phase"] == "Failed");
    let t = &container_status(&p, "check")["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{p}");
    assert_eq!(t["reason"], "Error", "{p}");
    let main = container_status(&p, "main");
    assert!(main["containerID"].is_null() && main["state"]["waiting"].is_object(), "{p}");
    assert_eq!(status_column(&c, "init-fails"), "Init:Error");
    assert!(!c.events_of("init-fails").iter().any(|(r, m)| r == "Started" && m.contains("main")));
    assert_eq!(c.kubectl(&["logs", "init-fails", "-c", "check"]).expect_ok(), "precondition failed\n");
    // Under the default policy (Always) it is retried, backing off.
    let p = c.wait_pod("init-retries", 60, "init restarted", |p| restarts(p, "check") >= 1);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    eventually(30, || {
        let s = status_column(&c, "init-retries");
        (s == "Init:CrashLoopBackOff").then_some(())
    });
}

#[test]
fn restart_policies_decide_between_completed_failed_and_restarted() {
    let c = Cluster::start_with_node("wl-restart", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: done-ok}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo all done"]}
---
apiVersion: v1
kind: Pod
metadata: {name: fails-never}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo broken; exit 1"]}
---
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  restartPolicy: OnFailure
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "if [ -f /state/ran ]; then echo second attempt; exit 0; fi; touch /state/ran; echo first attempt; exit 4"]
    volumeMounts: [{name: state, mountPath: /state}]
"#,
    );
    let p = c.wait_pod("done-ok", 60, "Succeeded", |p| p["status"]["phase"] == "Succeeded");
    let t = &container_status(&p, "main")["state"]["terminated"];
    assert_eq!(t["reason"], "Completed", "{p}");
    assert_eq!(t["exitCode"], 0);
    assert_eq!(condition(&p, "Ready"), "False");
    let ready = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["reason"], "PodCompleted", "{p}");
    assert_eq!(status_column(&c, "done-ok"), "Completed");
    // A finished pod's logs stay readable (Jobs rely on it).
    assert_eq!(c.kubectl(&["logs", "done-ok"]).expect_ok(), "all done\n");

    let p = c.wait_pod("fails-never", 60, "Failed", |p| p["status"]["phase"] == "Failed");
    let t = &container_status(&p, "main")["state"]["terminated"];
    assert_eq!((t["reason"].as_str(), t["exitCode"].as_i64()), (Some("Error"), Some(1)), "{p}");
    assert_eq!(status_column(&c, "fails-never"), "Error");

    // OnFailure restarts the failed run; its success then completes the pod.
    let p = c.wait_pod("flaky", 60, "Succeeded", |p| p["status"]["phase"] == "Succeeded");
    let s = container_status(&p, "main");
    assert_eq!(s["restartCount"], 1, "{p}");
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 4, "{p}");
    assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{p}");
    assert_eq!(c.kubectl(&["logs", "flaky"]).expect_ok(), "second attempt\n");
    assert_eq!(c.kubectl(&["logs", "flaky", "--previous"]).expect_ok(), "first attempt\n");
    // Finished pods stay finished: nothing is restarted later.
    std::thread::sleep(Duration::from_secs(3));
    for (pod, phase) in [("done-ok", "Succeeded"), ("fails-never", "Failed"), ("flaky", "Succeeded")] {
        let p = c.pod(pod);
        assert_eq!(p["status"]["phase"], phase, "{p}");
        assert_eq!(restarts(&p, "main"), if pod == "flaky" { 1 } else { 0 }, "{p}");
    }
}

#[test]
fn probes_restart_unhealthy_containers_and_gate_readiness() {
    let c = Cluster::start_with_node("wl-probes", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: live-exec}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe: {exec: {command: ["cat", "/tmp/healthy"]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: live-http}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; (sleep 3; rm /www/healthz) & exec httpd -f -p 8080 -h /www"]
    livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: startup-gated}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 5; touch /tmp/started; exec sleep 3600"]
    startupProbe: {exec: {command: ["test", "-f", "/tmp/started"]}, periodSeconds: 1, failureThreshold: 30}
    livenessProbe: {exec: {command: ["test", "-f", "/tmp/started"]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: startup-fails}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    startupProbe: {exec: {command: ["sh", "-c", "echo not yet; exit 1"]}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: ready-exec}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    readinessProbe: {exec: {command: ["test", "-f", "/tmp/ready"]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: ready-tcp}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 3; httpd -p 9000 -h /tmp; exec sleep 3600"]
    readinessProbe: {tcpSocket: {port: 9000}, periodSeconds: 1, failureThreshold: 1}
"#,
    );
    // Liveness (exec): the failure restarts the container, with upstream's events.
    let p = c.wait_pod("live-exec", 60, "restarted by liveness", |p| restarts(p, "main") >= 1 && running(p, "main"));
    assert_eq!(container_status(&p, "main")["lastState"]["terminated"]["exitCode"], 137, "{p}");
    assert_event(&c, "live-exec", "Unhealthy", "Liveness probe failed");
    assert_event(&c, "live-exec", "Killing", "Container main failed liveness probe, will be restarted");
    // Liveness (httpGet): a 404 is a failure.
    c.wait_pod("live-http", 60, "restarted by liveness", |p| restarts(p, "main") >= 1);
    assert_event(&c, "live-http", "Unhealthy", "HTTP probe failed with statuscode: 404");
    // The startup probe holds liveness (which would fail at once) until it succeeds: the
    // container turns Ready about 5 s after it started, and nothing restarted.
    let p = c.wait_pod_ready("startup-gated", 60);
    let s = container_status(&p, "main");
    assert_eq!((s["started"].as_bool(), s["restartCount"].as_u64()), (Some(true), Some(0)), "{p}");
    let started = unix_secs(s["state"]["running"]["startedAt"].as_str().unwrap());
    let ready = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    let ready_at = unix_secs(ready["lastTransitionTime"].as_str().unwrap());
    assert!(
        ready_at - started >= 4,
        "Ready {}s after the start, before the startup probe could pass: {p}",
        ready_at - started
    );
    std::thread::sleep(Duration::from_secs(3));
    let p = c.pod("startup-gated");
    assert_eq!(restarts(&p, "main"), 0, "liveness ran before startup succeeded: {p}");
    assert_eq!(condition(&p, "Ready"), "True");
    // A startup probe that never succeeds restarts the container.
    c.wait_pod("startup-fails", 60, "restarted by startup", |p| restarts(p, "main") >= 1);
    assert_event(&c, "startup-fails", "Unhealthy", "Startup probe failed");
    assert_event(&c, "startup-fails", "Killing", "failed startup probe, will be restarted");
    assert_eq!(condition(&c.pod("startup-fails"), "Ready"), "False");
    // Readiness (exec) flips Ready both ways and never restarts anything.
    c.wait_pod_ready("ready-exec", 60);
    c.kubectl(&["exec", "ready-exec", "--", "rm", "/tmp/ready"]).expect_ok();
    let p = c.wait_pod("ready-exec", 20, "not Ready", |p| condition(p, "Ready") == "False");
    assert_eq!(container_status(&p, "main")["ready"], false);
    assert!(running(&p, "main"));
    assert_event(&c, "ready-exec", "Unhealthy", "Readiness probe failed");
    c.kubectl(&["exec", "ready-exec", "--", "touch", "/tmp/ready"]).expect_ok();
    let p = c.wait_pod_ready("ready-exec", 20);
    assert_eq!(restarts(&p, "main"), 0);
    // Readiness (tcpSocket): ready once something listens, not ready once it stops.
    let p = c.wait_pod_ready("ready-tcp", 60);
    assert_eq!(restarts(&p, "main"), 0);
    c.kubectl(&["exec", "ready-tcp", "--", "killall", "httpd"]).expect_ok();
    let p = c.wait_pod("ready-tcp", 20, "not Ready", |p| condition(p, "Ready") == "False");
    assert!(running(&p, "main"));
    assert_eq!(restarts(&p, "main"), 0);
}

#[test]
fn deletion_honours_sigterm_handlers_and_the_grace_period() {
    let c = Cluster::start_with_node("wl-grace", &[]);
    let host = c.dir.join("hostpath");
    std::fs::create_dir_all(&host).unwrap();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: trapper}}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{{name: out, hostPath: {{path: {host}, type: Directory}}}}]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap 'echo got TERM > /out/trapper; exit 0' TERM; echo up > /out/trapper; while true; do sleep 1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{{name: out, hostPath: {{path: {host}, type: Directory}}}}]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "trap '' TERM; echo up > /out/stubborn; while true; do sleep 1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
"#,
        host = host.display()
    ));
    c.wait_pod_ready("trapper", 60);
    c.wait_pod_ready("stubborn", 60);
    assert_eq!(std::fs::read_to_string(host.join("trapper")).unwrap(), "up\n");
    // A container that handles SIGTERM ends as soon as it is done, well inside the grace period.
    let t0 = Instant::now();
    c.kubectl(&["delete", "pod", "trapper", "--grace-period=5"]).expect_ok();
    let took = t0.elapsed();
    eprintln!("delete of a pod handling SIGTERM, --grace-period=5: {took:?}");
    assert!(took < Duration::from_millis(4500), "deleting a SIGTERM-handling pod took {took:?}");
    assert_eq!(std::fs::read_to_string(host.join("trapper")).unwrap(), "got TERM\n");
    // One that ignores it is killed once the grace period (not the pod's 30 s) has passed.
    let t0 = Instant::now();
    c.kubectl(&["delete", "pod", "stubborn", "--grace-period=3"]).expect_ok();
    let took = t0.elapsed();
    eprintln!("delete of a pod ignoring SIGTERM, --grace-period=3: {took:?}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(9),
        "deleting a pod ignoring SIGTERM with --grace-period=3 took {took:?}"
    );
    assert!(c.kubectl(&["get", "pod", "stubborn"]).stderr.contains("NotFound"));
}

#[test]
fn kubectl_logs_follow_tail_since_previous_and_containers() {
    let c = Cluster::start_with_node("wl-logs", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: static
    image: busybox
    command: ["sh", "-c", "echo alpha; echo beta; echo gamma; echo delta; exec sleep 3600"]
  - name: counter
    image: busybox
    command: ["sh", "-c", "sleep 3; i=1; while [ $i -le 5 ]; do echo tick-$i; i=$((i+1)); sleep 1; done"]
  - name: crashy
    image: busybox
    command: ["sh", "-c", "if [ -f /state/ran ]; then echo run-2; exec sleep 3600; fi; touch /state/ran; echo run-1; exit 1"]
    volumeMounts: [{name: state, mountPath: /state}]
"#,
    );
    c.wait_pod("talker", 60, "counter running", |p| running(p, "counter"));
    // -f streams lines as they are written and ends when the container exits.
    let out = c.dir.join("follow.out");
    let mut follow = Background(c.kubectl_background(&["logs", "-f", "talker", "-c", "counter"], &out));
    let mut saw_partial = false;
    let t0 = Instant::now();
    let status = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        saw_partial |= text.contains("tick-1") && !text.contains("tick-5");
        if let Some(s) = follow.0.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "logs -f did not end after the container exited: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "logs -f failed");
    assert!(saw_partial, "logs -f printed everything at once, not as it came");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "tick-1\ntick-2\ntick-3\ntick-4\ntick-5\n");
    let p = c.wait_pod("talker", 20, "counter completed", |p| {
        container_status(p, "counter")["state"]["terminated"]["reason"] == "Completed"
    });
    assert_eq!(restarts(&p, "counter"), 0, "exit 0 is not restarted under OnFailure: {p}");
    // -c picks the container, --tail the last lines, --limit-bytes a prefix.
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "static"]).expect_ok(), "alpha\nbeta\ngamma\ndelta\n");
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "static", "--tail=2"]).expect_ok(), "gamma\ndelta\n");
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "static", "--limit-bytes=6"]).expect_ok(), "alpha\n");
    // --since keeps what was written within the window.
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "static", "--since=1h"]).expect_ok(), "alpha\nbeta\ngamma\ndelta\n");
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "static", "--since=2s"]).expect_ok(), "");
    // Without -c kubectl takes the first container.
    assert!(c.kubectl(&["logs", "talker"]).expect_ok().starts_with("alpha\n"));
    c.kubectl(&["logs", "talker", "-c", "nope"]).expect_err("is not valid for pod talker");
    // --previous is the run before the restart.
    c.wait_pod("talker", 30, "crashy restarted", |p| restarts(p, "crashy") == 1 && running(p, "crashy"));
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "crashy"]).expect_ok(), "run-2\n");
    assert_eq!(c.kubectl(&["logs", "talker", "-c", "crashy", "--previous"]).expect_ok(), "run-1\n");
    c.kubectl(&["logs", "talker", "-c", "static", "--previous"]).expect_err("previous terminated container");
}

#[test]
fn exec_with_a_tty_cp_and_port_forward() {
    let c = Cluster::start_with_node("wl-streams", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo forwarded-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#,
    );
    c.wait_pod_ready("box", 60);
    // exec -it under a pseudo-terminal (script gives kubectl one): the process sees a tty.
    let kubectl = format!(
        "kubectl --kubeconfig {} --cache-dir {} exec -it box -- sh -c 'tty; echo TERM=$TERM'",
        c.kubeconfig().display(),
        c.dir.join("kubectl-cache").display()
    );
    let mut script = Command::new("script")
        .args(["-qec", &kubectl, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Held open until kubectl is done: script turns an end of its input into a byte typed at
    // the terminal, which the container's tty would echo.
    let stdin = script.stdin.take();
    let mut text = String::new();
    script.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    let status = script.wait().unwrap();
    drop(stdin);
    assert!(status.success(), "exec -it failed: {text}");
    assert!(text.starts_with("/dev/pts/"), "no tty in exec -it: {text:?}");
    assert!(text.contains("TERM=xterm"), "a tty exec gets TERM=xterm, as with containerd: {text:?}");
    // Without -t there is none.
    let r = c.kubectl(&["exec", "-i", "box", "--", "tty"]);
    assert!(r.stdout.contains("not a tty"), "{}", r.stdout);
    // cp in and out is byte-identical (binary content, 300 KiB).
    let mut data = Vec::with_capacity(300 * 1024);
    let mut x: u32 = std::process::id() | 1;
    while data.len() < 300 * 1024 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let src = c.dir.join("in.bin");
    std::fs::write(&src, &data).unwrap();
    c.kubectl(&["cp", src.to_str().unwrap(), "box:/tmp/in.bin"]).expect_ok();
    let local_md5 = Command::new("md5sum").arg(&src).output().unwrap();
    let local_md5 = String::from_utf8_lossy(&local_md5.stdout).split_whitespace().next().unwrap().to_string();
    let remote = c.kubectl(&["exec", "box", "--", "md5sum", "/tmp/in.bin"]).expect_ok();
    assert_eq!(remote.split_whitespace().next(), Some(local_md5.as_str()));
    let back = c.dir.join("out.bin");
    c.kubectl(&["cp", "box:/tmp/in.bin", back.to_str().unwrap()]).expect_ok();
    assert!(std::fs::read(&back).unwrap() == data, "the copied-out file differs");
    // port-forward to the pod's httpd, several connections in a row.
    let local = common::free_port();
    let out = c.dir.join("pf.out");
    let _pf = kubectl_logged(&c, &["port-forward", "pod/box", &format!("{local}:8080")], &out);
    eventually(20, || std::fs::read_to_string(&out).unwrap_or_default().contains("Forwarding from").then_some(()));
    for _ in 0..3 {
        // wget reads by Content-Length, as curl and browsers do (see the test below for
        // responses that end with the connection).
        let out = Command::new("timeout")
            .args(["10", "busybox", "wget", "-qO-", &format!("http://127.0.0.1:{local}/index.html")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET through port-forward: {}\nkubectl port-forward said: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(c.dir.join("pf.out")).unwrap_or_default()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "forwarded-ok\n");
    }
}

/// A response that ends with the connection (HTTP/1.0 here; many protocols close to finish)
/// must end the local connection too: upstream's runtimes end both directions at most 1 s
/// after the pod's side closed.
#[test]
fn port_forward_ends_the_local_connection_when_the_pod_closes_it() {
    let c = Cluster::start_with_node("wl-pf-close", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: closer}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo bye > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#,
    );
    c.wait_pod_ready("closer", 60);
    let local = common::free_port();
    let out = c.dir.join("pf.out");
    let _pf = kubectl_logged(&c, &["port-forward", "pod/closer", &format!("{local}:8080")], &out);
    eventually(20, || std::fs::read_to_string(&out).unwrap_or_default().contains("Forwarding from").then_some(()));
    let t0 = Instant::now();
    let body = http_get(&format!("127.0.0.1:{local}"), "/index.html").expect("the connection ends after the response");
    assert_eq!(body, "bye\n");
    assert!(t0.elapsed() < Duration::from_secs(3), "the connection ended only after {:?}", t0.elapsed());
}

#[test]
fn host_ports_and_host_network() {
    let c = Cluster::start_with_node("wl-hostnet", &[]);
    let names = c.node.clone().unwrap();
    let (host_port, net_port) = (common::free_port(), common::free_port());
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hp}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hostport-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hn}}
spec:
  terminationGracePeriodSeconds: 1
  hostNetwork: true
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo host-network-ok > /www/index.html && exec httpd -f -p {net_port} -h /www"]
"#
    ));
    let node = c.get_json(&["node", &names.node_name]);
    let node_ip = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("an InternalIP")
        .to_string();
    // hostPort: the node's address and loopback reach the pod's port.
    c.wait_pod_ready("hp", 60);
    for addr in [format!("{node_ip}:{host_port}"), format!("127.0.0.1:{host_port}")] {
        let body = eventually(20, || http_get(&addr, "/").ok());
        assert_eq!(body, "hostport-ok\n", "via {addr}");
    }
    // hostNetwork: the pod is in the host's network namespace, with the node's address.
    let p = c.wait_pod_ready("hn", 60);
    assert_eq!(p["status"]["podIP"], node_ip.as_str(), "{p}");
    assert_eq!(p["status"]["hostIP"], node_ip.as_str());
    let body = eventually(20, || http_get(&format!("127.0.0.1:{net_port}"), "/").ok());
    assert_eq!(body, "host-network-ok\n");
    let devs = c.kubectl(&["exec", "hn", "--", "cat", "/proc/net/dev"]).expect_ok();
    assert!(devs.contains(&format!("{}:", names.bridge)), "the host's interfaces are visible: {devs}");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(c.kubectl(&["exec", "hn", "--", "hostname"]).expect_ok().trim(), host_name.trim());
    // Deleting the pod removes its port mapping.
    c.kubectl(&["delete", "pod", "hp"]).expect_ok();
    let rule = format!("--dport {host_port} ");
    eventually(30, || {
        let nat = Command::new("iptables-save").args(["-t", "nat"]).output().unwrap();
        (!String::from_utf8_lossy(&nat.stdout).contains(&rule)).then_some(())
    });
    assert!(http_get(&format!("127.0.0.1:{host_port}"), "/").is_err());
}

#[test]
fn image_pull_errors_back_off_and_the_node_reports_its_machine() {
    let c = Cluster::start_with_node("wl-nodestatus", &[]);
    let names = c.node.clone().unwrap();
    let closed = common::free_port();
    let image = format!("127.0.0.1:{closed}/nope:1");
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: nope}}
spec:
  containers:
  - {{name: main, image: "{image}", imagePullPolicy: IfNotPresent}}
"#
    ));
    // ErrImagePull first, then ImagePullBackOff, as kubectl shows them.
    let mut seen = vec![];
    eventually(60, || {
        let reason = container_status(&c.pod("nope"), "main")["state"]["waiting"]["reason"].as_str().map(String::from);
        if let Some(r) = reason {
            if seen.last() != Some(&r) {
                seen.push(r.clone());
            }
        }
        (seen.last().map(String::as_str) == Some("ImagePullBackOff")).then_some(())
    });
    assert!(seen.iter().any(|r| r == "ErrImagePull"), "{seen:?}");
    assert_eq!(status_column(&c, "nope"), "ImagePullBackOff");
    assert_event(&c, "nope", "Failed", &format!("Failed to pull image \"{image}\""));
    assert_event(&c, "nope", "BackOff", &format!("Back-off pulling image \"{image}\""));
    let p = c.pod("nope");
    assert_eq!(p["status"]["phase"], "Pending", "{p}");

    // The node's status describes this machine.
    let n = c.get_json(&["node", &names.node_name]);
    let st = &n["status"];
    let nproc = String::from_utf8(Command::new("nproc").output().unwrap().stdout).unwrap();
    assert_eq!(st["capacity"]["cpu"], nproc.trim(), "{st}");
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        .unwrap();
    assert_eq!(st["capacity"]["memory"], format!("{mem_kib}Ki"), "{st}");
    assert_eq!(st["capacity"]["pods"], "110");
    for k in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(st["allocatable"][k].is_string(), "allocatable lacks {k}: {st}");
    }
    let info = &st["nodeInfo"];
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(info["kernelVersion"], read("/proc/sys/kernel/osrelease"));
    assert_eq!(info["bootID"], read("/proc/sys/kernel/random/boot_id"));
    assert_eq!(info["operatingSystem"], "linux");
    assert_eq!(info["architecture"], if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH });
    let pretty = read("/etc/os-release");
    let pretty = pretty.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).unwrap().trim_matches('"');
    assert_eq!(info["osImage"], pretty);
    assert!(info["containerRuntimeVersion"].as_str().unwrap().starts_with("kubus://"));
    assert!(info["kubeletVersion"].as_str().unwrap().starts_with("v1.32"));
    let addresses = st["addresses"].as_array().unwrap();
    let internal = addresses.iter().find(|a| a["type"] == "InternalIP").expect("InternalIP");
    assert!(internal["address"].as_str().unwrap().parse::<std::net::IpAddr>().is_ok());
    assert!(addresses.iter().any(|a| a["type"] == "Hostname"));
    let busybox = st["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["names"].as_array().unwrap().iter().any(|n| n == "docker.io/library/busybox:latest"))
        .unwrap_or_else(|| panic!("status.images lists busybox: {st}"));
    assert!(busybox["sizeBytes"].as_u64().unwrap() > 500_000);
    assert_eq!(st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["status"], "True");
    let describe = c.kubectl(&["describe", "node", &names.node_name]).expect_ok();
    for needle in [
        "Capacity:",
        "Allocatable:",
        "System Info:",
        &format!("Kernel Version:             {}", read("/proc/sys/kernel/osrelease")),
        "Non-terminated Pods:",
        "nope",
        "PodCIDR:",
        "KubeletReady",
    ] {
        assert!(describe.contains(needle), "describe node lacks {needle:?}:\n{describe}");
    }
    let wide = c.kubectl(&["get", "node", &names.node_name, "-o", "wide"]).expect_ok();
    assert!(wide.contains(internal["address"].as_str().unwrap()) && wide.contains("kubus://"), "{wide}");
}

/// Runs kubectl with `input` on its stdin (kept open) for `secs`, then stops it; its stdout.
fn kubectl_for(c: &Cluster, args: &[&str], input: &str, secs: u64) -> String {
    let out = c.dir.join(format!("kubectl-{}.out", args.join("_").replace('/', "-")));
    let mut child = Background(
        Command::new("kubectl")
            .env("KUBECONFIG", c.kubeconfig())
            .arg(format!("--cache-dir={}", c.dir.join("kubectl-cache").display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    drop(child);
    drop(stdin);
    std::fs::read_to_string(&out).unwrap_or_default()
}

#[test]
fn kubectl_run_and_attach_carry_stdin_and_output() {
    let c = Cluster::start_with_node("wl-attach", &[]);
    // kubectl run -i --rm: stdin reaches the container, its output comes back, and the pod is
    // removed after it ends (stdinOnce: the end of kubectl's input is the end of the process's).
    let r = c.kubectl_stdin(
        &[
            "run",
            "-i",
            "--rm",
            "--restart=Never",
            "att",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "read line; echo got:$line; cat | wc -l",
        ],
        "hello\nmore\nlines\n",
    );
    assert!(r.ok, "kubectl run -i failed: {} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("got:hello"), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.trim() == "2"), "the rest of the input, then end-of-file: {}", r.stdout);
    eventually(60, || (!c.kubectl(&["get", "pod", "att"]).ok).then_some(()));
    // A command that ends at once (the usual `kubectl run -i --rm ... -- nslookup web`): its
    // output arrives whether the attach caught it running or not.
    let r = c.kubectl(&["run", "-i", "--rm", "--restart=Never", "quick", "--image=busybox", "--", "echo", "quick-out"]);
    assert!(r.ok && r.stdout.contains("quick-out"), "{} {}", r.stdout, r.stderr);
    // -it under a terminal (script gives kubectl one): the container's init has a tty.
    let kubectl = format!(
        "kubectl --kubeconfig {} --cache-dir {} run -it --rm --restart=Never term --image=busybox -- sh -c 'sleep 2; tty'",
        c.kubeconfig().display(),
        c.dir.join("kubectl-cache").display()
    );
    let out = Command::new("script").args(["-qec", &kubectl, "/dev/null"]).stdin(Stdio::piped()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("/dev/pts/"), "run -it: {text}");

    // kubectl attach: a running container's output from then on.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, stdin: true, command: ["sh", "-c", "while read l; do echo echo:$l; done; echo stdin-closed"]}
"#,
    );
    c.wait_pod_ready("ticker", 60);
    c.wait_pod_ready("echo", 60);
    let ticks = kubectl_for(&c, &["attach", "ticker"], "", 2);
    assert!(ticks.lines().filter(|l| l.starts_with("tick ")).count() >= 3, "{ticks:?}");
    // Without stdinOnce the container's stdin outlives each attach: a second client is heard.
    let first = kubectl_for(&c, &["attach", "-i", "echo"], "one\n", 2);
    assert!(first.contains("echo:one"), "{first:?}");
    let second = kubectl_for(&c, &["attach", "-i", "echo"], "two\n", 2);
    assert!(second.contains("echo:two") && !second.contains("stdin-closed"), "{second:?}");
    // Both containers kept running through the detaches.
    for pod in ["ticker", "echo"] {
        let p = c.pod(pod);
        assert!(running(&p, "main") && restarts(&p, "main") == 0, "{pod}: {}", p["status"]);
    }
}
