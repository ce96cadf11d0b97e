//! ResourceQuota and LimitRange with kubectl on simulated nodes (issue #12): object counts and
//! compute quotas refused with upstream's 403 messages, usage shown by `kubectl get/describe
//! quota` and released when objects go, a Deployment held at its quota with FailedCreate
//! events and a ReplicaFailure condition (on its ReplicaSet and itself) until the quota
//! allows, racing creates admitted exactly up to the limit, LimitRange defaults and limits,
//! and bad specs refused with 422 and field paths.

mod common;
use common::{eventually, Cluster};
use serde_json::Value;
use std::sync::Arc;

/// Waits until the quota controller has counted the quota (`status.used` has every hard key).
fn counted(c: &Cluster, ns: &str, name: &str) -> Value {
    eventually(30, || {
        let q = c.get_json(&["quota", name, "-n", ns]);
        let hard = q["spec"]["hard"].as_object()?.clone();
        let used = q["status"]["used"].as_object()?;
        hard.keys().all(|k| used.contains_key(k)).then_some(q)
    })
}

fn used(c: &Cluster, ns: &str, name: &str, resource: &str) -> String {
    c.get_json(&["quota", name, "-n", ns])["status"]["used"][resource].as_str().unwrap_or_default().to_string()
}

fn run_pod(c: &Cluster, ns: &str, name: &str) -> common::Run {
    c.kubectl(&["run", name, "-n", ns, "--image=busybox:1", "--restart=Never"])
}

