//! Jobs on simulated nodes (issue #11): pods annotated `sim.kubus.io/run-seconds` finish on
//! their own, so the Job controller's whole path (completions within parallelism, counting
//! through the tracking finalizer, failures and back-off limits) runs without containers.

mod common;

use common::{eventually, Cluster};
use serde_json::Value;

fn job(name: &str, spec: &str, policy: &str, annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    metadata:\n      annotations: {{{annotations}}}\n    spec:\n      restartPolicy: {policy}\n      containers:\n      - name: main\n        image: busybox\n"
    )
}

fn pods_of(c: &Cluster, job: &str) -> Vec<Value> {
    let v = c.get_json(&["pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn condition(job: &Value, kind: &str) -> Option<Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind).cloned()
}

/// The simulated nodes' pending run timers, from the process's /metrics.
fn run_timers(c: &Cluster) -> i64 {
    let (_, page) = c.try_http("GET", "/metrics", None, None).expect("GET /metrics");
    page.lines()
        .find_map(|l| l.strip_prefix("kubus_sim_node_run_timers "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(-1, |v| v as i64)
}

#[test]
fn jobs_complete_on_simulated_nodes_with_one_pod_per_completion() {
    let c = Cluster::start_with("sim-jobs", &["--sim-nodes", "3"]);
    let spec = "  completions: 20\n  parallelism: 5\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &job("twenty", spec, "Never", "sim.kubus.io/run-seconds: '0.2'"))
        .expect_ok();
    c.kubectl(&["wait", "--for=condition=complete", "job/twenty", "--timeout=120s"]).expect_ok();
    let j = c.get_json(&["job", "twenty"]);
    assert_eq!((j["status"]["succeeded"].as_i64(), j["status"]["failed"].as_i64()), (Some(20), Some(0)), "{j}");
    let pods = pods_of(&c, "twenty");
    assert_eq!(pods.len(), 20, "one pod per completion");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
        let state = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!((state["exitCode"].as_i64(), state["reason"].as_str()), (Some(0), Some("Completed")), "{p}");
        assert!(state["startedAt"].is_string() && state["finishedAt"].is_string(), "{p}");
        assert!(p["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()), "counted and let go: {p}");
    }
    let table = c.kubectl(&["get", "pods", "-l", "batch.kubernetes.io/job-name=twenty"]).expect_ok();
    assert_eq!(table.matches("Completed").count(), 20, "{table}");
    eventually(30, || (run_timers(&c) == 0).then_some(()));
}

#[test]
fn failing_pods_fail_the_job_and_running_ones_go_with_it() {
    let c = Cluster::start_with("sim-jobs-fail", &["--sim-nodes", "2"]);
    // Never: each failure is a new pod, made after upstream's 10 s back-off; the second
    // failure exceeds backoffLimit 1.
    let never =
        job("fails", "  backoffLimit: 1\n", "Never", "sim.kubus.io/run-seconds: '0.1', sim.kubus.io/exit-code: '3'");
    c.kubectl_stdin(&["apply", "-f", "-"], &never).expect_ok();
    // OnFailure: the containers restart in place until the restarts reach the limit.
    let restarts = job(
        "restarts",
        "  backoffLimit: 2\n",
        "OnFailure",
        "sim.kubus.io/run-seconds: '0.2', sim.kubus.io/exit-code: '1'",
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &restarts).expect_ok();
    // Runs for an hour: deleting its Job must take its run (and timer) away.
    let long = job("long", "  parallelism: 3\n  completions: 3\n", "Never", "sim.kubus.io/run-seconds: '3600'");
    c.kubectl_stdin(&["apply", "-f", "-"], &long).expect_ok();

    c.kubectl(&["wait", "--for=condition=failed", "job/fails", "job/restarts", "--timeout=120s"]).expect_ok();
    let fails = c.get_json(&["job", "fails"]);
    assert_eq!(condition(&fails, "Failed").unwrap()["reason"], "BackoffLimitExceeded", "{fails}");
    assert_eq!(fails["status"]["failed"].as_i64(), Some(2), "{fails}");
    let pods = pods_of(&c, "fails");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Failed", "{p}");
        let state = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!((state["exitCode"].as_i64(), state["reason"].as_str()), (Some(3), Some("Error")), "{p}");
    }
    let restarts = c.get_json(&["job", "restarts"]);
    assert_eq!(condition(&restarts, "Failed").unwrap()["reason"], "BackoffLimitExceeded", "{restarts}");
    // One pod, restarted in place; the controller deleted it when the Job failed.
    eventually(30, || pods_of(&c, "restarts").is_empty().then_some(()));

    eventually(30, || {
        let pods = pods_of(&c, "long");
        (pods.len() == 3 && pods.iter().all(|p| p["status"]["phase"] == "Running")).then_some(())
    });
    assert_eq!(run_timers(&c), 3);
    c.kubectl(&["delete", "job", "long", "--cascade=foreground"]).expect_ok();
    eventually(60, || pods_of(&c, "long").is_empty().then_some(()));
    eventually(30, || (run_timers(&c) == 0).then_some(()));
}
