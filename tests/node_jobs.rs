//! Jobs and CronJobs on a real node, driven with kubectl (issue #11): completions and
//! parallelism, Indexed completion, back-off limits, pod failure policies, deadlines,
//! suspension, TTL; schedules, concurrency policies and history limits.

mod common;

use common::{eventually, Cluster};
use serde_json::Value;
use std::time::{Duration, Instant};

fn job(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n        command: [\"sh\", \"-c\", {command:?}]\n"
    )
}

fn pods_of(c: &Cluster, job: &str) -> Vec<Value> {
    let v = c.get_json(&["pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn condition<'a>(job: &'a Value, kind: &str) -> Option<&'a Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

#[test]
fn jobs_complete_in_parallel_indexed_and_imperative_and_expire() {
    let c = Cluster::start_with_node("jobs", &[]);
    let spec = "  completions: 5\n  parallelism: 2\n  ttlSecondsAfterFinished: 4\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &job("five", spec, "echo done; sleep 1")).expect_ok();
    let indexed = "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &job("idx", indexed, "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"))
        .expect_ok();
    c.kubectl(&["create", "job", "hello", "--image=busybox", "--", "echo", "hi from a job"]).expect_ok();

    // Never more than `parallelism` pods of "five" run at once.
    let (mut most, start) = (0, Instant::now());
    while start.elapsed() < Duration::from_secs(120) {
        let running = pods_of(&c, "five")
            .iter()
            .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running")))
            .count();
        most = most.max(running);
        let j = c.get_json(&["job", "five"]);
        if condition(&j, "Complete").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(most <= 2, "{most} pods ran at once");
    c.kubectl(&["wait", "--for=condition=complete", "job/five", "job/idx", "job/hello", "--timeout=120s"]).expect_ok();
    let five = c.get_json(&["job", "five"]);
    assert_eq!((five["status"]["succeeded"].as_i64(), five["status"]["failed"].as_i64()), (Some(5), Some(0)));
    assert!(five["status"]["completionTime"].is_string() && five["status"]["startTime"].is_string());
    assert_eq!(condition(&five, "SuccessCriteriaMet").unwrap()["status"], "True");
    let table = c.kubectl(&["get", "job", "five"]).expect_ok();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[1], row[2]), ("Complete", "5/5"), "{table}");
    // Every pod was counted and let go.
    for p in pods_of(&c, "idx") {
        assert!(p["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()), "{p}");
    }
    assert!(c.kubectl(&["logs", "job/hello"]).expect_ok().contains("hi from a job"));

    // Indexed: each pod saw its own index and hostname.
    let idx = c.get_json(&["job", "idx"]);
    assert_eq!(idx["status"]["completedIndexes"], "0-2");
    let mut seen: Vec<String> = pods_of(&c, "idx")
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap();
            c.kubectl(&["logs", name]).expect_ok().trim().to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["index=0 host=idx-0", "index=1 host=idx-1", "index=2 host=idx-2"]);

    // ttlSecondsAfterFinished: the Job and its pods go.
    eventually(60, || (!c.kubectl(&["get", "job", "five"]).ok && pods_of(&c, "five").is_empty()).then_some(()));
    assert!(c.kubectl(&["get", "job", "idx"]).ok, "a Job without a TTL stays");
}

#[test]
fn jobs_fail_by_backoff_limit_failure_policy_and_deadline_and_suspend() {
    let c = Cluster::start_with_node("jobfail", &[]);
    c.kubectl_stdin(&["apply", "-f", "-"], &job("flaky", "  backoffLimit: 1\n", "echo trying; exit 1")).expect_ok();
    let policy = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: main, operator: In, values: [42]}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &job("fatal", policy, "exit 42")).expect_ok();
    c.kubectl_stdin(&["apply", "-f", "-"], &job("slow", "  activeDeadlineSeconds: 3\n", "sleep 600")).expect_ok();
    c.kubectl_stdin(&["apply", "-f", "-"], &job("later", "  suspend: true\n", "echo resumed")).expect_ok();

    c.kubectl(&["wait", "--for=condition=failed", "job/fatal", "job/slow", "--timeout=60s"]).expect_ok();
    let fatal = c.get_json(&["job", "fatal"]);
    let failed = condition(&fatal, "Failed").unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    assert!(failed["message"].as_str().unwrap().contains("failed with exit code 42 matching FailJob rule at index 0"));
    assert_eq!(fatal["status"]["failed"], 1, "no retry after a FailJob rule");
    let slow = c.get_json(&["job", "slow"]);
    assert_eq!(condition(&slow, "Failed").unwrap()["reason"], "DeadlineExceeded");
    eventually(30, || {
        pods_of(&c, "slow")
            .iter()
            .all(|p| p["status"]["phase"] == "Failed" || p["status"]["phase"] == "Succeeded")
            .then_some(())
    });

    // backoffLimit 1: the second failure fails the Job, after a back-off of about 10 s.
    c.kubectl(&["wait", "--for=condition=failed", "job/flaky", "--timeout=90s"]).expect_ok();
    let flaky = c.get_json(&["job", "flaky"]);
    assert_eq!(condition(&flaky, "Failed").unwrap()["reason"], "BackoffLimitExceeded");
    assert_eq!(condition(&flaky, "Failed").unwrap()["message"], "Job has reached the specified backoff limit");
    assert_eq!(flaky["status"]["failed"], 2);
    let mut created: Vec<String> =
        pods_of(&c, "flaky").iter().map(|p| p["metadata"]["creationTimestamp"].as_str().unwrap().to_string()).collect();
    created.sort();
    assert_eq!(created.len(), 2);
    let at = |s: &str| chrono_secs(s);
    assert!(at(&created[1]) - at(&created[0]) >= 9, "re-created after a back-off: {created:?}");
    let events = c
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=flaky,reason=BackoffLimitExceeded"])
        .expect_ok();
    assert!(events.contains("Job has reached the specified backoff limit"), "{events}");

    // Suspended: no pods until resumed.
    let later = c.get_json(&["job", "later"]);
    assert_eq!(condition(&later, "Suspended").unwrap()["status"], "True");
    assert!(pods_of(&c, "later").is_empty());
    assert!(c.kubectl(&["get", "job", "later"]).expect_ok().contains("Suspended"));
    c.kubectl(&["patch", "job", "later", "--type=merge", "-p", "{\"spec\":{\"suspend\":false}}"]).expect_ok();
    c.kubectl(&["wait", "--for=condition=complete", "job/later", "--timeout=60s"]).expect_ok();
    let later = c.get_json(&["job", "later"]);
    assert_eq!(condition(&later, "Suspended").unwrap()["reason"], "JobResumed");
}

/// Seconds since the epoch of an RFC 3339 UTC time ("2026-12-07T05:00:00Z").
fn chrono_secs(s: &str) -> i64 {
    let t = s.trim_end_matches('Z');
    let (date, time) = t.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let h: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146097 + doe - 719468) * 86400 + h[0] * 3600 + h[1] * 60 + h[2]
}

