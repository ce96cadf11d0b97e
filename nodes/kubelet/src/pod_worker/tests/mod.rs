//! The pod worker's logic against fakes (no root, no NATS): the order of the sync steps and of
//! init containers, restart policies and back-off, probe-driven readiness and restarts,
//! termination with grace periods, status written only on change, adoption after a restart.

mod fakes;

use super::{PodState, PodWorker, WorkerMsg};
use crate::context::PodHandle;
use crate::probes::{ProbeKind, ProbeUpdate};
use fakes::Node;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kubus_apimachinery::conditions;
use kubus_controller_runtime::events::EventType;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

const UID: &str = "uid-1";

/// Pod `default/web` bound to node-1 with this spec.
fn pod(spec: Value) -> Arc<Pod> {
    let v = json!({"metadata": {"name": "web", "namespace": "default", "uid": UID}, "spec": spec});
    let mut pod: Pod = serde_json::from_value(v).unwrap();
    pod.spec.get_or_insert_with(Default::default).node_name = Some("node-1".into());
    Arc::new(pod)
}

/// A container running `sh` from busybox.
fn container(name: &str) -> Value {
    json!({"name": name, "image": "busybox", "command": ["sh", "-c", "sleep 3600"]})
}

fn worker(node: &Node, pod: Arc<Pod>) -> PodWorker {
    PodWorker::new(node.host.clone(), pod, Arc::new(PodHandle::default())).0
}

/// The pod as the API would show it after the worker's last status write.
fn with_status(pod: &Pod, status: PodStatus) -> Arc<Pod> {
    Arc::new(Pod { status: Some(status), ..pod.clone() })
}

/// Ends the container's run with `code` and lets the worker take the exit in.
async fn exit(node: &Node, w: &mut PodWorker, name: &str, code: i32) {
    node.runtime.exit(name, code);
    next_message(w).await;
}

/// Handles the next message the worker gets (an exit its watcher saw).
async fn next_message(w: &mut PodWorker) {
    let m = w.rx.recv().await.expect("the worker's channel is open");
    w.on_message(m).await;
}

fn status_of<'a>(status: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no status of {name}"))
}

fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn condition<'a>(status: &'a PodStatus, kind: &str) -> Option<&'a str> {
    conditions::status(status.conditions.as_ref(), kind)
}

