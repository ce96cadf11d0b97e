//! Object lifecycles through kubectl and raw HTTP: finalizers and graceful deletion,
//! propagation policies, deletecollection, bindings, status subresources, the kinds that
//! share storage (core and events.k8s.io Events), Leases and Nodes.

mod common;
use common::Cluster;
use serde_json::{json, Value};

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let c = Cluster::start("final");
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\ndata: {a: b}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], cm).expect_ok();
    c.kubectl(&["delete", "cm", "held", "--wait=false"]).expect_ok();
    let (code, obj) = c.http("GET", "/api/v1/namespaces/default/configmaps/held", None, None);
    assert_eq!(code, 200, "a finalizer keeps the object");
    assert!(obj["metadata"]["deletionTimestamp"].is_string(), "{obj}");
    // New finalizers may not be added while deleting; removing the last one deletes it.
    c.kubectl(&["patch", "cm", "held", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#])
        .expect_ok();
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/configmaps/held", None, None).0, 404);
}

#[test]
fn propagation_policy_is_recorded_for_the_garbage_collector() {
    let c = Cluster::start("prop");
    c.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fg}\n").expect_ok();
    // What the API server records (seen through a dry run, since the garbage collector acts
    // on it at once): the policy as a finalizer and a deletion timestamp.
    for (policy, finalizer) in [("Foreground", "foregroundDeletion"), ("Orphan", "orphan")] {
        let (code, obj) = c.http(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/fg?dryRun=All",
            Some("application/json"),
            Some(&body(json!({"propagationPolicy": policy}))),
        );
        assert_eq!(code, 200);
        assert_eq!(obj["metadata"]["finalizers"], json!([finalizer]));
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
    }
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/configmaps/fg", None, None).0, 200, "dry run deleted nothing");
    // With nothing depending on it, the garbage collector then lets the object go.
    c.kubectl(&["delete", "cm", "fg", "--cascade=foreground", "--timeout=30s"]).expect_ok();
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/configmaps/fg", None, None).0, 404);
    let (code, s) = c.http(
        "DELETE",
        "/api/v1/namespaces/default/configmaps/x",
        Some("application/json"),
        Some(&body(json!({"propagationPolicy": "Sideways"}))),
    );
    assert_eq!(code, 404, "{s}");
    c.kubectl(&["create", "cm", "x"]).expect_ok();
    let (code, s) = c.http(
        "DELETE",
        "/api/v1/namespaces/default/configmaps/x",
        Some("application/json"),
        Some(&body(json!({"propagationPolicy": "Sideways"}))),
    );
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
}

