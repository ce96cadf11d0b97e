//! Workloads beyond Deployments, driven with kubectl on simulated nodes (issue #11):
//! ReplicationControllers, and the controllers that follow in this file as they land.

mod common;
use common::{eventually, Cluster};
use serde_json::Value;

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Pods not being deleted, by selector.
fn live_pods(c: &Cluster, selector: &str) -> Vec<Value> {
    items(&c.get_json(&["pods", "-l", selector]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[test]
fn replication_controller_scales_up_and_down_and_its_pods_go_with_it() {
    let c = Cluster::start_with("rc", &["--sim-nodes", "2"]);
    // No selector: it defaults to the template's labels, as do the RC's own labels.
    let rc = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: web}\nspec:\n  replicas: 1\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n";
    c.kubectl_stdin(&["apply", "-f", "-"], rc).expect_ok();
    let got = c.get_json(&["rc", "web"]);
    assert_eq!(got["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(got["metadata"]["labels"], serde_json::json!({"app": "web"}));

    c.kubectl(&["scale", "rc", "web", "--replicas=3"]).expect_ok();
    eventually(60, || {
        let rc = c.get_json(&["rc", "web"]);
        (rc["status"]["readyReplicas"] == 3 && live_pods(&c, "app=web").len() == 3).then_some(())
    });
    for p in live_pods(&c, "app=web") {
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str(), owner["controller"].as_bool()),
            (Some("ReplicationController"), Some("web"), Some(true))
        );
        assert!(p["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    }
    let table = c.kubectl(&["get", "rc", "web", "-o", "wide"]).expect_ok();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[2], row[3]), ("web", "3", "3", "3"), "{table}");
    assert_eq!(row.last(), Some(&"app=web"), "{table}");
    // The scale subresource reads as upstream's.
    let scale = c.kubectl(&["get", "--raw", "/api/v1/namespaces/default/replicationcontrollers/web/scale"]).expect_ok();
    let scale: Value = serde_json::from_str(&scale).unwrap();
    assert_eq!((scale["spec"]["replicas"].as_i64(), scale["status"]["selector"].as_str()), (Some(3), Some("app=web")));

    c.kubectl(&["scale", "rc", "web", "--replicas=1"]).expect_ok();
    eventually(60, || {
        (live_pods(&c, "app=web").len() == 1 && c.get_json(&["rc", "web"])["status"]["replicas"] == 1).then_some(())
    });
    let events = c
        .kubectl(&["get", "events", "--field-selector", "involvedObject.kind=ReplicationController", "-o", "json"])
        .expect_ok();
    let events: Value = serde_json::from_str(&events).unwrap();
    let reasons: Vec<(String, String)> = items(&events)
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["source"]["component"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for reason in ["SuccessfulCreate", "SuccessfulDelete"] {
        assert!(reasons.contains(&(reason.to_string(), "replication-controller".to_string())), "{reasons:?}");
    }
    // `all` lists it; deleting it takes its pods (garbage collection).
    assert!(c.kubectl(&["get", "all"]).expect_ok().contains("replicationcontroller/web"));
    c.kubectl(&["delete", "rc", "web"]).expect_ok();
    eventually(60, || live_pods(&c, "app=web").is_empty().then_some(()));
}

#[test]
fn replication_controller_refuses_bad_specs_with_field_paths() {
    let c = Cluster::start("rc-invalid");
    let bad = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: bad}\nspec:\n  replicas: -1\n  selector: {app: other}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: 'busybox:1'}]\n";
    let err = c.kubectl_stdin(&["create", "-f", "-"], bad).expect_err("is invalid");
    for needle in [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
    ] {
        assert!(err.contains(needle), "{needle}\n{err}");
    }
}

/// A process killed when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon_pods(c: &Cluster) -> Vec<Value> {
    live_pods(c, "app=agent")
}

fn nodes_of(pods: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap_or("-").to_string()).collect();
    n.sort();
    n
}

