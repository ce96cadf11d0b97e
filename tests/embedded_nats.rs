//! The embedded NATS is Kubus's own (issue #20): beside a NATS server of the user's on the
//! standard port, `kubus up` runs on a server of its own and writes nothing to the other; a
//! taken port is refused with its holder named; two clusters run side by side; one data dir
//! has one `kubus up`; and a killed embedded server comes back with every watch resuming.

mod common;
use common::{eventually, free_port, unique_dir, Cluster};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A plain nats-server with JetStream, as users run one, stopped and removed at the end.
struct PlainNats {
    child: Child,
    dir: std::path::PathBuf,
}

impl PlainNats {
    fn start(port: u16) -> PlainNats {
        let dir = unique_dir("plain-nats");
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        let plain = PlainNats { child, dir };
        eventually(10, || std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(drop));
        plain
    }
}

impl Drop for PlainNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The JetStream streams of a NATS server.
fn stream_names(url: &str) -> Vec<String> {
    use futures::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = kubus_bus::connect(url, "e2e-test").await.expect("the server answers");
        let js = async_nats::jetstream::new(client);
        js.stream_names().map(|n| n.expect("stream names")).collect().await
    })
}

fn kubus_up(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["up", "--no-node", "--cluster", "e2e", "--data-dir"])
        .arg(dir)
        .args(["--api-port", &free_port().to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("kubus runs")
}

#[test]
fn kubus_runs_its_own_nats_beside_a_users_server_on_4222() {
    assert!(
        std::net::TcpListener::bind("127.0.0.1:4222").is_ok(),
        "this test runs a NATS server of a user's on 127.0.0.1:4222; something else holds that port"
    );
    let plain = PlainNats::start(4222);
    let c = Cluster::start("own-nats");
    c.kubectl(&["create", "configmap", "mine", "--from-literal=a=b"]).expect_ok();
    assert!(c.get_json(&["configmap", "mine"])["data"]["a"] == "b");
    let url = c.nats_url();
    assert!(!url.ends_with(":4222"), "the embedded server took the standard port: {url}");
    // Kubus wrote nothing into the user's JetStream.
    assert_eq!(stream_names("nats://127.0.0.1:4222"), Vec::<String>::new());

    // Told to listen on the user's port, kubus up refuses and names the holder.
    let dir = unique_dir("taken-port");
    let out = kubus_up(&dir, &["--nats-listen", "127.0.0.1:4222"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kubus up started on a taken port:\n{stderr}");
    let holder = format!("pid {}", plain.child.id());
    assert!(
        stderr.contains("127.0.0.1:4222") && stderr.contains(&holder) && stderr.contains("--nats-listen"),
        "{stderr}"
    );
    assert_eq!(stream_names("nats://127.0.0.1:4222"), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_clusters_side_by_side_and_one_kubus_per_data_dir() {
    let a = Cluster::start("side-a");
    let mut b = Cluster::start("side-b");
    assert_ne!(a.nats_url(), b.nats_url());
    a.kubectl(&["create", "configmap", "only-a"]).expect_ok();
    b.kubectl(&["create", "configmap", "only-b"]).expect_ok();
    a.kubectl(&["get", "configmap", "only-a"]).expect_ok();
    b.kubectl(&["get", "configmap", "only-b"]).expect_ok();
    a.kubectl(&["get", "configmap", "only-b"]).expect_err("NotFound");
    b.kubectl(&["get", "configmap", "only-a"]).expect_err("NotFound");
    // A second kubus up on a running cluster's data dir refuses: one writer per store.
    let out = kubus_up(&a.dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second kubus up ran on the same data dir:\n{stderr}");
    assert!(stderr.contains("another kubus is running with data dir"), "{stderr}");
    a.kubectl(&["get", "configmap", "only-a"]).expect_ok();
    // A stopped cluster leaves no URL for `kubus node` and `kubus sim-nodes` to find, and its
    // nats-server was stopped, not restarted.
    b.stop();
    assert!(!b.dir.join("nats.url").exists(), "nats.url outlived kubus up");
    assert!(!b.log().contains("embedded nats-server exited"), "{}", b.log());
}

#[test]
fn a_killed_embedded_nats_is_restarted_and_watches_resume() {
    let c = Cluster::start("nats-kill");
    let out = c.dir.join("watch.out");
    let mut watch = c.kubectl_background(&["get", "configmap", "-w", "-o", "name"], &out);
    c.kubectl(&["create", "configmap", "before"]).expect_ok();
    eventually(20, || std::fs::read_to_string(&out).ok().filter(|s| s.contains("configmap/before")).map(drop));

    let pid = std::fs::read_to_string(c.dir.join("nats-server.pid")).unwrap().trim().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    let killed = Instant::now();
    eventually(30, || c.kubectl(&["create", "configmap", "after-0"]).ok.then_some(()));
    eprintln!("writes succeed again {:.1} s after kill -9 of the embedded nats-server", killed.elapsed().as_secs_f64());
    let new_pid = std::fs::read_to_string(c.dir.join("nats-server.pid")).unwrap().trim().to_string();
    assert_ne!(pid, new_pid, "the server was not restarted");
    for i in 1..5 {
        c.kubectl(&["create", "configmap", &format!("after-{i}")]).expect_ok();
    }
    // The watch opened before the kill sees every change made after it.
    let written = Instant::now();
    eventually(30, || {
        let seen = std::fs::read_to_string(&out).unwrap_or_default();
        (0..5).all(|i| seen.contains(&format!("configmap/after-{i}"))).then_some(())
    });
    eprintln!("the watch opened before saw every change {:.1} s after the writes", written.elapsed().as_secs_f64());
    assert!(c.log().contains("embedded nats-server exited; restarting it"), "{}", c.log());
    let _ = watch.kill();
    let _ = watch.wait();
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn a_second_clusters_node_agent_is_refused_what_the_first_holds() {
    let a = Cluster::start_with_node("claims-a", &[]);
    let first = a.node.clone().expect("a node");
    let second = common::NodeNames::new();
    let up_with_node = |tag: &str, bridge: &str, cluster_cidr: &str| {
        let dir = unique_dir(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let mut flags = second.flags(&dir);
        let at = flags.iter().position(|f| f == "--bridge").unwrap() + 1;
        flags[at] = bridge.to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_kubus"))
            .args(["up", "--cluster", "e2e", "--dns-port", "0", "--data-dir"])
            .arg(&dir)
            .args(["--api-port", &free_port().to_string(), "--cluster-cidr", cluster_cidr])
            .args(["--service-cidr", &second.service_cidr])
            .args(&flags)
            .stdin(Stdio::null())
            .output()
            .expect("kubus runs");
        let _ = std::fs::remove_dir_all(&dir);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The first cluster's bridge.
    let (ok, stderr) = up_with_node("claims-bridge", &first.bridge, &second.cluster_cidr);
    assert!(!ok, "a second node agent took the first one's bridge:\n{stderr}");
    let holder = a.dir.join("node").display().to_string();
    assert!(
        stderr.contains(&format!("bridge {} is already used by the node agent of {holder}", first.bridge))
            && stderr.contains("--bridge"),
        "{stderr}"
    );
    // A pod range overlapping the first cluster's.
    let (ok, stderr) = up_with_node("claims-range", &second.bridge, &first.cluster_cidr);
    assert!(!ok, "a second node agent took an overlapping pod range:\n{stderr}");
    assert!(
        stderr.contains(&format!("overlapping {}", first.cluster_cidr)) && stderr.contains("--cluster-cidr"),
        "{stderr}"
    );
    // `kubus node-reset` of another node refuses to remove what the first one's agent holds:
    // its bridge (with its nft table), or a cgroup root around or inside its own.
    let reset = |bridge: &str, cgroup_root: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_kubus"))
            .args(["node-reset", "--data-dir"])
            .arg(unique_dir("claims-reset"))
            .args(["--bridge", bridge, "--cgroup-root", cgroup_root])
            .output()
            .expect("kubus runs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = reset(&first.bridge, &second.cgroup_root);
    assert!(!ok, "node-reset removed a live agent's bridge:\n{stderr}");
    assert!(stderr.contains(&format!("bridge {} is in use by the node agent of {holder}", first.bridge)), "{stderr}");
    let inside = format!("{}/pods", first.cgroup_root);
    let (ok, stderr) = reset(&second.bridge, &inside);
    assert!(!ok, "node-reset removed a cgroup inside a live agent's:\n{stderr}");
    assert!(stderr.contains(&format!("cgroup root {inside} (inside {})", first.cgroup_root)), "{stderr}");
    // Neither attempt left anything on the host, and the first cluster is untouched.
    assert!(!Command::new("ip").args(["link", "show", &second.bridge]).output().unwrap().status.success());
    assert_eq!(a.node_ready_status(&first.node_name), "True");
}