#[test]
fn bad_jobs_are_refused_with_field_paths() {
    let c = Cluster::start("job-invalid");
    let always = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox}]\n";
    c.kubectl_stdin(&["create", "-f", "-"], always).expect_err(
        "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
    );
    let manual = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  manualSelector: true\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n";
    c.kubectl_stdin(&["create", "-f", "-"], manual).expect_err("`selector` does not match template `labels`");
    let unmanaged = manual.replace("  manualSelector: true\n", "").replace("app: b", "app: a");
    c.kubectl_stdin(&["create", "-f", "-"], &unmanaged).expect_err("spec.selector: Invalid value");
    let indexed = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  completionMode: Indexed\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n";
    c.kubectl_stdin(&["create", "-f", "-"], indexed)
        .expect_err("spec.completions: Required value: when completion mode is Indexed");
    let policy = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: nope, operator: In, values: [0, 3, 2]}\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers: [{name: c, image: busybox}]\n";
    let err = c.kubectl_stdin(&["create", "-f", "-"], policy).expect_err("is invalid");
    for needle in [
        "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
        "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"nope\": must be one of the container or initContainer names in the pod template",
        "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
        "spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Invalid value: 2: must be ordered",
    ] {
        assert!(err.contains(needle), "{needle}\n{err}");
    }
    // A created Job's template is immutable; its generated selector and labels are there.
    let good = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: good}\nspec:\n  suspend: false\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n";
    c.kubectl_stdin(&["create", "-f", "-"], good).expect_ok();
    let j = c.get_json(&["job", "good"]);
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"], "good");
    assert_eq!((j["spec"]["backoffLimit"].as_i64(), j["spec"]["completions"].as_i64()), (Some(6), Some(1)));
    c.kubectl(&["set", "image", "job/good", "c=other"]).expect_err("spec.template: Invalid value");

    let cron = |schedule: &str, tz: &str| {
        format!("apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: c}}\nspec:\n  schedule: '{schedule}'\n{tz}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers: [{{name: c, image: busybox}}]\n")
    };
    c.kubectl_stdin(&["create", "-f", "-"], &cron("0 0 * *", ""))
        .expect_err("spec.schedule: Invalid value: \"0 0 * *\": expected exactly 5 fields, found 4: [0 0 * *]");
    c.kubectl_stdin(&["create", "-f", "-"], &cron("CRON_TZ=UTC 0 0 * * *", ""))
        .expect_err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead");
    c.kubectl_stdin(&["create", "-f", "-"], &cron("@hourly", "  timeZone: Mars/Olympus\n"))
        .expect_err("spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus");
    c.kubectl_stdin(&["create", "-f", "-"], &cron("@hourly", "  timeZone: Europe/Berlin\n")).expect_ok();
    let table = c.kubectl(&["get", "cj", "c"]).expect_ok();
    assert!(table.contains("@hourly") && table.contains("Europe/Berlin"), "{table}");
    // kubectl's generators send protobuf.
    c.kubectl(&["create", "cronjob", "imperative", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"])
        .expect_ok();
    let cj = c.get_json(&["cj", "imperative"]);
    assert_eq!(
        (cj["spec"]["schedule"].as_str(), cj["spec"]["concurrencyPolicy"].as_str()),
        (Some("*/5 * * * *"), Some("Allow"))
    );
    assert_eq!(cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"], "OnFailure");
}

fn cron_job(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec:\n  schedule: '* * * * *'\n{spec}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: main\n            image: busybox\n            command: [\"sh\", \"-c\", {command:?}]\n"
    )
}

fn jobs_of(c: &Cluster, cronjob: &str) -> Vec<Value> {
    let v = c.get_json(&["jobs"]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| {
            j["metadata"]["ownerReferences"][0]["name"] == cronjob && j["metadata"]["deletionTimestamp"].is_null()
        })
        .cloned()
        .collect()
}

#[test]
fn cronjobs_run_every_minute_forbid_overlap_and_prune_history() {
    let c = Cluster::start_with_node("cron", &[]);
    c.kubectl_stdin(&["apply", "-f", "-"], &cron_job("tick", "  successfulJobsHistoryLimit: 2\n", "echo tick"))
        .expect_ok();
    c.kubectl_stdin(&["apply", "-f", "-"], &cron_job("long", "  concurrencyPolicy: Forbid\n", "sleep 600")).expect_ok();
    let table = c.kubectl(&["get", "cronjob", "tick"]).expect_ok();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..9], ["tick", "*", "*", "*", "*", "*", "<none>", "False", "0"], "{table}");

    // A Job within the minute, named for its scheduled minute and stamped with the time.
    let first = eventually(75, || jobs_of(&c, "tick").first().cloned());
    let name = first["metadata"]["name"].as_str().unwrap().to_string();
    let minutes: i64 = name.rsplit('-').next().unwrap().parse().unwrap();
    let stamp = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap();
    assert_eq!(chrono_secs(stamp), minutes * 60, "{stamp}");
    c.kubectl(&["wait", "--for=condition=complete", &format!("job/{name}"), "--timeout=60s"]).expect_ok();
    // By hand, from the CronJob's template.
    c.kubectl(&["create", "job", "--from=cronjob/tick", "tick-manual"]).expect_ok();
    c.kubectl(&["wait", "--for=condition=complete", "job/tick-manual", "--timeout=60s"]).expect_ok();

    // The next minute: a second scheduled Job; the history keeps two successes (the manual one
    // and the newest), so the first scheduled one goes.
    eventually(90, || {
        let tick = c.get_json(&["cronjob", "tick"]);
        let scheduled = tick["status"]["lastScheduleTime"].as_str().map(chrono_secs).unwrap_or(0);
        (scheduled >= (minutes + 1) * 60 && tick["status"]["lastSuccessfulTime"].is_string()).then_some(())
    });
    eventually(60, || {
        let jobs = jobs_of(&c, "tick");
        let done = jobs.iter().filter(|j| condition(j, "Complete").is_some()).count();
        let running = jobs.len() - done;
        (done <= 2 && running == 0 && jobs.len() == 2).then_some(())
    });
    let pruned = c
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=tick,reason=SuccessfulDelete"])
        .expect_ok();
    let kept: Vec<String> = jobs_of(&c, "tick")
        .iter()
        .map(|j| format!("{} started {}", j["metadata"]["name"], j["status"]["startTime"]))
        .collect();
    assert!(pruned.contains(&format!("Deleted job {name}")), "{pruned}\nkept: {kept:?}");

    // Forbid: the long Job is still running, so no second one starts.
    let long = jobs_of(&c, "long");
    assert_eq!(long.len(), 1, "{long:?}");
    let cj = c.get_json(&["cronjob", "long"]);
    assert_eq!(cj["status"]["active"].as_array().map(Vec::len), Some(1));
    let skipped = c
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=long,reason=JobAlreadyActive"])
        .expect_ok();
    assert!(
        skipped.contains("Not starting job because prior execution is running and concurrency policy is Forbid"),
        "{skipped}"
    );
}