#[test]
fn daemonset_covers_every_fitting_node_joins_late_nodes_and_rolls_back() {
    let c = Cluster::start_with("ds", &["--sim-nodes", "3"]);
    eventually(30, || (items(&c.get_json(&["nodes"])).len() == 3).then_some(()));
    c.kubectl(&["taint", "node", "sim-2", "dedicated=infra:NoSchedule"]).expect_ok();
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n";
    c.kubectl_stdin(&["apply", "-f", "-"], ds).expect_ok();
    c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).expect_ok();
    eventually(30, || (nodes_of(&daemon_pods(&c)) == ["sim-0", "sim-1"]).then_some(()));
    // The upstream tolerations are on every daemon pod.
    let tolerations = daemon_pods(&c)[0]["spec"]["tolerations"].to_string();
    for t in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "node.kubernetes.io/unschedulable"] {
        assert!(tolerations.contains(t), "{tolerations}");
    }

    // A node that joins later gets its pod.
    let late = std::process::Command::new(env!("CARGO_BIN_EXE_kubus"))
        .args(["sim-nodes", "--count", "1", "--prefix", "late-", "--cluster", "e2e", "--nats", &c.nats_url()])
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _late = Child(late);
    eventually(60, || (nodes_of(&daemon_pods(&c)) == ["late-0", "sim-0", "sim-1"]).then_some(()));
    eventually(30, || (c.get_json(&["ds", "agent"])["status"]["numberAvailable"] == 3).then_some(()));
    let table = c.kubectl(&["get", "ds", "agent"]).expect_ok();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..7], ["agent", "3", "3", "3", "3", "3", "<none>"], "{table}");

    // An image change rolls node by node: never more than one node without an available pod.
    c.kubectl(&["set", "image", "ds/agent", "c=busybox:2"]).expect_ok();
    let start = std::time::Instant::now();
    let mut worst = 0;
    while start.elapsed() < std::time::Duration::from_secs(60) {
        let pods = daemon_pods(&c);
        let ready_nodes: std::collections::BTreeSet<String> = pods
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        worst = worst.max(3usize.saturating_sub(ready_nodes.len()));
        let updated = pods.iter().filter(|p| p["spec"]["containers"][0]["image"] == "busybox:2").count();
        if updated == 3 && pods.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(worst <= 1, "{worst} nodes were without an available pod at once");
    c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).expect_ok();
    let history = c.kubectl(&["rollout", "history", "ds/agent"]).expect_ok();
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let revisions = c.kubectl(&["get", "controllerrevisions"]).expect_ok();
    assert!(revisions.contains("daemonset.apps/agent"), "{revisions}");

    c.kubectl(&["rollout", "undo", "ds/agent"]).expect_ok();
    c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]).expect_ok();
    eventually(30, || {
        let pods = daemon_pods(&c);
        (pods.len() == 3 && pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "busybox:1")).then_some(())
    });
    let revs = c.get_json(&["controllerrevisions"]);
    let mut numbers: Vec<i64> = items(&revs).iter().map(|r| r["revision"].as_i64().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, [2, 3], "the first template came back as revision 3");

    // Deleting the DaemonSet takes its pods and history.
    c.kubectl(&["delete", "ds", "agent"]).expect_ok();
    eventually(60, || {
        (daemon_pods(&c).is_empty() && items(&c.get_json(&["controllerrevisions"])).is_empty()).then_some(())
    });
}