#[tokio::test]
async fn sync_steps_run_in_order_and_init_containers_one_at_a_time() {
    let node = Node::new();
    let mut w = worker(
        &node,
        pod(json!({"initContainers": [container("first"), container("second")], "containers": [container("app")],
            "volumes": [{"name": "scratch", "emptyDir": {}}]})),
    );
    w.sync().await.unwrap();
    let log = &node.log;
    assert!(log.first("sandbox create") < log.first(&format!("cgroup create /kubus/besteffort/pod{UID}")));
    assert!(log.first(&format!("cgroup create /kubus/besteffort/pod{UID}")) < log.first("create first"));
    assert!(node.host.pod_dir(UID).join("volumes/scratch").is_dir(), "volumes before containers");
    assert_eq!((log.count("start first"), log.count("create second"), log.count("create app")), (1, 0, 0));
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&status, "Initialized"), Some("False"));
    assert_eq!(waiting_reason(status_of(&status, "app")), Some("PodInitializing"));

    // Nothing new while the first one runs.
    w.sync().await.unwrap();
    assert_eq!(log.count("create second"), 0);
    exit(&node, &mut w, "first", 0).await;
    w.sync().await.unwrap();
    assert_eq!((log.count("create second"), log.count("create app")), (1, 0));
    exit(&node, &mut w, "second", 0).await;
    w.sync().await.unwrap();
    assert_eq!((log.count("create first"), log.count("create app")), (1, 1), "completed init containers stay done");
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&status, "Initialized"), Some("True"));
    let first = status_of(&status, "first").state.clone().unwrap().terminated.unwrap();
    assert_eq!((first.exit_code, first.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(condition(&status, "Ready"), Some("True"), "no readiness probe: ready once running");
}

#[tokio::test]
async fn a_failed_init_container_fails_the_pod_under_restart_policy_never() {
    let node = Node::new();
    let spec =
        json!({"restartPolicy": "Never", "initContainers": [container("setup")], "containers": [container("app")]});
    let mut w = worker(&node, pod(spec));
    w.sync().await.unwrap();
    exit(&node, &mut w, "setup", 1).await;
    w.sync().await.unwrap();
    assert_eq!(w.state(), PodState::Finished);
    assert_eq!(node.log.count("create setup"), 1, "not retried");
    assert_eq!(node.log.count("create app"), 0);
    w.report().await;
    assert_eq!(node.api.last_status().phase.as_deref(), Some("Failed"));
}

#[tokio::test]
async fn restart_policies_decide_what_runs_again() {
    // (policy, exit code, restarted, phase)
    let cases = [
        ("Always", 0, true, "Running"),
        ("Always", 1, true, "Running"),
        ("OnFailure", 0, false, "Succeeded"),
        ("OnFailure", 1, true, "Running"),
        ("Never", 0, false, "Succeeded"),
        ("Never", 1, false, "Failed"),
    ];
    for (policy, code, restarted, phase) in cases {
        let node = Node::new();
        let mut w = worker(&node, pod(json!({"restartPolicy": policy, "containers": [container("app")]})));
        w.sync().await.unwrap();
        exit(&node, &mut w, "app", code).await;
        w.sync().await.unwrap();
        let creates = if restarted { 2 } else { 1 };
        assert_eq!(node.log.count("create app"), creates, "{policy} after exit {code}");
        w.report().await;
        let status = node.api.last_status();
        assert_eq!(status.phase.as_deref(), Some(phase), "{policy} after exit {code}");
        let app = status_of(&status, "app");
        assert_eq!(app.restart_count, if restarted { 1 } else { 0 }, "{policy} after exit {code}");
        if restarted {
            let last = app.last_state.clone().unwrap().terminated.expect("the last run is the last state");
            assert_eq!(last.exit_code, code);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn crashing_containers_back_off_from_10_seconds_doubling() {
    let node = Node::new();
    let mut w = worker(&node, pod(json!({"containers": [container("app")]})));
    w.sync().await.unwrap();
    exit(&node, &mut w, "app", 1).await;
    w.sync().await.unwrap();
    assert_eq!(node.log.count("create app"), 2, "the first restart is immediate");
    exit(&node, &mut w, "app", 1).await;
    w.sync().await.unwrap();
    w.sync().await.unwrap();
    assert_eq!(node.log.count("create app"), 2, "then it waits");
    w.report().await;
    let status = node.api.last_status();
    let app = status_of(&status, "app");
    assert_eq!(waiting_reason(app), Some("CrashLoopBackOff"));
    let message = app.state.clone().unwrap().waiting.unwrap().message.unwrap();
    assert_eq!(message, format!("back-off 10s restarting failed container=app pod=web_default({UID})"));
    assert_eq!(app.last_state.clone().unwrap().terminated.unwrap().exit_code, 1);
    assert_eq!(status.phase.as_deref(), Some("Running"), "it ran before: the pod is Running");
    let backoffs = node.api.events("BackOff");
    assert_eq!(backoffs.len(), 1, "one event per back-off, not per sync");
    assert_eq!(
        backoffs[0],
        (EventType::Warning, format!("Back-off restarting failed container app in pod web_default({UID})"))
    );
    assert!(w.next_wakeup() <= Instant::now() + Duration::from_secs(10), "the worker wakes when it ends");

    tokio::time::advance(Duration::from_secs(10)).await;
    w.sync().await.unwrap();
    assert_eq!(node.log.count("create app"), 3);
    exit(&node, &mut w, "app", 1).await;
    w.sync().await.unwrap();
    w.report().await;
    let app = status_of(&node.api.last_status(), "app").clone();
    assert_eq!(app.restart_count, 2);
    let message = app.state.unwrap().waiting.unwrap().message.unwrap();
    assert!(message.starts_with("back-off 20s"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn image_pulls_back_off_but_never_pull_keeps_its_reason() {
    let node = Node::new();
    node.images.offline.store(true, Ordering::SeqCst);
    let mut w = worker(&node, pod(json!({"containers": [{"name": "app", "image": "registry.example/app:1"}]})));
    w.sync().await.unwrap();
    w.report().await;
    assert_eq!(waiting_reason(status_of(&node.api.last_status(), "app")), Some("ErrImagePull"));
    let failed = node.api.events("Failed");
    assert!(failed[0].1.starts_with("Failed to pull image \"registry.example/app:1\""), "{failed:?}");
    assert_eq!(failed[1].1, "Error: ErrImagePull");
    assert_eq!(node.api.events("Pulling").len(), 1);
    w.sync().await.unwrap();
    w.sync().await.unwrap();
    w.report().await;
    let app = status_of(&node.api.last_status(), "app").clone();
    assert_eq!(waiting_reason(&app), Some("ImagePullBackOff"));
    assert_eq!(
        app.state.unwrap().waiting.unwrap().message.as_deref(),
        Some("Back-off pulling image \"registry.example/app:1\"")
    );
    assert_eq!(node.api.events("Pulling").len(), 2, "the second pull was immediate, the third waits");
    assert_eq!(node.log.count("create app"), 0);

    let node = Node::new();
    let mut w =
        worker(&node, pod(json!({"containers": [{"name": "app", "image": "app:1", "imagePullPolicy": "Never"}]})));
    for _ in 0..3 {
        w.sync().await.unwrap();
    }
    w.report().await;
    assert_eq!(waiting_reason(status_of(&node.api.last_status(), "app")), Some("ErrImageNeverPull"));
    assert_eq!(node.api.events("ErrImageNeverPull").len(), 3, "re-checked at every sync, no back-off");
    assert!(node.api.events("Pulling").is_empty(), "Never announces no pull");
    node.images.add("app:1");
    w.sync().await.unwrap();
    assert_eq!(node.log.count("start app"), 1, "the image arrived: it starts at once");
}

#[tokio::test]
async fn a_container_that_cannot_be_created_waits_with_the_runtimes_reason() {
    let node = Node::new();
    node.runtime.fail_create("app");
    let mut w = worker(&node, pod(json!({"containers": [container("app")]})));
    w.sync().await.unwrap();
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(waiting_reason(status_of(&status, "app")), Some("CreateContainerError"));
    assert_eq!(node.log.count("start app"), 0);
    assert!(node.log.first("mount rootfs") < node.log.first("unmount rootfs"), "its rootfs does not stay mounted");
    assert_eq!(node.api.events("Created").len(), 0);
}

#[tokio::test]
async fn a_missing_config_map_is_a_config_error_until_it_appears() {
    let node = Node::new();
    let mut app = container("app");
    app["env"] = json!([{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]);
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    w.sync().await.unwrap();
    w.report().await;
    let app = status_of(&node.api.last_status(), "app").clone();
    assert_eq!(waiting_reason(&app), Some("CreateContainerConfigError"));
    assert_eq!(app.state.unwrap().waiting.unwrap().message.as_deref(), Some("configmap \"settings\" not found"));
    let cm = serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"mode": "fast"}})).unwrap();
    node.api.config_maps.lock().unwrap().insert(("default".into(), "settings".into()), cm);
    w.sync().await.unwrap();
    assert_eq!(node.log.count("start app"), 1, "no back-off for configuration errors");
}

#[tokio::test]
async fn readiness_follows_the_readiness_probe() {
    let node = Node::new();
    let mut app = container("app");
    // The prober itself stays idle: this test hands the worker its results.
    app["readinessProbe"] = json!({"exec": {"command": ["true"]}, "initialDelaySeconds": 3600});
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    w.sync().await.unwrap();
    w.report().await;
    let status = node.api.last_status();
    assert_eq!((status_of(&status, "app").ready, condition(&status, "Ready")), (false, Some("False")));
    let id = node.runtime.running("app").unwrap();
    let update = |success: bool| ProbeUpdate {
        container: "app".into(),
        container_id: id.clone(),
        kind: ProbeKind::Readiness,
        success,
        message: if success { String::new() } else { "command exited with 1".into() },
    };
    w.on_probe(update(true)).await;
    w.report().await;
    let status = node.api.last_status();
    assert!(status_of(&status, "app").ready);
    assert_eq!((condition(&status, "Ready"), condition(&status, "ContainersReady")), (Some("True"), Some("True")));
    w.on_probe(update(false)).await;
    w.report().await;
    assert_eq!(condition(&node.api.last_status(), "Ready"), Some("False"));
    assert_eq!(
        node.api.events("Unhealthy"),
        [(EventType::Warning, "Readiness probe failed: command exited with 1".to_string())]
    );
    // A result about an older run of the container is ignored.
    w.on_probe(ProbeUpdate { container_id: "old-run".into(), ..update(true) }).await;
    w.report().await;
    assert_eq!(condition(&node.api.last_status(), "Ready"), Some("False"));
}

#[tokio::test(start_paused = true)]
async fn exec_probes_run_through_the_runtime_and_report_to_the_worker() {
    let node = Node::new();
    let mut app = container("app");
    app["readinessProbe"] =
        json!({"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1});
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    w.sync().await.unwrap();
    let ready = w.probe_rx.recv().await.unwrap();
    assert_eq!((ready.kind, ready.success), (ProbeKind::Readiness, true));
    w.on_probe(ready).await;
    assert!(w.records["app"].current.as_ref().unwrap().ready);
    node.runtime.set_exec("app", 1, "cat: can't open '/tmp/ready'");
    let failed = w.probe_rx.recv().await.unwrap();
    assert!(!failed.success);
    assert_eq!(failed.message, "command exited with 1: cat: can't open '/tmp/ready'");
    w.on_probe(failed).await;
    assert!(!w.records["app"].current.as_ref().unwrap().ready);
}

#[tokio::test(start_paused = true)]
async fn a_failed_liveness_probe_restarts_the_container() {
    let node = Node::new();
    let mut app = container("app");
    app["livenessProbe"] = json!({"exec": {"command": ["healthy"]}, "initialDelaySeconds": 3600});
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    w.sync().await.unwrap();
    let id = node.runtime.running("app").unwrap();
    let update = ProbeUpdate {
        container: "app".into(),
        container_id: id,
        kind: ProbeKind::Liveness,
        success: false,
        message: "HTTP probe failed with statuscode: 500".into(),
    };
    w.on_probe(update).await;
    assert_eq!(node.log.count("kill app 15"), 1);
    assert_eq!(node.api.events("Unhealthy")[0].1, "Liveness probe failed: HTTP probe failed with statuscode: 500");
    assert_eq!(node.api.events("Killing")[0].1, "Container app failed liveness probe, will be restarted");
    next_message(&mut w).await;
    w.sync().await.unwrap();
    assert_eq!(node.log.count("start app"), 2);
    w.report().await;
    let app = status_of(&node.api.last_status(), "app").clone();
    assert_eq!(app.restart_count, 1);
    assert_eq!(app.last_state.unwrap().terminated.unwrap().exit_code, 143, "it ended by SIGTERM");
}

#[tokio::test]
async fn a_startup_probe_holds_back_started_and_ready() {
    let node = Node::new();
    let mut app = container("app");
    app["startupProbe"] = json!({"tcpSocket": {"port": 8080}, "initialDelaySeconds": 3600});
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    w.sync().await.unwrap();
    w.report().await;
    let status = node.api.last_status();
    assert_eq!((status_of(&status, "app").started, status_of(&status, "app").ready), (Some(false), false));
    let id = node.runtime.running("app").unwrap();
    let started = ProbeUpdate {
        container: "app".into(),
        container_id: id,
        kind: ProbeKind::Startup,
        success: true,
        message: String::new(),
    };
    w.on_probe(started).await;
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(
        (status_of(&status, "app").started, status_of(&status, "app").ready),
        (Some(true), true),
        "no readiness probe: ready once started"
    );
}

#[tokio::test]
async fn sidecars_keep_running_and_let_the_containers_start() {
    let node = Node::new();
    let mut sidecar = container("proxy");
    sidecar["restartPolicy"] = json!("Always");
    let mut w = worker(&node, pod(json!({"initContainers": [sidecar], "containers": [container("app")]})));
    w.sync().await.unwrap();
    assert_eq!(node.log.count("create app"), 0, "the sidecar starts first");
    w.sync().await.unwrap();
    assert_eq!(node.log.count("create app"), 1, "a started sidecar does not block the containers");
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(condition(&status, "Initialized"), Some("True"));
    assert!(status_of(&status, "proxy").state.clone().unwrap().running.is_some());
    exit(&node, &mut w, "proxy", 1).await;
    w.sync().await.unwrap();
    assert_eq!(node.log.count("create proxy"), 2, "a sidecar is restarted whatever the pod's policy");
}

/// Reports, then shows the worker its pod as the API now has it (as the informer would).
async fn report_and_echo(node: &Node, w: &mut PodWorker) {
    w.report().await;
    if node.api.writes() > 0 {
        let echoed = with_status(&w.pod, node.api.last_status());
        w.on_message(WorkerMsg::Update(echoed)).await;
    }
}

#[tokio::test]
async fn status_is_written_only_when_it_changes() {
    let node = Node::new();
    let mut w = worker(&node, pod(json!({"containers": [container("app")]})));
    w.sync().await.unwrap();
    report_and_echo(&node, &mut w).await;
    w.sync().await.unwrap();
    report_and_echo(&node, &mut w).await;
    assert_eq!(node.api.writes(), 1, "nothing changed");
    let written = node.api.last_status();
    assert_eq!(written.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(written.pod_ip.as_deref(), Some("10.244.0.5"));
    assert_eq!(written.host_ip.as_deref(), Some("192.168.1.10"));

    // The node lifecycle controller marked the pod not ready while the node was unreachable:
    // the kubelet's view is written back although its own did not change.
    let mut overwritten = written.clone();
    for c in overwritten.conditions.iter_mut().flatten().filter(|c| c.type_ == "Ready") {
        c.status = "False".into();
    }
    w.on_message(WorkerMsg::Update(with_status(&w.pod, overwritten))).await;
    report_and_echo(&node, &mut w).await;
    assert_eq!(node.api.writes(), 2);
    report_and_echo(&node, &mut w).await;
    assert_eq!(node.api.writes(), 2, "the API agrees again");

    exit(&node, &mut w, "app", 0).await;
    report_and_echo(&node, &mut w).await;
    assert_eq!(node.api.writes(), 3, "an exit is a change");

    // The recorded QoS class is the one reported, whatever the spec says.
    let mut recorded = (*w.pod).clone();
    recorded.status.get_or_insert_with(Default::default).qos_class = Some("Burstable".into());
    w.on_message(WorkerMsg::Update(Arc::new(recorded))).await;
    w.report().await;
    assert_eq!(node.api.last_status().qos_class.as_deref(), Some("Burstable"));

    // A pod the API no longer has is torn down.
    node.api.gone.store(true, Ordering::SeqCst);
    w.sync().await.unwrap();
    assert!(node.runtime.running("app").is_some(), "restarted: a change to report");
    w.report().await;
    assert_eq!(w.state(), PodState::Terminating);
}

#[tokio::test(start_paused = true)]
async fn termination_stops_containers_within_the_grace_period_then_tears_down_in_order() {
    let node = Node::new();
    let pod =
        pod(json!({"terminationGracePeriodSeconds": 30, "containers": [container("quick"), container("stubborn")]}));
    let mut w = worker(&node, pod.clone());
    w.sync().await.unwrap();
    node.runtime.ignore_sigterm("stubborn");
    let mut deleting = (*pod).clone();
    deleting.metadata.deletion_timestamp = Some(kubus_apimachinery::time::now());
    deleting.metadata.deletion_grace_period_seconds = Some(5);
    w.on_message(WorkerMsg::Update(Arc::new(deleting))).await;
    assert_eq!(w.state(), PodState::Terminating);
    let t0 = Instant::now();
    w.terminate().await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(30), "the deletion's grace period: {took:?}");
    let log = &node.log;
    assert!(log.first("kill stubborn 15") < log.first("kill stubborn 9"), "SIGTERM, then SIGKILL");
    assert!(log.first("kill quick 15") < log.first("kill stubborn 9"), "every container gets SIGTERM first");
    assert_eq!(log.count("kill quick 9"), 0, "a container that stopped in time is not killed");
    let first_remove = log.first("remove quick").min(log.first("remove stubborn"));
    let last_remove = log.last("remove quick").max(log.last("remove stubborn"));
    assert!(first_remove < log.first("unmount rootfs"), "a container, then its rootfs");
    assert!(last_remove < log.first("sandbox remove"), "every container before the sandbox");
    assert!(log.last("unmount rootfs") < log.first("sandbox remove"), "then the sandbox");
    assert!(log.first("sandbox remove") < log.first("cgroup remove"), "then the pod cgroup");
    assert!(log.last("cgroup remove") < log.last("status"), "the final status");
    assert!(log.last("status") < log.first(&format!("delete pod {UID}")), "and the pod object goes last");
    assert!(node.runtime.bundles().is_empty(), "no container is left");
    assert!(!node.host.pod_dir(UID).exists(), "nor the pod dir");
    let stopping: Vec<String> = node.api.events("Killing").into_iter().map(|(_, m)| m).collect();
    assert!(stopping.contains(&"Stopping container stubborn".to_string()));
    let status = node.api.last_status();
    let stubborn = status_of(&status, "stubborn").state.clone().unwrap().terminated.unwrap();
    assert_eq!(stubborn.exit_code, 137);
}

#[tokio::test(start_paused = true)]
async fn a_pod_removed_from_the_node_is_torn_down_but_not_deleted() {
    let node = Node::new();
    let (mut w, tx) = PodWorker::new(
        node.host.clone(),
        pod(json!({"containers": [container("app")]})),
        Arc::new(PodHandle::default()),
    );
    w.sync().await.unwrap();
    tx.send(WorkerMsg::Removed).unwrap();
    // The whole loop: the message turns the worker to Terminating; it then ends.
    tokio::time::timeout(Duration::from_secs(60), w.run()).await.expect("the worker ends");
    assert_eq!(node.log.count("kill app 15"), 1);
    assert_eq!(node.log.count("remove app"), 1);
    assert!(!node.log.entries().iter().any(|e| e.starts_with("delete pod")), "the object is not ours to delete");
}

#[tokio::test]
async fn a_finished_pod_releases_what_it_holds_and_keeps_its_logs() {
    let node = Node::new();
    let mut w = worker(&node, pod(json!({"restartPolicy": "Never", "containers": [container("job")]})));
    w.sync().await.unwrap();
    exit(&node, &mut w, "job", 0).await;
    w.sync().await.unwrap();
    w.report().await;
    let done = node.api.last_status();
    assert_eq!(done.phase.as_deref(), Some("Succeeded"));
    w.on_message(WorkerMsg::Update(with_status(&w.pod, done))).await;
    assert_eq!(w.state(), PodState::Finished);
    w.release_finished().await.unwrap();
    assert_eq!(node.log.count("remove job"), 1);
    assert!(node.log.count("sandbox remove") >= 1 && node.log.count("cgroup remove") >= 1);
    assert!(node.runtime.bundles().is_empty());
    assert!(node.host.pod_log_dir("default", "web", UID).join("job").is_dir(), "logs stay for kubectl logs");
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    assert_eq!(status_of(&status, "job").state.clone().unwrap().terminated.unwrap().exit_code, 0);
}

#[tokio::test]
async fn a_restarted_agent_adopts_running_containers_without_restarting_them() {
    let node = Node::new();
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let labels = [
        (crate::LABEL_POD_UID, UID),
        (crate::LABEL_POD_NAMESPACE, "default"),
        (crate::LABEL_POD_NAME, "web"),
        (crate::LABEL_CONTAINER, "app"),
        (crate::LABEL_ATTEMPT, "2"),
        (crate::LABEL_IMAGE, "busybox"),
        (crate::LABEL_IMAGE_ID, "busybox@sha256:d"),
    ];
    node.runtime.add_running("run-2", &labels, started_at);
    node.sandboxes.add(UID, &node.host.pod_dir(UID));
    // What the API heard before the restart.
    let mut before = (*pod(json!({"containers": [container("app")]}))).clone();
    before.status = Some(
        serde_json::from_value(json!({"startTime": "2023-11-14T22:00:00Z",
        "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": true, "restartCount": 2,
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "containerID": "kubus://run-1"}}}]}))
        .unwrap(),
    );
    let mut w = worker(&node, Arc::new(before));
    let found = crate::host::ContainerRuntime::list(node.runtime.as_ref()).await.unwrap();
    w.adopt(found).await;
    w.sync().await.unwrap();
    assert_eq!(node.log.count("sandbox create"), 0, "the sandbox is found again");
    assert_eq!(node.log.count("create app"), 0, "nothing running is restarted");
    w.report().await;
    let status = node.api.last_status();
    let app = status_of(&status, "app");
    assert_eq!(app.restart_count, 2);
    assert_eq!(app.container_id.as_deref(), Some("kubus://run-2"));
    let running = app.state.clone().unwrap().running.unwrap();
    assert_eq!(running.started_at, Some(kubus_apimachinery::time::time(started_at)), "its real start time");
    assert_eq!(app.last_state.clone().unwrap().terminated.unwrap().container_id.as_deref(), Some("kubus://run-1"));
    assert_eq!(status.start_time.unwrap().0.to_rfc3339(), "2023-11-14T22:00:00+00:00");
    // Its exit is still watched: it restarts as the next attempt.
    exit(&node, &mut w, "app", 1).await;
    w.sync().await.unwrap();
    w.report().await;
    assert_eq!(status_of(&node.api.last_status(), "app").restart_count, 3);
}

#[tokio::test]
async fn no_pod_network_yet_is_a_retried_sync_error() {
    let node = Node::new();
    node.sandboxes.not_ready.store(true, Ordering::SeqCst);
    let mut w = worker(&node, pod(json!({"containers": [container("app")]})));
    let err = w.sync().await.unwrap_err();
    assert_eq!(err.to_string(), "the node has no pod CIDR yet");
    assert!(node.api.events("FailedCreatePodSandBox").is_empty(), "waiting for a CIDR is no sandbox failure");
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(
        (condition(&status, "PodReadyToStartContainers"), status.phase.as_deref()),
        (Some("False"), Some("Pending"))
    );
    node.sandboxes.not_ready.store(false, Ordering::SeqCst);
    w.sync().await.unwrap();
    assert_eq!(node.log.count("start app"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_start_hook_kills_the_container_which_restarts_by_policy() {
    let node = Node::new();
    let mut app = container("app");
    app["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}});
    app["readinessProbe"] = json!({"exec": {"command": ["ready"]}});
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    node.runtime.set_exec("app", 3, "oops");
    w.sync().await.unwrap();
    let log = &node.log;
    assert!(log.first("start app") < log.first("exec app sh -c exit 3"), "the hook runs after the start");
    assert!(log.first("exec app sh -c exit 3") < log.first("kill app 15"), "a failed hook kills the container");
    let failed = node.api.events("FailedPostStartHook");
    assert_eq!(
        failed,
        vec![(
            EventType::Warning,
            format!(
                "Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"web_default({UID})\" failed - \
                 error: command 'sh -c exit 3' exited with 3: oops, message: \"oops\""
            )
        )]
    );
    assert_eq!(node.api.events("Killing")[0].1, "FailedPostStartHook");
    assert!(w.records["app"].current.as_ref().unwrap().probes.is_empty(), "no probes for a killed run");
    w.report().await;
    let status = status_of(&node.api.last_status(), "app").clone();
    assert_eq!(status.state.unwrap().terminated.unwrap().exit_code, 143);
    assert_eq!(status.started, Some(false));
    // Restart policy Always: it runs again (and the hook with it).
    w.sync().await.unwrap();
    assert_eq!(log.count("start app"), 2);
    assert_eq!(log.count("exec app sh -c exit 3"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_passing_post_start_hook_comes_before_started_and_the_probes() {
    let node = Node::new();
    let mut app = container("app");
    app["lifecycle"] = json!({"postStart": {"sleep": {"seconds": 2}}});
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    let t0 = Instant::now();
    w.sync().await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(2), "the sync waited for the hook");
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(status_of(&status, "app").started, Some(true));
    assert_eq!(condition(&status, "Ready"), Some("True"));
    assert!(node.api.events("FailedPostStartHook").is_empty());
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_before_sigterm_and_takes_from_the_grace_period() {
    let node = Node::new();
    let mut app = container("app");
    app["lifecycle"] = json!({"preStop": {"sleep": {"seconds": 3}}});
    let mut logger = container("logger");
    logger["lifecycle"] = json!({"preStop": {"exec": {"command": ["flush"]}}});
    let pod = pod(json!({"terminationGracePeriodSeconds": 6, "containers": [app, logger]}));
    let mut w = worker(&node, pod.clone());
    w.sync().await.unwrap();
    node.runtime.ignore_sigterm("app");
    node.runtime.set_exec("logger", 1, "disk full");
    let mut deleting = (*pod).clone();
    deleting.metadata.deletion_timestamp = Some(kubus_apimachinery::time::now());
    w.on_message(WorkerMsg::Update(Arc::new(deleting))).await;
    let t0 = Instant::now();
    w.terminate().await;
    let took = t0.elapsed();
    // 3 s of hook, then the 3 s left of the grace period before SIGKILL.
    assert!(took >= Duration::from_secs(6) && took < Duration::from_secs(7), "{took:?}");
    let log = &node.log;
    assert!(log.first("exec logger flush") < log.first("kill logger 15"), "the hook before the signal");
    assert!(log.first("kill app 15") < log.first("kill app 9"));
    let failed = node.api.events("FailedPreStopHook");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.starts_with("Exec lifecycle hook ([flush]) for Container \"logger\""), "{}", failed[0].1);
}

#[tokio::test(start_paused = true)]
async fn an_active_deadline_fails_the_pod_and_stops_its_containers() {
    let node = Node::new();
    let mut w = worker(&node, pod(json!({"activeDeadlineSeconds": 3, "containers": [container("app")]})));
    w.sync().await.unwrap();
    w.check_active_deadline().await;
    assert_eq!(w.state(), PodState::Syncing, "not yet");
    assert!(w.next_wakeup() <= Instant::now() + Duration::from_secs(3), "the worker wakes for the deadline");
    // Active since 4 s ago.
    w.start_time = Some(SystemTime::now() - Duration::from_secs(4));
    w.check_active_deadline().await;
    assert_eq!(w.state(), PodState::Finished);
    w.release_finished().await.unwrap();
    assert_eq!(node.log.count("kill app 15"), 1);
    w.report().await;
    let status = node.api.last_status();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(status.message.as_deref(), Some("Pod was active on the node longer than the specified deadline"));
    assert_eq!(node.api.events("DeadlineExceeded").len(), 1);
    assert!(status_of(&status, "app").state.clone().unwrap().terminated.is_some());
}

#[tokio::test]
async fn pulls_use_the_pods_image_pull_secrets_or_its_service_accounts() {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let node = Node::new();
    *node.images.requires_user.lock().unwrap() = Some("alice".into());
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64_of(r#"{"auths": {"registry.example": {"username": "alice", "password": "pw"}}}"#)}}))
    .unwrap();
    let app = json!({"name": "app", "image": "registry.example/app:1", "command": ["sleep", "1"]});
    // Without credentials the registry refuses.
    let mut w = worker(&node, pod(json!({"containers": [app.clone()]})));
    w.sync().await.unwrap();
    w.report().await;
    assert_eq!(waiting_reason(status_of(&node.api.last_status(), "app")), Some("ErrImagePull"));
    // A secret that does not exist (yet) is named in an event; the pull goes on without it.
    let mut w = worker(&node, pod(json!({"imagePullSecrets": [{"name": "regcred"}], "containers": [app.clone()]})));
    w.sync().await.unwrap();
    let missing = node.api.events("FailedToRetrieveImagePullSecret");
    assert_eq!(
        missing[0].1,
        "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed."
    );
    // The service account's secrets serve pods that name none.
    node.api.secrets.lock().unwrap().insert(("default".into(), "regcred".into()), secret);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "regcred"}]}))
            .unwrap();
    node.api.service_accounts.lock().unwrap().insert(("default".into(), "default".into()), sa);
    let mut w = worker(&node, pod(json!({"containers": [app]})));
    w.sync().await.unwrap();
    assert_eq!(node.log.count("pull registry.example/app:1"), 1);
    assert_eq!(node.log.count("start app"), 1);
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn the_termination_message_falls_back_to_the_log_tail_on_error() {
    let node = Node::new();
    let mut app = container("app");
    app["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let mut w = worker(&node, pod(json!({"restartPolicy": "Never", "containers": [app]})));
    w.sync().await.unwrap();
    let log = node.host.pod_log_dir("default", "web", UID).join("app/0.log");
    std::fs::write(&log, "2024-01-01T00:00:00Z stderr F panic: out of luck\n").unwrap();
    exit(&node, &mut w, "app", 2).await;
    w.report().await;
    let t = status_of(&node.api.last_status(), "app").state.clone().unwrap().terminated.unwrap();
    assert_eq!(t.message.as_deref(), Some("panic: out of luck\n"));
}

#[tokio::test]
async fn the_pod_start_sli_excludes_the_pull_and_the_init_container() {
    let node = Node::new();
    // An absent image: pulled. Created 2 s ago, seen by the agent's watch at once.
    let app = json!({"name": "app", "image": "app:2", "command": ["sleep", "3600"]});
    let mut p = (*pod(json!({"initContainers": [container("setup")], "containers": [app]}))).clone();
    let created = SystemTime::now() - Duration::from_secs(2);
    p.metadata.creation_timestamp = Some(kubus_apimachinery::time::time(created));
    let p = Arc::new(p);
    let tracker = node.host.startup_latency.clone();
    assert!(tracker.observed_on_watch(&p, SystemTime::now()).is_none());
    let mut w = worker(&node, p.clone());
    w.sync().await.unwrap();
    report_and_echo(&node, &mut w).await;
    // The init container runs a while, then the app starts.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    exit(&node, &mut w, "setup", 0).await;
    w.sync().await.unwrap();
    assert_eq!(node.log.count("pull app:2"), 1);
    w.report().await;
    let status = node.api.last_status();
    assert!(status_of(&status, "app").state.as_ref().unwrap().running.is_some());
    let seen = SystemTime::now();
    let o = tracker.observed_on_watch(&with_status(&p, status), seen).expect("observed once the watch shows it");
    let total =
        seen.duration_since(kubus_apimachinery::time::system_time(p.metadata.creation_timestamp.as_ref().unwrap()));
    assert_eq!(o.total, total.unwrap());
    assert!(o.total - o.sli >= Duration::from_millis(1200), "the init container's run is left out: {o:?}");
    assert!(!o.stateful);
}

#[tokio::test]
async fn a_status_echo_is_a_sync_and_a_spec_or_label_change_an_update() {
    let p = pod(json!({"containers": [container("app")]}));
    let mut echoed = (*p).clone();
    echoed.status = Some(PodStatus { phase: Some("Running".into()), ..Default::default() });
    echoed.metadata.resource_version = Some("7".into());
    assert!(!super::changed_by_user(&p, &echoed), "the worker's own status coming back");
    let mut labelled = echoed.clone();
    labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    assert!(super::changed_by_user(&echoed, &labelled));
    let mut deleting = echoed.clone();
    deleting.metadata.deletion_timestamp = Some(kubus_apimachinery::time::now());
    assert!(super::changed_by_user(&echoed, &deleting));
    let mut respec = echoed.clone();
    respec.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
    assert!(super::changed_by_user(&echoed, &respec));

    // The worker remembers an update until its next sync takes it.
    let node = Node::new();
    let mut w = worker(&node, p.clone());
    w.on_message(WorkerMsg::Update(Arc::new(echoed))).await;
    assert!(!w.updated);
    w.on_message(WorkerMsg::Update(Arc::new(labelled))).await;
    assert!(w.updated);
}