#[test]
fn pods_bind_delete_gracefully_and_deletecollection() {
    let c = Cluster::start("pods");
    for i in 0..3 {
        c.kubectl(&["run", &format!("p{i}"), "--image=busybox", "--labels=app=x"]).expect_ok();
    }
    // Binding sets the node and the PodScheduled condition; a second binding conflicts.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p0"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = c.http(
        "POST",
        "/api/v1/namespaces/default/pods/p0/binding",
        Some("application/json"),
        Some(&body(binding.clone())),
    );
    assert_eq!(code, 201);
    let (code, s) =
        c.http("POST", "/api/v1/namespaces/default/pods/p0/binding", Some("application/json"), Some(&body(binding)));
    assert_eq!((code, s["reason"].as_str()), (409, Some("Conflict")));
    let (_, pod) = c.http("GET", "/api/v1/namespaces/default/pods/p0", None, None);
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
    let wide = c.kubectl(&["get", "pod", "p0", "-o", "wide"]).expect_ok();
    assert!(wide.contains("n1"), "{wide}");
    // A bound pod is deleted gracefully: it stays, Terminating, with its grace period.
    c.kubectl(&["delete", "pod", "p0", "--wait=false"]).expect_ok();
    let (code, pod) = c.http("GET", "/api/v1/namespaces/default/pods/p0", None, None);
    assert_eq!(code, 200);
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    let table = c.kubectl(&["get", "pod", "p0"]).expect_ok();
    assert!(table.contains("Terminating"), "{table}");
    // What the node agent does when the containers are gone: a delete with grace 0.
    c.kubectl(&["delete", "pod", "p0", "--grace-period=0", "--force"]).expect_ok();
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/pods/p0", None, None).0, 404);
    // Unbound pods go at once; deletecollection with a selector removes the rest.
    let (code, list) = c.http("DELETE", "/api/v1/namespaces/default/pods?labelSelector=app%3Dx", None, None);
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, left) = c.http("GET", "/api/v1/namespaces/default/pods", None, None);
    assert_eq!(left["items"].as_array().unwrap().len(), 0);
    // Status writes may not change the spec; spec writes may not change the status.
    c.kubectl(&["run", "s", "--image=busybox"]).expect_ok();
    let (code, _) = c.http(
        "PATCH",
        "/api/v1/namespaces/default/pods/s/status",
        Some("application/merge-patch+json"),
        Some(&body(json!({"status": {"phase": "Running", "podIP": "10.0.0.5"}, "spec": {"nodeName": "evil"}}))),
    );
    assert_eq!(code, 200);
    let (_, pod) = c.http("GET", "/api/v1/namespaces/default/pods/s", None, None);
    assert_eq!((pod["status"]["phase"].as_str(), pod["spec"]["nodeName"].as_str()), (Some("Running"), None));
    // Pod specs are immutable except for the fields upstream allows.
    let (code, s) = c.http(
        "PATCH",
        "/api/v1/namespaces/default/pods/s",
        Some("application/merge-patch+json"),
        Some(&body(json!({"spec": {"restartPolicy": "Never"}}))),
    );
    assert_eq!(code, 422, "{s}");
}

#[test]
fn events_in_both_apis_leases_and_nodes() {
    let c = Cluster::start("kinds");
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "kubus/test", "reportingInstance": "t1",
        "action": "Testing", "reason": "Tested", "note": "hello from events.k8s.io", "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}});
    let (code, s) =
        c.http("POST", "/apis/events.k8s.io/v1/namespaces/default/events", Some("application/json"), Some(&body(ev)));
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["note"], "hello from events.k8s.io");
    let (_, core) = c.http("GET", "/api/v1/namespaces/default/events/e1", None, None);
    assert_eq!(core["message"], "hello from events.k8s.io");
    assert_eq!(core["involvedObject"]["name"], "p");
    let table = c.kubectl(&["get", "events"]).expect_ok();
    assert!(table.contains("Tested") && table.contains("pod/p"), "{table}");

    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: n1, namespace: kube-node-lease}\nspec: {holderIdentity: n1, leaseDurationSeconds: 40}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], lease).expect_ok();
    let leases = c.kubectl(&["get", "leases", "-n", "kube-node-lease"]).expect_ok();
    assert!(leases.contains("n1"), "{leases}");

    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {node-role.kubernetes.io/worker: ''}}\nspec: {podCIDR: 10.244.1.0/24}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], node).expect_ok();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}],
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "nodeInfo": {"kubeletVersion": "v1.32.0"}}});
    let (code, s) =
        c.http("PATCH", "/api/v1/nodes/n1/status", Some("application/merge-patch+json"), Some(&body(status)));
    assert_eq!(code, 200, "{s}");
    let nodes = c.kubectl(&["get", "nodes"]).expect_ok();
    let row: Vec<&str> = nodes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[2]), ("n1", "Ready", "worker"), "{nodes}");
    c.kubectl(&["cordon", "n1"]).expect_ok();
    assert!(c.kubectl(&["get", "nodes"]).expect_ok().contains("SchedulingDisabled"));
    // The namespaces every cluster needs cannot be deleted.
    c.kubectl(&["delete", "ns", "kube-system"]).expect_err("this namespace may not be deleted");
    // Cluster-scoped objects have no namespace path.
    assert_eq!(c.http("GET", "/api/v1/namespaces/default/nodes/n1", None, None).0, 404);
}
