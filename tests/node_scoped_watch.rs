//! A `kubus node` agent holds only its own pods (issue #21): its pod informer lists and watches
//! through the API server with `fieldSelector=spec.nodeName=<node>`, as upstream's kubelet. With
//! a few hundred pods on simulated nodes, the agent's `kubus_informer_objects{resource="pods"}`
//! counts only the pod bound to it, which runs and is deleted as usual with kubectl.

mod common;

use common::{eventually, free_port, host_get, Cluster, NodeAgent, NodeNames};

const SIM_PODS: usize = 300;

/// The value of `kubus_informer_objects{resource="pods"}` in a metrics exposition.
fn informer_pods(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubus_informer_objects{resource=\"pods\"} "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_node_agent_holds_only_its_own_pods() {
    let c = Cluster::start_with("node-scoped-watch", &["--sim-nodes", "5"]);
    let names = NodeNames::new();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let agent = NodeAgent::start_with(&c, names.clone(), &["--metrics-bind-address", &metrics_addr]);
    let node = names.node_name.clone();
    agent.wait_ready(&c, 60);
    let agent_pods = || host_get(&format!("http://{metrics_addr}/metrics")).as_deref().and_then(informer_pods);

    // A few hundred pods on the simulated nodes, none on the real one.
    c.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: crowd}}
spec:
  replicas: {SIM_PODS}
  selector: {{matchLabels: {{app: crowd}}}}
  template:
    metadata: {{labels: {{app: crowd}}}}
    spec:
      nodeSelector: {{type: kubus-sim}}
      containers:
      - {{name: main, image: busybox}}
"#
    ));
    eventually(180, || {
        let running =
            c.kubectl(&["get", "pods", "-l", "app=crowd", "--field-selector=status.phase=Running", "-o", "name"]);
        (running.stdout.lines().count() == SIM_PODS).then_some(())
    });
    // The control plane's informer holds them all; the agent's none of them.
    let (_, cp_metrics) = c.try_http("GET", "/metrics", None, None).expect("control plane metrics");
    let cp_pods = informer_pods(&cp_metrics).expect("the control plane exports its pod informer's size");
    assert!(cp_pods >= SIM_PODS as u64, "control plane holds {cp_pods} pods");
    eventually(30, || (agent_pods() == Some(0)).then_some(()));
    eprintln!("pods held: control plane {cp_pods}, node agent {:?}", agent_pods());

    // A pod bound to the real node runs, is counted, and is deleted normally.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: own}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: busybox, command: ["sleep", "3600"]}}
"#
    ));
    c.wait_pod_ready("own", 60);
    assert_eq!(c.kubectl(&["exec", "own", "--", "echo", "ok"]).expect_ok().trim(), "ok");
    eventually(10, || (agent_pods() == Some(1)).then_some(()));
    eprintln!("pods held with its own pod running: node agent {:?}", agent_pods());
    c.kubectl(&["delete", "pod", "own", "--grace-period=1"]).expect_ok();
    eventually(60, || c.kubectl(&["get", "pod", "own"]).stderr.contains("NotFound").then_some(()));
    eventually(10, || (agent_pods() == Some(0)).then_some(()));
    // The agent stopped the pod's container: no process of it is left on the host.
    eventually(30, || {
        let left = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|cmd| cmd == b"sleep\x003600\x00")
                && std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|cg| cg.contains(&names.cgroup_root))
        });
        (!left).then_some(())
    });
    drop(agent);
}
