//! PriorityClasses, the Priority admission, the priority-ordered scheduling queue and
//! preemption, with kubectl on a simulated node of 32 cpus (issue #12).

mod common;
use common::{eventually, Cluster};
use serde_json::Value;

/// A pod asking for `cpu` cpus, of class `class` (None: no class named).
fn pod_yaml(name: &str, class: Option<&str>, cpu: u32) -> String {
    let class = class.map(|c| format!("  priorityClassName: {c}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{class}  containers:\n  - name: c\n    image: busybox\n    resources: {{requests: {{cpu: '{cpu}'}}}}\n"
    )
}

fn create_pod(c: &Cluster, name: &str, class: Option<&str>, cpu: u32) -> common::Run {
    c.kubectl_stdin(&["create", "-f", "-"], &pod_yaml(name, class, cpu))
}

fn pod(c: &Cluster, name: &str) -> Value {
    c.get_json(&["pod", name])
}

fn node_of(c: &Cluster, name: &str) -> Option<String> {
    pod(c, name)["spec"]["nodeName"].as_str().map(str::to_string)
}

/// The pod's PodScheduled=False message, once the scheduler has written one.
fn unschedulable_message(c: &Cluster, name: &str) -> Option<String> {
    let p = pod(c, name);
    let conditions = p["status"]["conditions"].as_array()?.clone();
    conditions
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

#[test]
fn priority_classes_and_the_priority_admission() {
    let c = Cluster::start_with("prio-api", &["--sim-nodes", "1"]);
    // The built-in classes exist from the start, with upstream's columns.
    let table = c.kubectl(&["get", "pc"]).expect_ok();
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"], "{table}");
    assert!(table.lines().any(|l| l.starts_with("system-cluster-critical") && l.contains(" 2000000000 ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("system-node-critical") && l.contains(" 2000001000 ")), "{table}");
    c.kubectl(&["delete", "pc", "system-node-critical"])
        .expect_err("this is a system priority class and cannot be deleted");

    // kubectl create priorityclass (protobuf) and what it stored.
    c.kubectl(&["create", "priorityclass", "high", "--value=1000", "--description=for important pods"]).expect_ok();
    let high = c.get_json(&["pc", "high"]);
    assert_eq!(
        (&high["value"], &high["description"], &high["preemptionPolicy"]),
        (&Value::from(1000), &Value::from("for important pods"), &Value::from("PreemptLowerPriority"))
    );
    c.kubectl(&["create", "priorityclass", "quiet", "--value=500", "--preemption-policy=Never"]).expect_ok();

    // Bad classes: 422 with the field, 403 for a second default.
    c.kubectl(&["create", "priorityclass", "too-high", "--value=2000000000"]).expect_err(
        "PriorityClass.scheduling.k8s.io \"too-high\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000",
    );
    c.kubectl(&["create", "priorityclass", "system-mine", "--value=10"]).expect_err(
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class",
    );
    c.kubectl(&["patch", "pc", "high", "-p", "{\"value\": 2000}"])
        .expect_err("\"high\" is invalid: value: Forbidden: may not be changed in an update.");
    c.kubectl(&["patch", "pc", "high", "-p", "{\"description\": \"still important\"}"]).expect_ok();
    c.kubectl(&["create", "priorityclass", "default-a", "--value=10", "--global-default"]).expect_ok();
    c.kubectl(&["create", "priorityclass", "default-b", "--value=20", "--global-default"]).expect_err(
        "priorityclasses.scheduling.k8s.io \"default-b\" is forbidden: PriorityClass default-a is already marked as default. Only one default can exist",
    );
    c.kubectl(&["patch", "pc", "quiet", "-p", "{\"globalDefault\": true}"])
        .expect_err("PriorityClass default-a is already marked as default");
    let table = c.kubectl(&["get", "pc", "default-a"]).expect_ok();
    assert!(table.lines().any(|l| l.starts_with("default-a") && l.contains(" true ")), "{table}");

    // Pods: the class's value and policy, the default class when none is named.
    create_pod(&c, "named", Some("quiet"), 1).expect_ok();
    let spec = pod(&c, "named")["spec"].clone();
    assert_eq!((spec["priority"].as_i64(), spec["preemptionPolicy"].as_str()), (Some(500), Some("Never")), "{spec}");
    create_pod(&c, "unnamed", None, 1).expect_ok();
    let spec = pod(&c, "unnamed")["spec"].clone();
    assert_eq!((spec["priorityClassName"].as_str(), spec["priority"].as_i64()), (Some("default-a"), Some(10)));
    create_pod(&c, "critical", Some("system-cluster-critical"), 1).expect_ok();
    assert_eq!(pod(&c, "critical")["spec"]["priority"], 2_000_000_000);
    let err = create_pod(&c, "lost", Some("nope"), 1)
        .expect_err("pods \"lost\" is forbidden: no PriorityClass with name nope was found");
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    let forged = pod_yaml("forged", Some("high"), 1).replace("  containers:", "  priority: 5\n  containers:");
    c.kubectl_stdin(&["create", "-f", "-"], &forged).expect_err(
        "pods \"forged\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
    );
    // Without a default class, pods get 0.
    c.kubectl(&["delete", "pc", "default-a"]).expect_ok();
    eventually(30, || {
        let _ = c.kubectl(&["delete", "pod", "plain", "--ignore-not-found"]);
        create_pod(&c, "plain", None, 1).ok.then_some(())?;
        (pod(&c, "plain")["spec"]["priority"] == 0).then_some(())
    });
    c.kubectl(&["delete", "pc", "high", "quiet"]).expect_ok();
}

#[test]
fn higher_priority_pods_preempt_and_go_first() {
    let c = Cluster::start_with("prio-sched", &["--sim-nodes", "1"]);
    for (name, value, policy) in [
        ("low", 100, "PreemptLowerPriority"),
        ("mid", 500, "PreemptLowerPriority"),
        ("high", 1000, "PreemptLowerPriority"),
        ("high-never", 1000, "Never"),
    ] {
        let policy = format!("--preemption-policy={policy}");
        c.kubectl(&["create", "priorityclass", name, &format!("--value={value}"), &policy]).expect_ok();
    }
    // The node has 32 cpus: one pod of 20 fills it for any other.
    create_pod(&c, "victim", Some("low"), 20).expect_ok();
    eventually(30, || (pod(&c, "victim")["status"]["phase"] == "Running").then_some(()));

    // Equal priority does not preempt; preemptionPolicy Never does not either.
    create_pod(&c, "peer", Some("low"), 20).expect_ok();
    let msg = eventually(30, || unschedulable_message(&c, "peer"));
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    create_pod(&c, "polite", Some("high-never"), 20).expect_ok();
    let msg = eventually(30, || unschedulable_message(&c, "polite"));
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
    );

    // A higher priority preempts: the victim goes, with the DisruptionTarget condition and a
    // Preempted event, and the preemptor is nominated to the node and runs there.
    create_pod(&c, "urgent", Some("high"), 20).expect_ok();
    let urgent_uid = pod(&c, "urgent")["metadata"]["uid"].as_str().unwrap().to_string();
    eventually(60, || (node_of(&c, "urgent").as_deref() == Some("sim-0")).then_some(()));
    let urgent = pod(&c, "urgent");
    assert_eq!(urgent["status"]["nominatedNodeName"], "sim-0", "{urgent}");
    eventually(30, || (pod(&c, "urgent")["status"]["phase"] == "Running").then_some(()));
    eventually(30, || (!c.kubectl(&["get", "pod", "victim"]).ok).then_some(()));
    let events = c
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=victim,reason=Preempted", "-o", "json"])
        .expect_ok();
    let expected = format!("Preempted by pod {urgent_uid} on node sim-0");
    assert!(events.contains(&expected), "no {expected:?} in {events}");
    let failed = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=urgent,reason=FailedScheduling",
            "-o",
            "json",
        ])
        .expect_ok();
    assert!(failed.contains("0/1 nodes are available: 1 Insufficient cpu."), "{failed}");
    // The room went to the preemptor: the others still wait.
    for name in ["peer", "polite"] {
        assert_eq!(node_of(&c, name), None, "{name} took the room");
    }

    // A nomination preemption cannot serve (here a stale one, as a previous leader may have
    // left) is cleared at the pod's next attempt, and its room is no longer held.
    let stale = r#"{"status":{"nominatedNodeName":"sim-0"}}"#;
    c.kubectl(&["patch", "pod", "peer", "--subresource=status", "--type=merge", "-p", stale]).expect_ok();
    assert_eq!(pod(&c, "peer")["status"]["nominatedNodeName"], "sim-0");
    // A pod leaving the node makes the scheduler try peer again.
    create_pod(&c, "nudge", Some("high"), 1).expect_ok();
    eventually(30, || node_of(&c, "nudge"));
    c.kubectl(&["delete", "pod", "nudge"]).expect_ok();
    eventually(60, || pod(&c, "peer")["status"]["nominatedNodeName"].is_null().then_some(()));
    assert_eq!(node_of(&c, "peer"), None);
    // Nothing holds room for it now: a pod of no priority fits beside urgent.
    create_pod(&c, "small", None, 10).expect_ok();
    eventually(30, || node_of(&c, "small"));

    // A preemptor kept away from a lower-priority pod by anti-affinity evicts it, though the
    // node has room for both.
    c.kubectl(&["delete", "pod", "peer", "polite", "urgent", "small"]).expect_ok();
    let db = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, labels: {app: db}}\nspec:\n  priorityClassName: low\n  containers:\n  - name: c\n    image: busybox\n    resources: {requests: {cpu: '1'}}\n";
    c.kubectl_stdin(&["create", "-f", "-"], db).expect_ok();
    eventually(30, || (pod(&c, "db")["status"]["phase"] == "Running").then_some(()));
    let loner = format!(
        "{}  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {{matchLabels: {{app: db}}}}\n        topologyKey: kubernetes.io/hostname\n",
        pod_yaml("loner", Some("high"), 1)
    );
    c.kubectl_stdin(&["create", "-f", "-"], &loner).expect_ok();
    eventually(60, || (node_of(&c, "loner").as_deref() == Some("sim-0")).then_some(()));
    eventually(30, || (!c.kubectl(&["get", "pod", "db"]).ok).then_some(()));
    let failed = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=loner,reason=FailedScheduling",
            "-o",
            "json",
        ])
        .expect_ok();
    assert!(failed.contains("0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."), "{failed}");

    // Queue order: with no room, the higher-priority pod that came last goes first.
    c.kubectl(&["delete", "pod", "loner"]).expect_ok();
    create_pod(&c, "blocker", Some("high"), 30).expect_ok();
    eventually(30, || (node_of(&c, "blocker").is_some()).then_some(()));
    for (name, class) in [("first-low", "low"), ("second-low", "low"), ("late-mid", "mid")] {
        create_pod(&c, name, Some(class), 20).expect_ok();
        eventually(30, || unschedulable_message(&c, name));
    }
    // Past every backoff (1 s after one failure), so only priority decides.
    std::thread::sleep(std::time::Duration::from_secs(3));
    c.kubectl(&["delete", "pod", "blocker"]).expect_ok();
    eventually(60, || node_of(&c, "late-mid"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!((node_of(&c, "first-low"), node_of(&c, "second-low")), (None, None), "a low pod took the room");

    // The scheduler's metrics, under upstream's names.
    let metrics = c.kubectl(&["get", "--raw", "/metrics"]).expect_ok();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in metrics"))
    };
    assert!(value("scheduler_preemption_attempts_total") >= 1.0);
    assert!(value("scheduler_preemption_victims_count") >= 1.0);
    assert_eq!(value("scheduler_pending_pods{queue=\"unschedulable\"}"), 2.0);
}
