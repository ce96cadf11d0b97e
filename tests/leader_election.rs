//! Two control planes on one NATS: one scheduler and one controller manager act at a time,
//! and killing the leader hands over within the lease duration.

mod common;
use common::{eventually, free_port, Cluster};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Nats(Child, std::path::PathBuf);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

struct Nodes(Child);

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn holder(c: &Cluster, lease: &str) -> String {
    c.get_json(&["lease", "-n", "kube-system", lease])["spec"]["holderIdentity"].as_str().unwrap_or("").to_string()
}

#[test]
fn leader_failover_within_the_lease_duration() {
    let dir = std::env::temp_dir().join(format!("kubus-e2e-nats-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let nats = Nats(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed"),
        dir,
    );
    let url = format!("nats://127.0.0.1:{port}");
    let flags = [
        "--nats",
        url.as_str(),
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=400ms",
    ];
    let a = Cluster::start_with("leader-a", &flags);
    let b = Cluster::start_with("leader-b", &flags);
    // One cluster, one CA: the second control plane took the first one's, so one admin
    // kubeconfig reaches either API server with the CA checked.
    let ca = |c: &Cluster| std::fs::read_to_string(c.dir.join("pki/ca.crt")).unwrap();
    assert_eq!(ca(&a), ca(&b));
    let server_b = format!("--server=https://127.0.0.1:{}", b.port);
    a.kubectl(&[&server_b, "get", "namespace", "default"]).expect_ok();
    // Nodes in a process of their own: they outlive whichever control plane dies.
    let _nodes = Nodes(
        Command::new(env!("CARGO_BIN_EXE_kubus"))
            .args(["sim-nodes", "--count", "2", "--cluster", "e2e", "--renew-seconds", "1", "--nats", &url])
            .arg("--kubeconfig")
            .arg(a.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let leader = eventually(30, || {
        let (s, m) = (holder(&a, "kube-scheduler"), holder(&a, "kube-controller-manager"));
        (!s.is_empty() && !m.is_empty()).then_some((s, m))
    });
    // Both API servers serve; whichever controllers lead make the deployment run.
    b.kubectl(&["create", "deploy", "web", "--image=busybox", "--replicas=3"]).expect_ok();
    a.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    // Kill the leader's process; the other takes over.
    let a_leads = leader.0.contains(&format!("_{}_", pid_of_kubus(&a)));
    let (mut dead, mut survivor) = if a_leads { (a, b) } else { (b, a) };
    dead.kill();
    let killed_at = Instant::now();
    let new_leader = eventually(30, || {
        let (s, m) = (holder(&survivor, "kube-scheduler"), holder(&survivor, "kube-controller-manager"));
        (s != leader.0 && m != leader.1 && !s.is_empty()).then_some(s)
    });
    let handover = killed_at.elapsed();
    println!("leadership moved to {new_leader} after {handover:?}");
    assert!(handover < Duration::from_secs(3 + 5), "handover took {handover:?}");
    // The new leaders work: a scale-up is scheduled and run.
    survivor.kubectl(&["scale", "deploy/web", "--replicas=5"]).expect_ok();
    survivor.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    survivor.stop();
    drop(nats);
}

fn pid_of_kubus(c: &Cluster) -> u32 {
    c.pid().expect("kubus runs")
}
