//! End-to-end on a real node: `kubus up` with its node agent running pods as real containers
//! (libcontainer shims, CNI bridge networking, cgroups), driven by the real kubectl. Needs
//! root, like the node agent itself.

mod common;

use common::{container_status, eventually, Cluster, NodeAgent, NodeNames};
use serde_json::Value;
use std::time::Duration;

/// Nothing the node made for a pod is left once it is deleted: no shim, no cgroup, no
/// network namespace or overlay mount, no IP reservation.
#[track_caller]
fn assert_pod_cleaned(c: &Cluster, uid: &str) {
    let names = c.node.as_ref().expect("node cluster");
    eventually(30, || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounted = mounts.lines().any(|l| l.contains(uid));
        let cg = std::path::Path::new("/sys/fs/cgroup/memory").join(names.cgroup_root.trim_start_matches('/'));
        let cgroup_left = walk_contains(&cg, uid);
        let state_left = walk_contains(&c.dir.join("node"), uid);
        let shim_left = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).map(|b| String::from_utf8_lossy(&b).contains(uid)).unwrap_or(false)
        });
        (!mounted && !cgroup_left && !state_left && !shim_left).then_some(())
    });
}

/// The host pid of a container's init, from its cgroup (unique to this test's node).
fn container_pid(c: &Cluster, id: &str) -> String {
    let names = c.node.as_ref().expect("node cluster");
    let root = std::path::Path::new("/sys/fs/cgroup/pids").join(names.cgroup_root.trim_start_matches('/'));
    fn find(dir: &std::path::Path, id: &str) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            if e.file_type().ok()?.is_dir() {
                if e.file_name().to_string_lossy() == id {
                    return Some(e.path());
                }
                if let Some(p) = find(&e.path(), id) {
                    return Some(p);
                }
            }
        }
        None
    }
    let dir = find(&root, id).expect("the container's cgroup");
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    procs.lines().next().expect("a process in the container").to_string()
}

fn walk_contains(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        e.file_name().to_string_lossy().contains(needle)
            || (e.file_type().is_ok_and(|t| t.is_dir()) && walk_contains(&e.path(), needle))
    })
}