#[test]
fn job_counts_survive_a_control_plane_restart() {
    let mut c = Cluster::start_with_node("jobrestart", &[]);
    let spec = "  completions: 6\n  parallelism: 2\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &job("steady", spec, "sleep 2")).expect_ok();
    // Restart the whole control plane (and its node agent) while pods run and some are done.
    eventually(60, || (c.get_json(&["job", "steady"])["status"]["succeeded"].as_i64().unwrap_or(0) >= 2).then_some(()));
    c.restart();
    c.kubectl(&["wait", "--for=condition=complete", "job/steady", "--timeout=120s"]).expect_ok();
    let j = c.get_json(&["job", "steady"]);
    let states: Vec<String> = pods_of(&c, "steady")
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p["metadata"]["name"], p["status"]["phase"], p["status"]["containerStatuses"][0]["state"]
            )
        })
        .collect();
    assert_eq!(
        (j["status"]["succeeded"].as_i64(), j["status"]["failed"].as_i64()),
        (Some(6), Some(0)),
        "{j}\n{states:#?}"
    );
    // Nothing counted twice, nothing run twice: one pod per completion, all let go.
    let pods = pods_of(&c, "steady");
    assert_eq!(pods.len(), 6, "{pods:?}");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert!(p["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()));
    }
    let uncounted = &j["status"]["uncountedTerminatedPods"];
    assert!(
        uncounted.is_null()
            || uncounted.as_object().is_some_and(|u| u.values().all(|v| v.as_array().is_none_or(|a| a.is_empty()))),
        "{uncounted}"
    );
}
