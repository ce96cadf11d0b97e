//! HorizontalPodAutoscalers with kubectl (issue #12): `kubectl autoscale`, both API versions,
//! the table, bad specs, and the conditions an autoscaler reports when it cannot scale.

mod common;
use common::{eventually, Cluster};
use serde_json::Value;

fn deployment(c: &Cluster, name: &str, requests: &str) {
    let d = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: 'busybox:1'{requests}}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &d).expect_ok();
}

fn condition(hpa: &Value, kind: &str) -> Option<(String, String, String)> {
    hpa["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind).map(|c| {
        (
            c["status"].as_str().unwrap_or("").to_string(),
            c["reason"].as_str().unwrap_or("").to_string(),
            c["message"].as_str().unwrap_or("").to_string(),
        )
    })
}

#[test]
fn autoscalers_are_served_in_both_versions_and_report_why_they_cannot_scale() {
    let c = Cluster::start_with("hpa", &["--sim-nodes", "1", "--horizontal-pod-autoscaler-sync-period", "2s"]);
    deployment(&c, "web", "");
    // kubectl autoscale sends an autoscaling/v1 object (protobuf).
    let out = c.kubectl(&["autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=3"]).expect_ok();
    assert!(out.contains("horizontalpodautoscaler.autoscaling/web autoscaled"), "{out}");
    let v2 = c.get_json(&["horizontalpodautoscalers.v2.autoscaling", "web"]);
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    let metric = &v2["spec"]["metrics"][0]["resource"];
    assert_eq!((metric["name"].as_str(), metric["target"]["averageUtilization"].as_i64()), (Some("cpu"), Some(50)));
    let v1 = c.get_json(&["horizontalpodautoscalers.v1.autoscaling", "web"]);
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1}");
    assert!(v1["status"]["currentReplicas"].is_i64(), "v1 status always has its counts: {v1}");

    // The pods request no CPU: the autoscaler says so instead of scaling.
    let hpa = eventually(60, || {
        let hpa = c.get_json(&["hpa", "web"]);
        condition(&hpa, "ScalingActive").filter(|(s, _, _)| s == "False").map(|_| hpa)
    });
    let (_, reason, message) = condition(&hpa, "ScalingActive").unwrap();
    assert_eq!(reason, "FailedGetResourceMetric", "{hpa}");
    assert!(
        message.contains("failed to get cpu utilization: missing request for cpu in container c of Pod web-"),
        "{message}"
    );
    assert_eq!(condition(&hpa, "AbleToScale").map(|c| c.1), Some("SucceededGetScale".into()), "{hpa}");
    let events =
        c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=web,reason=FailedGetResourceMetric"]);
    assert!(events.stdout.contains("missing request for cpu"), "{}", events.stdout);
    let want = ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "3", "1"];
    eventually(30, || {
        let table = c.kubectl(&["get", "hpa"]).expect_ok();
        let row: Vec<String> = table.lines().nth(1)?.split_whitespace().map(str::to_string).collect();
        (row.len() >= 7 && row[..7] == want).then_some(())
    });
    let described = c.kubectl(&["describe", "hpa", "web"]).expect_ok();
    assert!(described.contains("FailedGetResourceMetric"), "{described}");

    // A v2 object with behavior, written and read back through v1 without losing it.
    let manifest = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: mem}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 4\n  metrics:\n  - {type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}}\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 5}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], manifest).expect_ok();
    let stored = c.get_json(&["horizontalpodautoscalers.v2.autoscaling", "mem"]);
    assert_eq!(stored["spec"]["minReplicas"], 1, "defaulted: {stored}");
    assert_eq!(stored["spec"]["behavior"]["scaleUp"]["selectPolicy"], "Max", "defaulted: {stored}");
    let mut old = c.get_json(&["horizontalpodautoscalers.v1.autoscaling", "mem"]);
    old["spec"]["maxReplicas"] = 5.into();
    c.kubectl_stdin(&["replace", "-f", "-"], &old.to_string()).expect_ok();
    let after = c.get_json(&["horizontalpodautoscalers.v2.autoscaling", "mem"]);
    assert_eq!(after["spec"]["maxReplicas"], 5);
    assert_eq!(after["spec"]["metrics"], stored["spec"]["metrics"], "{after}");
    assert_eq!(after["spec"]["behavior"], stored["spec"]["behavior"], "{after}");

    // A target that does not exist: AbleToScale False.
    c.kubectl(&["autoscale", "deployment", "web", "--name=ghost", "--max=2"]).expect_ok();
    c.kubectl(&["patch", "hpa", "ghost", "--type=merge", "-p", r#"{"spec":{"scaleTargetRef":{"name":"nope"}}}"#])
        .expect_ok();
    let ghost = eventually(60, || {
        let hpa = c.get_json(&["hpa", "ghost"]);
        condition(&hpa, "AbleToScale").filter(|(s, _, _)| s == "False").map(|_| hpa)
    });
    assert_eq!(condition(&ghost, "AbleToScale").unwrap().1, "FailedGetScale", "{ghost}");

    // Bad specs: 422 with field paths.
    let bad = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n  scaleTargetRef: {kind: Deployment, name: web}\n  minReplicas: 3\n  maxReplicas: 2\n  metrics:\n  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 0}}}\n";
    let err = c.kubectl_stdin(&["apply", "-f", "-"], bad).expect_err("is invalid");
    assert!(
        err.contains("spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"),
        "{err}"
    );
    assert!(
        err.contains("spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"),
        "{err}"
    );
    let err = c.kubectl(&["autoscale", "deployment", "web", "--name=zero", "--max=0"]);
    assert!(!err.ok, "{}", err.stdout);
}