fn images_by_pod(c: &Cluster, selector: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = live_pods(c, selector)
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["containers"][0]["image"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn statefulset_rolls_from_the_highest_ordinal_down_to_its_partition() {
    let c = Cluster::start_with("sts-roll", &["--sim-nodes", "2"]);
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 3\n  podManagementPolicy: Parallel\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n";
    c.kubectl_stdin(&["apply", "-f", "-"], sts).expect_ok();
    eventually(60, || (c.get_json(&["sts", "db"])["status"]["readyReplicas"] == 3).then_some(()));
    c.kubectl(&["set", "image", "sts/db", "c=busybox:2"]).expect_ok();
    // Only the ordinals at or above the partition move.
    eventually(60, || {
        let imgs = images_by_pod(&c, "app=db");
        (imgs.len() == 3 && imgs[2].1 == "busybox:2").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let imgs = images_by_pod(&c, "app=db");
    assert_eq!((imgs[0].1.as_str(), imgs[1].1.as_str()), ("busybox:1", "busybox:1"), "{imgs:?}");
    let status = c.get_json(&["sts", "db"])["status"].clone();
    assert_eq!(status["updatedReplicas"], 1);
    assert_ne!(status["currentRevision"], status["updateRevision"]);
    // Partition 0: the rest follow, and the update becomes the current revision.
    c.kubectl(&[
        "patch",
        "sts",
        "db",
        "--type=merge",
        "-p",
        "{\"spec\":{\"updateStrategy\":{\"rollingUpdate\":{\"partition\":0}}}}",
    ])
    .expect_ok();
    c.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]).expect_ok();
    eventually(60, || {
        let s = c.get_json(&["sts", "db"])["status"].clone();
        (s["currentRevision"] == s["updateRevision"] && s["updatedReplicas"] == 3).then_some(())
    });
    assert!(images_by_pod(&c, "app=db").iter().all(|(_, i)| i == "busybox:2"));
    c.kubectl(&["rollout", "undo", "sts/db"]).expect_ok();
    eventually(60, || images_by_pod(&c, "app=db").iter().all(|(_, i)| i == "busybox:1").then_some(()));
    c.kubectl(&["scale", "sts", "db", "--replicas=1"]).expect_ok();
    eventually(60, || (images_by_pod(&c, "app=db").len() == 1).then_some(()));
    // Fields other than replicas, template, updateStrategy, ... are fixed.
    c.kubectl(&["patch", "sts", "db", "--type=merge", "-p", "{\"spec\":{\"serviceName\":\"other\"}}"])
        .expect_err("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
}

#[test]
fn a_simulated_node_marked_unknown_while_running_posts_ready_again() {
    let c = Cluster::start_with("sim-recover", &["--sim-nodes", "2"]);
    let ready = |c: &Cluster| {
        c.get_json(&["node", "sim-1"])["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["type"] == "Ready" && x["status"] == "True")
    };
    eventually(30, || ready(&c).then_some(()));
    // What the node lifecycle controller writes when a Lease is late.
    let unknown = r#"{"status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status."}]}}"#;
    let before =
        c.get_json(&["node", "sim-1"])["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
    c.kubectl(&["patch", "node", "sim-1", "--subresource=status", "--type=merge", "-p", unknown]).expect_ok();
    // Ready again, by a write after the patch.
    eventually(30, || {
        let rv =
            c.get_json(&["node", "sim-1"])["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
        (ready(&c) && rv >= before + 2).then_some(())
    });
}

#[test]
fn new_objects_carry_the_zero_counts_typed_clients_require() {
    let c = Cluster::start("zero-status");
    let tmpl = "  selector: {matchLabels: {a: z}}\n  template:\n    metadata: {labels: {a: z}}\n    spec:\n      containers: [{name: c, image: busybox}]\n";
    let cases = [
        (
            "apps/v1",
            "DaemonSet",
            "",
            vec!["currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"],
        ),
        ("apps/v1", "ReplicaSet", "", vec!["replicas"]),
        ("apps/v1", "StatefulSet", "  serviceName: z\n", vec!["replicas", "availableReplicas"]),
    ];
    for (api, kind, extra, fields) in cases {
        let manifest = format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: z}}\nspec:\n{extra}{tmpl}");
        let created: Value =
            serde_json::from_str(&c.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &manifest).expect_ok())
                .unwrap();
        for f in fields {
            assert_eq!(created["status"][f], 0, "{kind} {f}: {}", created["status"]);
        }
    }
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: z}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {a: z}}\n";
    let created: Value =
        serde_json::from_str(&c.kubectl_stdin(&["create", "-f", "-", "-o", "json"], pdb).expect_ok()).unwrap();
    assert_eq!(
        (created["status"]["disruptionsAllowed"].as_i64(), created["status"]["expectedPods"].as_i64()),
        (Some(0), Some(0))
    );
}
