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

fn stateful_set(name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: None\n  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}}}\nspec:\n  serviceName: {name}\n  replicas: {replicas}\n{extra_spec}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: busybox\n        command: [\"sh\", \"-c\", \"hostname >> /data/who; exec sleep 3600\"]\n        volumeMounts: [{{name: data, mountPath: /data}}]\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources: {{requests: {{storage: 100Mi}}}}\n"
    )
}

fn set_pods(c: &Cluster, app: &str) -> Vec<String> {
    let v = c.get_json(&["pods", "-l", &format!("app={app}")]);
    let mut names: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn claims(c: &Cluster) -> Vec<String> {
    let v = c.get_json(&["pvc"]);
    let mut names: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn stateful_sets_start_in_order_keep_their_storage_and_scale_down_in_reverse() {
    let c = Cluster::start_with_node("sts", &[]);
    c.kubectl_stdin(&["apply", "-f", "-"], &stateful_set("web", 3, "")).expect_ok();
    c.kubectl(&["rollout", "status", "sts/web", "--timeout=120s"]).expect_ok();
    assert_eq!(set_pods(&c, "web"), ["web-0", "web-1", "web-2"]);
    // In order: each pod was created only after the one before it was Ready.
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready_at = c.get_json(&["pod", prev])["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()["lastTransitionTime"]
            .as_str()
            .unwrap()
            .to_string();
        let created = c.get_json(&["pod", next])["metadata"]["creationTimestamp"].as_str().unwrap().to_string();
        assert!(created >= ready_at, "{next} created at {created}, before {prev} was ready at {ready_at}");
    }
    let p = c.get_json(&["pod", "web-1"]);
    assert_eq!((p["spec"]["hostname"].as_str(), p["spec"]["subdomain"].as_str()), (Some("web-1"), Some("web")));
    assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(claims(&c), ["data-web-0", "data-web-1", "data-web-2"]);
    assert!(c.kubectl(&["get", "sts", "web"]).expect_ok().contains("3/3"));
    // Stable network identity: web-1.web resolves to web-1 from another pod (web-0).
    let ip = c.get_json(&["pod", "web-1"])["status"]["podIP"].as_str().unwrap().to_string();
    eventually(30, || {
        let r = c.kubectl(&["exec", "web-0", "--", "nslookup", "web-1.web.default.svc.cluster.local"]);
        (r.ok && r.stdout.contains(&ip)).then_some(())
    });

    // web-0's claim follows it: a new web-0 finds what the old one wrote.
    let uid = c.get_json(&["pod", "web-0"])["metadata"]["uid"].as_str().unwrap().to_string();
    c.kubectl(&["delete", "pod", "web-0"]).expect_ok();
    eventually(90, || {
        let r = c.kubectl(&["get", "pod", "web-0", "-o", "json"]);
        let p: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        (r.ok && p["metadata"]["uid"] != uid.as_str() && p["status"]["phase"] == "Running").then_some(())
    });
    let who = eventually(30, || {
        let r = c.kubectl(&["exec", "web-0", "--", "cat", "/data/who"]);
        (r.ok && r.stdout.lines().count() == 2).then_some(r.stdout)
    });
    assert_eq!(who, "web-0\nweb-0\n");

    // Scaling to 1 removes web-2, then web-1; their claims stay (Retain).
    let out = c.dir.join("sts-watch");
    let mut watch = c.kubectl_background(&["get", "pods", "-l", "app=web", "-w", "-o", "name"], &out);
    c.kubectl(&["scale", "sts", "web", "--replicas=1"]).expect_ok();
    eventually(90, || (set_pods(&c, "web") == ["web-0"] && !c.kubectl(&["get", "pod", "web-1"]).ok).then_some(()));
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    // After the initial listing, web-2's changes all come before web-1's.
    let changes: Vec<&str> = seen.lines().skip(3).collect();
    let last_2 = changes.iter().rposition(|l| *l == "pod/web-2").expect("web-2 changed");
    let first_1 = changes.iter().position(|l| *l == "pod/web-1").expect("web-1 changed");
    assert!(last_2 < first_1, "web-1 went before web-2 was gone: {seen}");
    assert_eq!(claims(&c), ["data-web-0", "data-web-1", "data-web-2"]);

    // whenScaled: Delete, Parallel: the claims of removed ordinals go with their pods.
    let policy = "  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Delete}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &stateful_set("tmp", 2, policy)).expect_ok();
    c.kubectl(&["rollout", "status", "sts/tmp", "--timeout=120s"]).expect_ok();
    assert!(claims(&c).contains(&"data-tmp-1".to_string()));
    c.kubectl(&["scale", "sts", "tmp", "--replicas=1"]).expect_ok();
    let start = std::time::Instant::now();
    while claims(&c).contains(&"data-tmp-1".to_string()) {
        if start.elapsed() > std::time::Duration::from_secs(90) {
            let pvc = c.kubectl(&["get", "pvc", "data-tmp-1", "-o", "yaml"]).stdout;
            let pods = c.kubectl(&["get", "pods", "-o", "wide"]).stdout;
            let events = c.kubectl(&["get", "events"]).stdout;
            panic!("data-tmp-1 stays:\n{pvc}\n{pods}\n{events}");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    c.kubectl(&["delete", "sts", "tmp"]).expect_ok();
    eventually(90, || (!claims(&c).contains(&"data-tmp-0".to_string())).then_some(()));
    assert!(claims(&c).contains(&"data-web-1".to_string()), "Retain keeps web's");
}
