//! Persistent volumes on a real node, driven with kubectl (issue #11): the default
//! local-path StorageClass provisions on the node the pod lands on (WaitForFirstConsumer),
//! data outlives pods, static volumes bind by size and class, protection finalizers hold a
//! claim while a pod uses it, and a released volume is deleted with its directory.

mod common;

use common::{eventually, Cluster};
use serde_json::Value;

fn pod_with_claim(name: &str, claim: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", {command:?}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: {claim}}}\n"
    )
}

fn claim(name: &str, size: &str, class: Option<&str>) -> String {
    let class = class.map(|c| format!("  storageClassName: '{c}'\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n{class}  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n"
    )
}

fn phase(c: &Cluster, args: &[&str]) -> String {
    c.get_json(args)["status"]["phase"].as_str().unwrap_or("").to_string()
}

#[test]
fn local_path_volumes_are_provisioned_where_the_pod_runs_and_outlive_it() {
    let c = Cluster::start_with_node("storage", &[]);
    let sc = c.kubectl(&["get", "sc"]).expect_ok();
    assert!(
        sc.contains("local-path (default)")
            && sc.contains("kubus.io/local-path")
            && sc.contains("WaitForFirstConsumer"),
        "{sc}"
    );

    c.kubectl_stdin(&["apply", "-f", "-"], &claim("data", "1Gi", None)).expect_ok();
    // No consumer yet: the claim waits, with upstream's event.
    eventually(30, || {
        let pvc = c.get_json(&["pvc", "data"]);
        (pvc["spec"]["storageClassName"] == "local-path").then_some(())
    });
    let events = eventually(30, || {
        let e = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=data"]).expect_ok();
        e.contains("WaitForFirstConsumer").then_some(e)
    });
    assert!(events.contains("waiting for first consumer to be created before binding"), "{events}");
    assert_eq!(phase(&c, &["pvc", "data"]), "Pending");

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("writer", "data", "echo kept > /data/file && cat /data/file"),
    )
    .expect_ok();
    eventually(90, || (phase(&c, &["pod", "writer"]) == "Succeeded").then_some(()));
    let pvc = c.get_json(&["pvc", "data"]);
    assert_eq!(pvc["status"]["phase"], "Bound");
    let pv_name = pvc["spec"]["volumeName"].as_str().unwrap().to_string();
    assert_eq!(pv_name, format!("pvc-{}", pvc["metadata"]["uid"].as_str().unwrap()));
    let node = c.get_json(&["pod", "writer"])["spec"]["nodeName"].as_str().unwrap().to_string();
    assert_eq!(pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], node.as_str());
    let pv = c.get_json(&["pv", &pv_name]);
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        node.as_str()
    );
    let dir = pv["spec"]["local"]["path"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&dir).join("file")).unwrap(), "kept\n");
    let tables = c.kubectl(&["get", "pv,pvc"]).expect_ok();
    assert!(tables.contains("RWO") && tables.contains("Bound") && tables.contains("default/data"), "{tables}");

    // Another pod sees what the first wrote.
    c.kubectl(&["delete", "pod", "writer"]).expect_ok();
    c.kubectl_stdin(&["apply", "-f", "-"], &pod_with_claim("reader", "data", "cat /data/file; sleep 600")).expect_ok();
    eventually(60, || c.kubectl(&["logs", "reader"]).stdout.contains("kept").then_some(()));

    // Deleting the claim while a pod uses it: it waits (pvc-protection), then goes; its
    // volume is Released and deleted with its directory (reclaim policy Delete).
    c.kubectl(&["delete", "pvc", "data", "--wait=false"]).expect_ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pvc = c.get_json(&["pvc", "data"]);
    assert!(pvc["metadata"]["deletionTimestamp"].is_string(), "{pvc}");
    assert!(c.kubectl(&["get", "pvc", "data"]).expect_ok().contains("Terminating"));
    c.kubectl(&["delete", "pod", "reader", "--grace-period=1"]).expect_ok();
    eventually(60, || (!c.kubectl(&["get", "pvc", "data"]).ok).then_some(()));
    eventually(60, || (!c.kubectl(&["get", "pv", &pv_name]).ok).then_some(()));
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is removed");
}

#[test]
fn static_volumes_bind_by_size_and_class_and_oversized_claims_wait_with_a_reason() {
    let c = Cluster::start_with_node("static-pv", &[]);
    let dir = c.dir.join("static-volume");
    let pv = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: small, labels: {{tier: gold}}}}\nspec:\n  storageClassName: ''\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: {}}}\n",
        dir.display()
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &pv).expect_ok();
    eventually(30, || (phase(&c, &["pv", "small"]) == "Available").then_some(()));
    let pv_json = c.get_json(&["pv", "small"]);
    assert_eq!(pv_json["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert!(pv_json["metadata"]["finalizers"].to_string().contains("kubernetes.io/pv-protection"));

    // Too big for the only volume: Pending, and the event says why.
    c.kubectl_stdin(&["apply", "-f", "-"], &claim("big", "5Gi", Some(""))).expect_ok();
    let events = eventually(30, || {
        let e = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=big"]).expect_ok();
        e.contains("FailedBinding").then_some(e)
    });
    assert!(events.contains("no persistent volumes available for this claim and no storage class is set"), "{events}");
    assert_eq!(phase(&c, &["pvc", "big"]), "Pending");

    // One that fits binds at once (an Immediate claim without a class), and a pod uses it.
    c.kubectl_stdin(&["apply", "-f", "-"], &claim("fits", "500Mi", Some(""))).expect_ok();
    eventually(30, || (phase(&c, &["pvc", "fits"]) == "Bound" && phase(&c, &["pv", "small"]) == "Bound").then_some(()));
    let fits = c.get_json(&["pvc", "fits"]);
    assert_eq!(
        (fits["spec"]["volumeName"].as_str(), fits["status"]["capacity"]["storage"].as_str()),
        (Some("small"), Some("1Gi"))
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &pod_with_claim("user", "fits", "echo static > /data/f")).expect_ok();
    eventually(90, || (phase(&c, &["pod", "user"]) == "Succeeded").then_some(()));
    assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "static\n");

    // A pod whose claim does not exist waits with the scheduler's reason.
    c.kubectl_stdin(&["apply", "-f", "-"], &pod_with_claim("orphan", "missing", "true")).expect_ok();
    let events = eventually(30, || {
        let e = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=orphan"]).expect_ok();
        e.contains("FailedScheduling").then_some(e)
    });
    assert!(events.contains("persistentvolumeclaim \"missing\" not found"), "{events}");

    // Released and retained: the data stays.
    c.kubectl(&["delete", "pod", "user"]).expect_ok();
    c.kubectl(&["delete", "pvc", "fits"]).expect_ok();
    eventually(30, || (phase(&c, &["pv", "small"]) == "Released").then_some(()));
    assert!(dir.join("f").exists());
    let bad: Value = serde_json::from_str(
        &c.kubectl_stdin(&["create", "-f", "-", "--dry-run=server", "-o", "json"], "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n").stdout,
    )
    .unwrap_or(Value::Null);
    assert!(bad.is_null(), "a volume without a source is refused");
    c.kubectl_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n")
        .expect_err("spec: Required value: must specify a volume type");
}