#[test]
fn pod_count_quota_refuses_reports_and_releases() {
    let c = Cluster::start_with("quota-pods", &["--sim-nodes", "2"]);
    // kubectl create quota sends protobuf.
    c.kubectl(&["create", "quota", "two", "--hard=pods=2"]).expect_ok();
    counted(&c, "default", "two");
    run_pod(&c, "default", "a").expect_ok();
    run_pod(&c, "default", "b").expect_ok();
    let refused = run_pod(&c, "default", "c")
        .expect_err("pods \"c\" is forbidden: exceeded quota: two, requested: pods=1, used: pods=2, limited: pods=2");
    assert!(refused.contains("Error from server (Forbidden)"), "{refused}");

    let table = c.kubectl(&["get", "quota"]).expect_ok();
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "AGE", "REQUEST", "LIMIT"], "{table}");
    assert!(table.contains("pods: 2/2"), "{table}");
    let described = c.kubectl(&["describe", "quota", "two"]).expect_ok();
    assert!(described.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "2", "2"]), "{described}");

    // A deleted pod gives its slot back.
    c.kubectl(&["delete", "pod", "a", "--wait=true"]).expect_ok();
    eventually(30, || (used(&c, "default", "two", "pods") == "1").then_some(()));
    // A create that fails after it was charged gives its charge back.
    run_pod(&c, "default", "b").expect_err("pods \"b\" already exists");
    assert_eq!(used(&c, "default", "two", "pods"), "1");
    run_pod(&c, "default", "d").expect_ok();
    assert_eq!(used(&c, "default", "two", "pods"), "2");

    // A Deployment of 3 under a quota of 2 pods gets 2; its ReplicaSet tells why.
    c.kubectl(&["create", "namespace", "dep"]).expect_ok();
    c.kubectl(&["create", "quota", "q", "-n", "dep", "--hard=pods=2,count/deployments.apps=1"]).expect_ok();
    counted(&c, "dep", "q");
    c.kubectl(&["create", "deployment", "web", "-n", "dep", "--image=busybox:1", "--replicas=3"]).expect_ok();
    let event = eventually(60, || {
        let events = c.get_json(&["events", "-n", "dep", "--field-selector", "reason=FailedCreate"]);
        events["items"].as_array()?.first().map(|e| e["message"].as_str().unwrap_or_default().to_string())
    });
    assert!(
        event.starts_with("Error creating: pods \"web-")
            && event.ends_with("is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{event}"
    );
    let pods = c.get_json(&["pods", "-n", "dep"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(2), "{pods}");
    // The ReplicaSet's ReplicaFailure condition says so too.
    eventually(30, || {
        let rs = c.get_json(&["rs", "-n", "dep"]);
        let conditions = rs["items"][0]["status"]["conditions"].as_array()?.clone();
        conditions
            .iter()
            .find(|c| {
                c["type"] == "ReplicaFailure"
                    && c["reason"] == "FailedCreate"
                    && c["message"].as_str().is_some_and(|m| m.contains("exceeded quota: q"))
            })
            .cloned()
    });
    // And so does the Deployment, copied from its ReplicaSet.
    let failure = |c: &Cluster| -> Option<Value> {
        let d = c.get_json(&["deploy", "web", "-n", "dep"]);
        d["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "ReplicaFailure").cloned()
    };
    let shown = eventually(30, || failure(&c));
    assert_eq!((&shown["status"], &shown["reason"]), (&Value::from("True"), &Value::from("FailedCreate")), "{shown}");
    assert!(shown["message"].as_str().is_some_and(|m| m.contains("exceeded quota: q")), "{shown}");
    // Room for the third: the ReplicaSet's next retry creates it, and both conditions go.
    c.kubectl(&["patch", "quota", "q", "-n", "dep", "--type=merge", "-p", r#"{"spec":{"hard":{"pods":"3"}}}"#])
        .expect_ok();
    eventually(120, || {
        let pods = c.get_json(&["pods", "-n", "dep"]);
        (pods["items"].as_array().map(Vec::len) == Some(3) && failure(&c).is_none()).then_some(())
    });
    let rs = c.get_json(&["rs", "-n", "dep"]);
    let conditions = rs["items"][0]["status"]["conditions"].as_array().cloned().unwrap_or_default();
    assert!(conditions.iter().all(|c| c["type"] != "ReplicaFailure"), "{rs}");
    assert_eq!(used(&c, "dep", "q", "count/deployments.apps"), "1");
    c.kubectl(&["create", "deployment", "other", "-n", "dep", "--image=busybox:1"]).expect_err(
        "deployments.apps \"other\" is forbidden: exceeded quota: q, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1",
    );
}

#[test]
fn racing_creates_take_exactly_the_free_slots() {
    let c = Arc::new(Cluster::start("quota-race"));
    c.kubectl(&["create", "namespace", "race"]).expect_ok();
    c.kubectl(&["create", "quota", "five", "-n", "race", "--hard=pods=5"]).expect_ok();
    counted(&c, "race", "five");
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || run_pod(&c, "race", &format!("p{i}")))
        })
        .collect();
    let runs: Vec<common::Run> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let admitted = runs.iter().filter(|r| r.ok).count();
    assert_eq!(admitted, 5, "{:?}", runs.iter().map(|r| &r.stderr).collect::<Vec<_>>());
    for r in runs.iter().filter(|r| !r.ok) {
        assert!(r.stderr.contains("exceeded quota: five"), "{}", r.stderr);
    }
    let pods = c.get_json(&["pods", "-n", "race"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(used(&c, "race", "five", "pods"), "5");

    // A finished pod stops counting (count/pods would still count it).
    let first = pods["items"][0]["metadata"]["name"].as_str().unwrap().to_string();
    let failed = r#"{"status": {"phase": "Failed"}}"#;
    c.kubectl(&["patch", "pod", &first, "-n", "race", "--subresource=status", "--type=merge", "-p", failed])
        .expect_ok();
    eventually(30, || (used(&c, "race", "five", "pods") == "4").then_some(()));
    run_pod(&c, "race", "after").expect_ok();

    // Scopes: a BestEffort quota counts only pods without requests or limits.
    c.kubectl(&["create", "namespace", "scoped"]).expect_ok();
    c.kubectl(&["create", "quota", "be", "-n", "scoped", "--hard=pods=1", "--scopes=BestEffort"]).expect_ok();
    counted(&c, "scoped", "be");
    run_pod(&c, "scoped", "free").expect_ok();
    run_pod(&c, "scoped", "free2").expect_err("exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1");
    apply(&c, "scoped", &pod_yaml("sized", "{requests: {cpu: 100m}}")).expect_ok();
    assert_eq!(used(&c, "scoped", "be", "pods"), "1");

    // A scope selector on PriorityClass counts only the pods of the classes it names.
    c.kubectl(&["create", "priorityclass", "high", "--value=1000"]).expect_ok();
    let high = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: high}\nspec:\n  hard: {pods: '1'}\n  scopeSelector:\n    matchExpressions:\n    - {scopeName: PriorityClass, operator: In, values: [high]}\n";
    c.kubectl(&["create", "namespace", "prio"]).expect_ok();
    apply(&c, "prio", high).expect_ok();
    counted(&c, "prio", "high");
    let important = |name: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  priorityClassName: high\n  containers: [{{name: c, image: 'busybox:1'}}]\n")
    };
    apply(&c, "prio", &important("vip")).expect_ok();
    apply(&c, "prio", &important("vip2"))
        .expect_err("exceeded quota: high, requested: pods=1, used: pods=1, limited: pods=1");
    run_pod(&c, "prio", "ordinary").expect_ok();
    assert_eq!(used(&c, "prio", "high", "pods"), "1");
}

fn apply(c: &Cluster, ns: &str, yaml: &str) -> common::Run {
    c.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml)
}

fn pod_yaml(name: &str, resources: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    resources: {resources}\n")
}