#[test]
fn httpd_deployment_becomes_ready_with_ips_and_serves_exec_and_logs() {
    let c = Cluster::start_with_node("node-httpd", &[]);
    c.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox
        command: ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && echo serving && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
"#,
    );
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]).expect_ok();
    let pods = c.get_json(&["pods", "-l", "app=web"]);
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let mut ips = vec![];
    for p in items {
        assert_eq!(p["status"]["phase"], "Running", "{p}");
        let ip = p["status"]["podIP"].as_str().expect("pod IP").to_string();
        assert!(ip.starts_with("10."), "pod IP {ip} comes from the node's pod CIDR");
        assert_eq!(container_status(p, "httpd")["ready"], true);
        ips.push((p["metadata"]["name"].as_str().unwrap().to_string(), ip));
    }
    assert_ne!(ips[0].1, ips[1].1);
    // The pod IP answers from the host (through the bridge).
    for (name, ip) in &ips {
        let body = eventually(20, || {
            let out = std::process::Command::new("busybox")
                .args(["wget", "-qO-", &format!("http://{ip}:8080/")])
                .output()
                .ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        assert_eq!(body.trim(), format!("hello-from-{name}"));
    }
    // exec: output and exit codes, stdin.
    let name = &ips[0].0;
    let out = c.kubectl(&["exec", name, "--", "cat", "/www/index.html"]).expect_ok();
    assert_eq!(out.trim(), format!("hello-from-{name}"));
    let r = c.kubectl(&["exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert!(!r.ok);
    assert_eq!(r.stdout.trim(), "out");
    assert!(r.stderr.contains("err") && r.stderr.contains("exit code 3"), "{}", r.stderr);
    let out = c.kubectl_stdin(&["exec", "-i", name, "--", "sh", "-c", "tr a-z A-Z"], "piped input\n").expect_ok();
    assert_eq!(out.trim(), "PIPED INPUT");
    // The other pod is reachable from inside this one (same node, over the bridge).
    let out = c.kubectl(&["exec", name, "--", "wget", "-qO-", &format!("http://{}:8080/", ips[1].1)]).expect_ok();
    assert_eq!(out.trim(), format!("hello-from-{}", ips[1].0));
    // logs
    let logs = c.kubectl(&["logs", name]).expect_ok();
    assert!(logs.contains("serving"), "{logs}");
    let logs = c.kubectl(&["logs", name, "--timestamps"]).expect_ok();
    assert!(logs.starts_with("20") && logs.contains("Z serving"), "{logs}");
    // Events as kubectl describe shows them.
    let describe = c.kubectl(&["describe", "pod", name]).expect_ok();
    for needle in ["Scheduled", "Pulled", "Created", "Started", "Ready:", "True"] {
        assert!(describe.contains(needle), "describe lacks {needle}:\n{describe}");
    }
    // Deleting the deployment removes every trace of its pods.
    let uids: Vec<String> = items.iter().map(|p| p["metadata"]["uid"].as_str().unwrap().to_string()).collect();
    c.kubectl(&["delete", "deployment", "web", "--wait=true"]).expect_ok();
    eventually(60, || c.get_json(&["pods", "-l", "app=web"])["items"].as_array().unwrap().is_empty().then_some(()));
    for uid in &uids {
        assert_pod_cleaned(&c, uid);
    }
}

#[test]
fn restarts_crash_loops_and_oom_kills() {
    let c = Cluster::start_with_node("node-restart", &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo about to fail; exit 2"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    resources: {limits: {memory: 16Mi}}
"#,
    );
    let p = c.wait_pod_ready("sleeper", 60);
    assert_eq!(container_status(&p, "main")["restartCount"], 0);
    // Kill the container's process from the host: the node restarts it and counts it.
    let id = container_status(&p, "main")["containerID"].as_str().unwrap().trim_start_matches("kubus://").to_string();
    let host_pid = container_pid(&c, &id);
    std::process::Command::new("kill").args(["-9", &host_pid]).status().unwrap();
    let p = eventually(60, || {
        let p = c.pod("sleeper");
        let s = container_status(&p, "main");
        (s["restartCount"] == 1 && s["state"]["running"].is_object()).then_some(p)
    });
    let last = &container_status(&p, "main")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{p}");
    // A container that keeps failing backs off.
    let p = eventually(90, || {
        let p = c.pod("crasher");
        (container_status(&p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(p)
    });
    let s = container_status(&p, "main");
    assert!(s["restartCount"].as_u64().unwrap() >= 1);
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 2);
    let previous = c.kubectl(&["logs", "crasher", "--previous"]).expect_ok();
    assert!(previous.contains("about to fail"), "{previous}");
    let get = c.kubectl(&["get", "pod", "crasher"]).expect_ok();
    assert!(get.contains("CrashLoopBackOff") || get.contains("Error"), "{get}");
    // The memory limit is enforced by the kernel.
    let p = eventually(90, || {
        let p = c.pod("hog");
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let t = &container_status(&p, "main")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{p}");
    assert_eq!(t["exitCode"], 137);
}

#[test]
fn config_volumes_env_and_shared_pod_namespaces() {
    let c = Cluster::start_with_node("node-config", &[]);
    c.kubectl(&["create", "configmap", "settings", "--from-literal=greeting=hello", "--from-literal=color=blue"])
        .expect_ok();
    c.kubectl(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]).expect_ok();
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: duo, labels: {app: duo}}
spec:
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: settings, configMap: {name: settings}}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: sa
    projected:
      sources:
      - serviceAccountToken: {path: token, audience: my-api, expirationSeconds: 3600}
      - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
  containers:
  - name: server
    image: busybox
    command: ["sh", "-c", "echo from-server > /shared/note; exec httpd -f -p 9000 -h /shared"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: client
    image: busybox
    command: ["sleep", "3600"]
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    - name: MY_POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - {name: GREETING_TWICE, value: "$(MY_POD)-$(MY_POD)"}
    envFrom: [{configMapRef: {name: settings}, prefix: CFG_}]
    volumeMounts:
    - {name: shared, mountPath: /data}
    - {name: settings, mountPath: /etc/settings}
    - {name: info, mountPath: /etc/info}
    - {name: sa, mountPath: /var/run/secrets/tokens}
"#,
    );
    c.wait_pod_ready("duo", 60);
    let exec = |cmd: &str| c.kubectl(&["exec", "duo", "-c", "client", "--", "sh", "-c", cmd]).expect_ok();
    assert_eq!(exec("echo $PASSWORD").trim(), "s3cret");
    assert_eq!(exec("echo $CFG_greeting $CFG_color").trim(), "hello blue");
    assert_eq!(exec("echo $GREETING_TWICE").trim(), "duo-duo");
    assert_eq!(exec("cat /etc/settings/greeting").trim(), "hello");
    assert!(exec("cat /etc/info/labels").contains("app=\"duo\""));
    // A projected service account token bound to this pod (the TokenRequest API).
    let token = exec("cat /var/run/secrets/tokens/token");
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["aud"][0], "my-api");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "duo");
    assert_eq!(exec("cat /var/run/secrets/tokens/namespace").trim(), "default");
    // One emptyDir, two containers; one network namespace: localhost reaches the other container.
    assert_eq!(exec("cat /data/note").trim(), "from-server");
    assert_eq!(exec("wget -qO- http://127.0.0.1:9000/note").trim(), "from-server");
    assert_eq!(exec("hostname").trim(), "duo");
    assert!(exec("cat /etc/hosts").contains("duo"));
    // ConfigMap changes reach the volume (upstream: within the sync period).
    c.kubectl(&["patch", "configmap", "settings", "-p", r#"{"data":{"greeting":"updated"}}"#]).expect_ok();
    eventually(90, || (exec("cat /etc/settings/greeting").trim() == "updated").then_some(()));
    // securityContext.seccompProfile RuntimeDefault: the container runs under a filter.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: confined}
spec:
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
"#,
    );
    c.wait_pod_ready("confined", 60);
    let status = c.kubectl(&["exec", "confined", "--", "cat", "/proc/1/status", "/proc/self/status"]).expect_ok();
    let filtered = status.lines().filter(|l| l.starts_with("Seccomp:") && l.ends_with('2')).count();
    assert_eq!(filtered, 2, "the container and an exec in it are filtered: {status}");
    let status = exec("cat /proc/self/status");
    assert!(status.lines().any(|l| l.starts_with("Seccomp:") && l.ends_with('0')), "unconfined by default: {status}");
    // tty: true gives the container's process a terminal; what it prints reaches the log.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: withtty}
spec:
  containers:
  - {name: main, image: busybox, tty: true, command: ["sh", "-c", "[ -t 1 ] && echo on-a-tty; sleep 3600"]}
"#,
    );
    eventually(60, || c.kubectl(&["logs", "withtty"]).stdout.contains("on-a-tty").then_some(()));
    // A missing secret keeps the container waiting with CreateContainerConfigError.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: needs-secret}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    env: [{name: X, valueFrom: {secretKeyRef: {name: nope, key: x}}}]
"#,
    );
    let p = eventually(60, || {
        let p = c.pod("needs-secret");
        (container_status(&p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError").then_some(p)
    });
    assert!(container_status(&p, "main")["state"]["waiting"]["message"].as_str().unwrap().contains("nope"));
    let uid = c.pod("duo")["metadata"]["uid"].as_str().unwrap().to_string();
    c.kubectl(&["delete", "pod", "duo", "--grace-period=1"]).expect_ok();
    assert_pod_cleaned(&c, &uid);
}

#[test]
fn pods_survive_an_agent_restart() {
    let mut cp = Cluster::start_with("node-agent-restart", &[]);
    let names = NodeNames::new();
    let mut agent = NodeAgent::start(&cp, names.clone());
    let node = names.node_name.clone();
    eventually(60, || {
        let n = cp.kubectl(&["get", "node", &node, "-o", "json"]);
        let n: Value = serde_json::from_str(&n.stdout).ok()?;
        n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    });
    cp.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: steady}}
spec:
  nodeName: {node}
  containers:
  - {{name: main, image: busybox, command: ["sh", "-c", "while true; do date; sleep 1; done"]}}
"#
    ));
    let before = cp.wait_pod_ready("steady", 60);
    let started = container_status(&before, "main")["state"]["running"]["startedAt"].clone();
    let id = container_status(&before, "main")["containerID"].clone();
    let find_pid = || {
        std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (cmd == b"sh\x00-c\x00while true; do date; sleep 1; done\x00")
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
    };
    let pid = find_pid().expect("the container's process runs on the host");
    agent.kill();
    std::thread::sleep(Duration::from_secs(2));
    // The container runs on without its agent.
    assert_eq!(find_pid().as_ref(), Some(&pid), "the container outlives its agent");
    agent.restart();
    std::thread::sleep(Duration::from_secs(5));
    let after = cp.wait_pod_ready("steady", 60);
    let s = container_status(&after, "main");
    assert_eq!(s["restartCount"], 0, "nothing restarted: {}\n{}", after, agent.log());
    assert_eq!(s["state"]["running"]["startedAt"], started);
    assert_eq!(s["containerID"], id);
    assert_eq!(find_pid().as_ref(), Some(&pid), "the same process still runs");
    // And the adopted container is fully served: logs and exec.
    assert!(cp.kubectl(&["logs", "steady", "--tail=1"]).expect_ok().contains("UTC"));
    assert_eq!(cp.kubectl(&["exec", "steady", "--", "echo", "ok"]).expect_ok().trim(), "ok");
    cp.kubectl(&["delete", "pod", "steady", "--grace-period=1"]).expect_ok();
    eventually(60, || cp.kubectl(&["get", "pod", "steady"]).stderr.contains("NotFound").then_some(()));
    drop(agent);
    // The killed agent's kube-proxy table went with `kubus node-reset`.
    let tables = std::process::Command::new("nft").args(["list", "tables"]).output().unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
    assert!(!tables.contains(&format!("kubus-proxy-{}", names.bridge)), "{tables}");
    cp.stop();
}

