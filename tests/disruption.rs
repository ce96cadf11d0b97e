//! PodDisruptionBudgets and the eviction API with kubectl on simulated nodes (issue #12):
//! budgets' status, 429 when a disruption is not allowed, and `kubectl drain` evicting safely.

mod common;
use common::{eventually, Cluster};
use serde_json::Value;

fn web(c: &Cluster, name: &str, replicas: u32) {
    let d = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: 'busybox:1'}}]\n");
    c.kubectl_stdin(&["apply", "-f", "-"], &d).expect_ok();
    c.kubectl(&["rollout", "status", &format!("deploy/{name}"), "--timeout=60s"]).expect_ok();
}

fn pods(c: &Cluster, app: &str) -> Vec<Value> {
    c.get_json(&["pods", "-l", &format!("app={app}")])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn evict(c: &Cluster, pod: &str) -> common::Run {
    let body =
        format!("{{\"apiVersion\": \"policy/v1\", \"kind\": \"Eviction\", \"metadata\": {{\"name\": \"{pod}\"}}}}");
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    let file = c.dir.join(format!("eviction-{pod}.json"));
    std::fs::write(&file, body).unwrap();
    c.kubectl(&["create", "--raw", &path, "-f", file.to_str().unwrap()])
}

#[test]
fn evictions_respect_budgets_and_drain_moves_pods_safely() {
    let c = Cluster::start_with("pdb", &["--sim-nodes", "3"]);
    web(&c, "web", 3);
    web(&c, "tight", 2);
    // kubectl create pdb sends protobuf.
    c.kubectl(&["create", "pdb", "web", "--selector=app=web", "--min-available=2"]).expect_ok();
    c.kubectl(&["create", "pdb", "tight", "--selector=app=tight", "--max-unavailable=0"]).expect_ok();
    eventually(30, || (c.get_json(&["pdb", "web"])["status"]["disruptionsAllowed"] == 1).then_some(()));
    let status = c.get_json(&["pdb", "tight"])["status"].clone();
    assert_eq!((status["expectedPods"].as_i64(), status["desiredHealthy"].as_i64()), (Some(2), Some(2)), "{status}");
    let table = c.kubectl(&["get", "pdb"]).expect_ok();
    assert!(
        table.contains("MIN AVAILABLE")
            && table.lines().any(|l| l.starts_with("web ") && l.contains(" 2 ") && l.contains("N/A")),
        "{table}"
    );

    // A budget with no room: 429, with the budget's reason.
    let victim = pods(&c, "tight")[0]["metadata"]["name"].as_str().unwrap().to_string();
    let refused = evict(&c, &victim);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        refused.stderr
    );
    assert!(pods(&c, "tight").iter().any(|p| p["metadata"]["name"] == victim.as_str()), "the pod stays");

    // Room for one: the pod goes, and the budget records it.
    let first = pods(&c, "web")[0]["metadata"]["name"].as_str().unwrap().to_string();
    evict(&c, &first).expect_ok();
    // (Its budget recorded it in disruptedPods in the same write; on simulated nodes the
    // replacement may already be Ready and the entry gone by the time anyone looks.)
    eventually(30, || (!pods(&c, "web").iter().any(|p| p["metadata"]["name"] == first.as_str())).then_some(()));

    // kubectl drain: cordons the node and evicts what runs there, waiting for the budget.
    c.kubectl(&["delete", "pdb", "tight"]).expect_ok();
    eventually(60, || {
        (pods(&c, "web").len() == 3 && c.get_json(&["pdb", "web"])["status"]["disruptionsAllowed"] == 1).then_some(())
    });
    let out = c.kubectl(&["drain", "sim-0", "--ignore-daemonsets", "--timeout=90s", "-v=6"]);
    assert!(out.ok && out.stdout.contains("drained"), "{}\n{}", out.stdout, out.stderr);
    // Through the eviction API (which budgets govern), not plain deletes.
    assert!(out.stderr.contains("/eviction"), "kubectl drain did not evict:\n{}", out.stderr);
    let node = c.get_json(&["node", "sim-0"]);
    assert_eq!(node["spec"]["unschedulable"], true);
    eventually(60, || {
        let all: Vec<Value> = pods(&c, "web").into_iter().chain(pods(&c, "tight")).collect();
        let on_drained = all.iter().filter(|p| p["spec"]["nodeName"] == "sim-0").count();
        (on_drained == 0 && pods(&c, "web").len() == 3).then_some(())
    });
    c.kubectl(&["uncordon", "sim-0"]).expect_ok();
}

#[test]
fn bad_budgets_are_refused() {
    let c = Cluster::start("pdb-invalid");
    let both = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: b}\nspec:\n  minAvailable: 1\n  maxUnavailable: 1\n  selector: {matchLabels: {app: x}}\n";
    c.kubectl_stdin(&["create", "-f", "-"], both).expect_err("minAvailable and maxUnavailable cannot be both set");
    let pct = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: b}\nspec:\n  minAvailable: 150%\n  selector: {matchLabels: {app: x}}\n";
    c.kubectl_stdin(&["create", "-f", "-"], pct)
        .expect_err("spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%");
}