#[test]
fn compute_quota_and_limit_ranges() {
    let c = Cluster::start_with("quota-compute", &["--sim-nodes", "2"]);
    c.kubectl(&["create", "namespace", "compute"]).expect_ok();
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute}\nspec:\n  hard: {requests.cpu: '1', limits.cpu: '2', requests.memory: 1Gi}\n";
    apply(&c, "compute", quota).expect_ok();
    counted(&c, "compute", "compute");
    run_pod(&c, "compute", "bare").expect_err(
        "pods \"bare\" is forbidden: failed quota: compute: must specify limits.cpu for: bare; requests.cpu for: bare; requests.memory for: bare",
    );
    let sized = "{requests: {cpu: 600m, memory: 256Mi}, limits: {cpu: '1'}}";
    apply(&c, "compute", &pod_yaml("one", sized)).expect_ok();
    assert_eq!(used(&c, "compute", "compute", "requests.cpu"), "600m");
    assert_eq!(used(&c, "compute", "compute", "requests.memory"), "256Mi");
    apply(&c, "compute", &pod_yaml("two", sized)).expect_err(
        "pods \"two\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1",
    );
    let table = c.kubectl(&["get", "quota", "-n", "compute"]).expect_ok();
    assert!(
        table.contains("requests.cpu: 600m/1, requests.memory: 256Mi/1Gi") && table.contains("limits.cpu: 1/2"),
        "{table}"
    );
    c.kubectl(&["delete", "pod", "one", "-n", "compute", "--wait=true"]).expect_ok();
    eventually(30, || (used(&c, "compute", "compute", "requests.cpu") == "0").then_some(()));

    // A LimitRange fills what containers leave out and bounds what they ask.
    c.kubectl(&["create", "namespace", "lr"]).expect_ok();
    let lr = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: limits}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 300m, memory: 64Mi}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: 500m}\n  - type: PersistentVolumeClaim\n    max: {storage: 1Gi}\n";
    apply(&c, "lr", lr).expect_ok();
    let stored = c.get_json(&["limitrange", "limits", "-n", "lr"]);
    assert_eq!(stored["spec"]["limits"][0]["defaultRequest"]["memory"], "64Mi", "{stored}");
    run_pod(&c, "lr", "defaulted").expect_ok();
    let pod = c.get_json(&["pod", "defaulted", "-n", "lr"]);
    let res = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(res["requests"]["cpu"], "100m", "{res}");
    assert_eq!(res["limits"]["cpu"], "300m", "{res}");
    assert_eq!((res["requests"]["memory"].as_str(), res["limits"]["memory"].as_str()), (Some("64Mi"), Some("64Mi")));
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container defaulted; cpu, memory limit for container defaulted"
    );
    apply(&c, "lr", &pod_yaml("big", "{limits: {cpu: '1'}}"))
        .expect_err("pods \"big\" is forbidden: maximum cpu usage per Container is 500m, but limit is 1");
    let claim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n";
    apply(&c, "lr", claim).expect_err(
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi",
    );
    let described = c.kubectl(&["describe", "limitrange", "limits", "-n", "lr"]).expect_ok();
    assert!(described.contains("Container") && described.contains("500m") && described.contains("300m"), "{described}");
}

#[test]
fn bad_quotas_and_limit_ranges_are_refused() {
    let c = Cluster::start("quota-invalid");
    let negative = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: bad}\nspec:\n  hard: {pods: '-1'}\n";
    c.kubectl_stdin(&["create", "-f", "-"], negative).expect_err(
        "The ResourceQuota \"bad\" is invalid: spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0",
    );
    c.kubectl(&["create", "quota", "half", "--hard=services=1500m"])
        .expect_err("spec.hard[services]: Invalid value: \"1500m\": must be an integer");
    let scoped = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: scoped}\nspec:\n  hard: {requests.cpu: '1'}\n  scopes: [BestEffort]\n";
    c.kubectl_stdin(&["create", "-f", "-"], scoped)
        .expect_err("spec.scopes: Invalid value: [\"BestEffort\"]: unsupported scope applied to resource");
    let above = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: bad}\nspec:\n  limits:\n  - type: Container\n    max: {cpu: 500m}\n    default: {cpu: '1'}\n    defaultRequest: {cpu: 200m}\n";
    c.kubectl_stdin(&["create", "-f", "-"], above).expect_err(
        "The LimitRange \"bad\" is invalid: spec.limits[0].default[cpu]: Invalid value: \"500m\": default value 1 is greater than max value 500m",
    );
    let pod_default = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: bad}\nspec:\n  limits:\n  - type: Pod\n    default: {cpu: '1'}\n";
    c.kubectl_stdin(&["create", "-f", "-"], pod_default)
        .expect_err("spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'");
    // Nothing was stored.
    let quotas = c.get_json(&["quota"]);
    assert_eq!(quotas["items"].as_array().map(Vec::len), Some(0));
}