/// The processes whose command line mentions `needle` (containers' shims name their id).
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The mount points on the host whose path mentions `needle`.
fn mounts_with(needle: &str) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.contains(needle)).map(String::from).collect()
}

#[test]
fn node_reset_takes_the_data_dir_of_kubus_up_and_says_what_it_removed() {
    let mut c = Cluster::start_with_node("node-reset-up", &[]);
    let names = c.node.clone().expect("node cluster");
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: left-behind}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts: [{name: mem, mountPath: /mem}]
  volumes: [{name: mem, emptyDir: {medium: Memory}}]
"#,
    );
    let p = c.wait_pod_ready("left-behind", 60);
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let id = container_status(&p, "main")["containerID"].as_str().unwrap().trim_start_matches("kubus://").to_string();
    // `kubus up` stops; its node's containers run on (to be adopted by the next start).
    c.stop();
    assert!(!processes_with(&id).is_empty(), "the container's shim outlives kubus up");
    let mounted = mounts_with(&uid);
    assert!(mounted.iter().any(|m| m.ends_with("/rootfs")), "{mounted:?}");
    assert!(mounted.iter().any(|m| m.ends_with("/mem")), "{mounted:?}");

    // The same --data-dir as `kubus up`'s, not its node/.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["node-reset", "--data-dir"])
        .arg(&c.dir)
        .args(["--bridge", &names.bridge, "--cgroup-root", &names.cgroup_root])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let node_dir = c.dir.canonicalize().unwrap().join("node");
    assert!(stdout.contains(&format!("(its state is in {})", c.dir.join("node").display())), "{stdout}");
    let line = |prefix: &str| stdout.lines().any(|l| l.starts_with(prefix));
    assert!(line(&format!("removed container {id} of pod default/left-behind (main) and its shim (pid ")), "{stdout}");
    for m in &mounted {
        assert!(line(&format!("unmounted {m}")), "{m} not reported:\n{stdout}");
    }
    assert!(line(&format!("removed pod dir {}", node_dir.join("pods").join(&uid).display())), "{stdout}");
    assert!(line(&format!("removed sandbox {uid}")), "{stdout}");
    assert!(line(&format!("removed bridge {}", names.bridge)), "{stdout}");
    assert!(line(&format!("removed cgroup {}", names.cgroup_root)), "{stdout}");
    // And it is so: no shim, no container process, no mount, no bridge.
    eventually(10, || processes_with(&id).is_empty().then_some(()));
    assert_eq!(mounts_with(&uid), Vec::<String>::new());
    let link = std::process::Command::new("ip").args(["link", "show", &names.bridge]).output().unwrap();
    assert!(!link.status.success(), "the bridge is gone");
}

#[test]
fn node_reset_refuses_a_directory_that_is_not_a_nodes_and_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("kubus-e2e-not-a-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A user's directory that happens to have `pods` and `images` folders.
    let pod_like = dir.join("pods").join("0f8fad5b-d9cb-469f-a165-70867728950e");
    std::fs::create_dir_all(&pod_like).unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("pods/web.yaml"), "kind: Pod\n").unwrap();
    std::fs::write(pod_like.join("notes.txt"), "mine\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["node-reset", "--bridge", "kbnotanode0", "--cgroup-root", "/kubus-not-a-node", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let listing: Vec<String> = walk(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("it is not a node's data directory") && stderr.contains("Nothing was changed"), "{stderr}");
    assert_eq!(
        listing,
        [
            "images",
            "pods",
            "pods/0f8fad5b-d9cb-469f-a165-70867728950e",
            "pods/0f8fad5b-d9cb-469f-a165-70867728950e/notes.txt",
            "pods/web.yaml"
        ]
    );
}

/// Every path under `dir`, relative and sorted.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}