/// The Deployment's pods, not being deleted.
fn live_pods(c: &Cluster, app: &str) -> Vec<String> {
    c.get_json(&["pods", "-l", &format!("app={app}")])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_busy_deployment_scales_up_to_max_and_back_down_when_the_load_stops() {
    let c = Cluster::start_with_node("hpaload", &["--horizontal-pod-autoscaler-sync-period", "3s"]);
    // Each pod burns a core until told to stop (a file made with kubectl exec).
    let d = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: burn}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: burn}}\n  template:\n    metadata: {labels: {app: burn}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        command: [sh, -c, 'while [ ! -e /tmp/stop ]; do :; done; sleep 3600']\n        resources: {requests: {cpu: 200m}}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], d).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/burn", "--timeout=120s"]).expect_ok();
    c.kubectl(&["autoscale", "deployment", "burn", "--cpu-percent=50", "--min=1", "--max=3"]).expect_ok();
    // A short scale-down window for the test (upstream's default is five minutes).
    let behavior = r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}"#;
    c.kubectl(&["patch", "horizontalpodautoscalers.v2.autoscaling", "burn", "--type=merge", "-p", behavior])
        .expect_ok();

    // Far above 50% of 200m: straight to the maximum, as the ScalingLimited condition says.
    let hpa = eventually(180, || {
        let hpa = c.get_json(&["hpa", "burn"]);
        (hpa["status"]["desiredReplicas"] == 3).then_some(hpa)
    });
    let utilization = hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64();
    assert!(utilization.is_some_and(|u| u > 100), "{hpa}");
    c.kubectl(&["rollout", "status", "deploy/burn", "--timeout=120s"]).expect_ok();
    assert_eq!(c.get_json(&["deploy", "burn"])["spec"]["replicas"], 3);
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=burn,reason=SuccessfulRescale"]);
    assert!(
        events.stdout.contains("New size: 3; reason: cpu resource utilization (percentage of request) above target"),
        "{}",
        events.stdout
    );
    let table = c.kubectl(&["get", "hpa", "burn"]).expect_ok();
    assert!(table.contains("cpu: ") && table.contains("%/50%"), "{table}");

    // The load stops: after the short window, back to the minimum.
    for pod in live_pods(&c, "burn") {
        c.kubectl(&["exec", &pod, "--", "touch", "/tmp/stop"]).expect_ok();
    }
    let hpa = eventually(240, || {
        let hpa = c.get_json(&["hpa", "burn"]);
        (hpa["status"]["desiredReplicas"] == 1 && c.get_json(&["deploy", "burn"])["spec"]["replicas"] == 1)
            .then_some(hpa)
    });
    let limited =
        hpa["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ScalingLimited").cloned();
    assert!(limited.is_some(), "{hpa}");
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=burn,reason=SuccessfulRescale"]);
    assert!(events.stdout.contains("New size: 1; reason: All metrics below target"), "{}", events.stdout);
}
