//! The scheduler and controller manager on simulated nodes, driven with kubectl (issue #3).

mod common;
use common::{eventually, Cluster};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Kills a helper process when the test ends, pass or fail.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn deployment(name: &str, replicas: u32, extra_pod_spec: &str, strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n{strategy}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: 'busybox:1'}}]\n{extra_pod_spec}"
    )
}

fn pods(c: &Cluster, selector: &str) -> Vec<Value> {
    c.get_json(&["pods", "-l", selector])["items"].as_array().cloned().unwrap_or_default()
}

fn running_on(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn rolling_update_keeps_availability_and_undo_restores() {
    let c = Cluster::start_with("roll", &["--sim-nodes", "3"]);
    let strategy = "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxUnavailable: 0, maxSurge: 3}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment("web", 12, "", strategy)).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(
        (d["status"]["availableReplicas"].as_i64(), d["status"]["updatedReplicas"].as_i64()),
        (Some(12), Some(12))
    );
    // Replicas spread over the nodes (system-default topology spreading), not piled on one.
    let on = running_on(&pods(&c, "app=web"));
    for node in ["sim-0", "sim-1", "sim-2"] {
        let n = on.iter().filter(|x| *x == node).count();
        assert!(n >= 2, "{node} runs {n} of 12: {on:?}");
    }

    // Watch the rollout from the side: never fewer than 12 available, never more than 15 pods.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, kubeconfig) = (stop.clone(), c.kubeconfig());
        let cache = c.dir.join("watch-cache");
        std::thread::spawn(move || {
            let (mut min_available, mut max_pods) = (i64::MAX, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("kubectl")
                    .env("KUBECONFIG", &kubeconfig)
                    .arg(format!("--cache-dir={}", cache.display()))
                    .args(["get", "deploy/web", "pods", "-l", "app=web", "-o", "json"])
                    .stderr(Stdio::null())
                    .output()
                    .unwrap();
                if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                    for item in v["items"].as_array().into_iter().flatten() {
                        if item["kind"] == "Deployment" {
                            min_available =
                                min_available.min(item["status"]["availableReplicas"].as_i64().unwrap_or(0));
                        }
                    }
                    let active = v["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|i| i["kind"] == "Pod" && i["metadata"]["deletionTimestamp"].is_null())
                        .count();
                    max_pods = max_pods.max(active);
                }
            }
            (min_available, max_pods)
        })
    };
    c.kubectl(&["set", "image", "deploy/web", "c=busybox:2"]).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    stop.store(true, Ordering::Relaxed);
    let (min_available, max_pods) = watcher.join().unwrap();
    assert!(min_available >= 12, "availability dropped to {min_available}");
    assert!(max_pods <= 15, "{max_pods} pods exceed replicas + maxSurge");
    let images: Vec<String> = pods(&c, "app=web")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images.len(), 12);
    assert!(images.iter().all(|i| i == "busybox:2"), "{images:?}");

    // kubectl describe shows what the controllers did, as Events.
    let describe = c.kubectl(&["describe", "deploy", "web"]).expect_ok();
    assert!(describe.contains("ScalingReplicaSet") && describe.contains("Scaled up replica set"), "{describe}");
    let rs_name = c.get_json(&["rs", "-l", "app=web"])["items"][0]["metadata"]["name"].as_str().unwrap().to_string();
    let describe = c.kubectl(&["describe", "rs", &rs_name]).expect_ok();
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
    // rollout undo brings the previous template (and its ReplicaSet) back.
    c.kubectl(&["rollout", "undo", "deploy/web"]).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1");
    assert_eq!(c.get_json(&["rs", "-l", "app=web"])["items"].as_array().unwrap().len(), 2);
    let history = c.kubectl(&["rollout", "history", "deploy/web"]).expect_ok();
    assert!(history.contains("2 ") && history.contains("3 "), "{history}");

    // Scale down and up.
    c.kubectl(&["scale", "deploy/web", "--replicas=4"]).expect_ok();
    eventually(30, || (running_on(&pods(&c, "app=web")).len() == 4).then_some(()));
    c.kubectl(&["scale", "deploy/web", "--replicas=50"]).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    assert_eq!(running_on(&pods(&c, "app=web")).len(), 50);
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(d["status"]["availableReplicas"], 50);
}

#[test]
fn deletion_cascades_by_policy() {
    let c = Cluster::start_with("cascade", &["--sim-nodes", "2"]);
    for name in ["bg", "fg", "keep"] {
        c.kubectl_stdin(&["apply", "-f", "-"], &deployment(name, 2, "", "")).expect_ok();
        c.kubectl(&["rollout", "status", &format!("deploy/{name}"), "--timeout=60s"]).expect_ok();
    }
    c.kubectl(&["delete", "deploy", "bg"]).expect_ok();
    c.kubectl(&["delete", "deploy", "fg", "--cascade=foreground"]).expect_ok();
    c.kubectl(&["delete", "deploy", "keep", "--cascade=orphan"]).expect_ok();
    eventually(30, || {
        (pods(&c, "app in (bg,fg)").is_empty()
            && c.get_json(&["rs", "-l", "app in (bg,fg)"])["items"] == serde_json::json!([]))
        .then_some(())
    });
    let kept = c.get_json(&["rs", "-l", "app=keep"]);
    assert_eq!(kept["items"].as_array().unwrap().len(), 1);
    assert!(kept["items"][0]["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()));
    assert_eq!(running_on(&pods(&c, "app=keep")).len(), 2);
}

#[test]
fn anti_affinity_spreads_one_per_node_and_explains_the_rest() {
    let c = Cluster::start_with("affinity", &["--sim-nodes", "3"]);
    let affinity = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: spread}}\n            topologyKey: kubernetes.io/hostname\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment("spread", 5, affinity, "")).expect_ok();
    let nodes = eventually(30, || {
        let on = running_on(&pods(&c, "app=spread"));
        (on.len() == 3).then_some(on)
    });
    let mut distinct = nodes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{nodes:?}");
    let pending: Vec<Value> =
        pods(&c, "app=spread").into_iter().filter(|p| p["status"]["phase"] == "Pending").collect();
    assert_eq!(pending.len(), 2);
    let msg = eventually(30, || {
        let p = &pods(&c, "app=spread").into_iter().find(|p| p["status"]["phase"] == "Pending")?;
        let cond = p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")?.clone();
        cond["message"].as_str().map(str::to_string)
    });
    assert!(msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."), "{msg}");
    let events = c.kubectl(&["get", "events", "--field-selector", "reason=FailedScheduling"]).expect_ok();
    assert!(events.contains("FailedScheduling") && events.contains("anti-affinity"), "{events}");
    let describe = c.kubectl(&["describe", "pod", pending[0]["metadata"]["name"].as_str().unwrap()]).expect_ok();
    assert!(describe.contains("FailedScheduling"), "{describe}");
}

#[test]
fn taints_and_tolerations_are_respected() {
    let c = Cluster::start_with("taints", &["--sim-nodes", "3"]);
    eventually(30, || (c.get_json(&["nodes"])["items"].as_array().map(|a| a.len()) == Some(3)).then_some(()));
    c.kubectl(&["taint", "nodes", "sim-0", "sim-1", "dedicated=gpu:NoSchedule"]).expect_ok();
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment("plain", 4, "", "")).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/plain", "--timeout=60s"]).expect_ok();
    assert!(running_on(&pods(&c, "app=plain")).iter().all(|n| n == "sim-2"));
    let tol = "      tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n      nodeSelector: {kubernetes.io/hostname: sim-0}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment("gpu", 2, tol, "")).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/gpu", "--timeout=60s"]).expect_ok();
    assert_eq!(running_on(&pods(&c, "app=gpu")), ["sim-0", "sim-0"]);
    // Without the toleration, the same node selector cannot be met.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &deployment("nogpu", 1, "      nodeSelector: {kubernetes.io/hostname: sim-0}\n", ""),
    )
    .expect_ok();
    let msg = eventually(30, || {
        let p = pods(&c, "app=nogpu").pop()?;
        let cond = p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")?.clone();
        cond["message"].as_str().map(str::to_string)
    });
    assert!(
        msg.contains("untolerated taint {dedicated: gpu}") && msg.contains("didn't match Pod's node affinity/selector"),
        "{msg}"
    );
}

#[test]
fn a_stopped_node_turns_not_ready_and_its_pods_are_replaced() {
    let c = Cluster::start_with("nodeloss", &["--sim-nodes", "2", "--node-monitor-grace-period", "4"]);
    // A third node in a process of its own, so that it can be stopped.
    let mut extra = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_kubus"))
            .args([
                "sim-nodes",
                "--count",
                "1",
                "--prefix",
                "extra-",
                "--cluster",
                "e2e",
                "--renew-seconds",
                "1",
                "--nats",
            ])
            .arg(c.nats_url())
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(c.dir.join("extra.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !c.kubectl(&["get", "node", "extra-0"]).ok {
        let exited = extra.0.try_wait().ok().flatten();
        if exited.is_some() || std::time::Instant::now() > deadline {
            panic!(
                "extra-0 did not register (sim-nodes exit: {exited:?}):\n{}",
                std::fs::read_to_string(c.dir.join("extra.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let tolerate = "      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]\n";
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment("svc", 6, tolerate, "")).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/svc", "--timeout=60s"]).expect_ok();
    let before = running_on(&pods(&c, "app=svc"));
    assert!(before.iter().any(|n| n == "extra-0"), "no pod landed on extra-0: {before:?}");
    let _ = extra.0.kill();
    let _ = extra.0.wait();
    eventually(30, || {
        let n = c.get_json(&["node", "extra-0"]);
        let ready = n["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
        (ready["status"] == "Unknown").then_some(())
    });
    let nodes = c.kubectl(&["get", "nodes"]).expect_ok();
    assert!(nodes.lines().any(|l| l.starts_with("extra-0") && l.contains("NotReady")), "{nodes}");
    // As upstream's node controller records it.
    let events = eventually(30, || {
        let out = c
            .kubectl(&[
                "get",
                "events",
                "-A",
                "--field-selector",
                "reason=NodeNotReady",
                "-o",
                "custom-columns=M:.message,S:.source.component",
            ])
            .expect_ok();
        out.contains("extra-0").then_some(out)
    });
    assert!(
        events.contains("Node extra-0 status is now: NodeNotReady") && events.contains("node-controller"),
        "{events}"
    );
    let after = eventually(60, || {
        let on = running_on(&pods(&c, "app=svc"));
        (on.len() == 6 && on.iter().all(|n| n != "extra-0")).then_some(on)
    });
    assert!(after.iter().all(|n| n.starts_with("sim-")), "{after:?}");
}

#[test]
fn namespace_deletion_empties_it() {
    let c = Cluster::start_with("nsdel", &["--sim-nodes", "1"]);
    c.kubectl(&["create", "ns", "doomed"]).expect_ok();
    c.kubectl(&["-n", "doomed", "create", "deploy", "d", "--image=busybox", "--replicas=2"]).expect_ok();
    c.kubectl(&["-n", "doomed", "create", "cm", "c", "--from-literal=a=b"]).expect_ok();
    // Not there until the service account controller has seen the namespace.
    eventually(30, || c.kubectl(&["-n", "doomed", "get", "sa", "default"]).ok.then_some(()));
    c.kubectl(&["-n", "doomed", "rollout", "status", "deploy/d", "--timeout=60s"]).expect_ok();
    c.kubectl(&["delete", "ns", "doomed", "--timeout=60s"]).expect_ok();
    c.kubectl(&["get", "ns", "doomed"]).expect_err("NotFound");
    let (_, left) = c.http("GET", "/api/v1/namespaces/doomed/pods", None, None);
    assert_eq!(left["items"], serde_json::json!([]));
}

#[test]
fn services_get_cluster_ips_node_ports_and_endpoints() {
    let c = Cluster::start_with("svc", &["--sim-nodes", "2"]);
    let k = c.get_json(&["svc", "kubernetes"]);
    assert_eq!(k["spec"]["clusterIP"], "10.96.0.1");
    let d = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: busybox, ports: [{name: http, containerPort: 8080}]}]\n";
    c.kubectl_stdin(&["apply", "-f", "-"], d).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]).expect_ok();
    c.kubectl(&["expose", "deploy", "web", "--port=80", "--target-port=http"]).expect_ok();
    c.kubectl(&["create", "svc", "nodeport", "np", "--tcp=80:8080"]).expect_ok();
    let svc = c.get_json(&["svc", "web"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
    let np = c.get_json(&["svc", "np"]);
    let node_port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    // A second Service cannot take an IP or a node port that is held.
    let taken = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: dup}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &taken).expect_err("already allocated");
    // Endpoints follow the ready pods, with the named port resolved.
    let ep = eventually(30, || {
        let ep = c.get_json(&["endpoints", "web"]);
        (ep["subsets"][0]["addresses"].as_array().map(|a| a.len()) == Some(3)).then_some(ep)
    });
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);
    let slices = c.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let slice = &slices["items"][0];
    assert_eq!(slice["endpoints"].as_array().map(|e| e.len()), Some(3), "{slice}");
    assert_eq!(slice["ports"][0]["port"], 8080);
    c.kubectl(&["scale", "deploy/web", "--replicas=1"]).expect_ok();
    eventually(30, || {
        let ep = c.get_json(&["endpoints", "web"]);
        (ep["subsets"][0]["addresses"].as_array().map(|a| a.len()) == Some(1)).then_some(())
    });
    // Deleting the Service releases its IP and removes its Endpoints.
    c.kubectl(&["delete", "svc", "web"]).expect_ok();
    eventually(30, || c.kubectl(&["get", "endpoints", "web"]).stderr.contains("NotFound").then_some(()));
    eventually(30, || {
        (c.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"])["items"] == serde_json::json!([]))
            .then_some(())
    });
    c.kubectl_stdin(&["apply", "-f", "-"], &taken).expect_ok();
    assert_eq!(c.get_json(&["svc", "dup"])["spec"]["clusterIP"], ip.as_str());
}

#[test]
fn pause_resume_restart_and_progress_deadline() {
    let c = Cluster::start_with("pause", &["--sim-nodes", "2"]);
    c.kubectl_stdin(&["apply", "-f", "-"], &deployment("p", 2, "", "")).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/p", "--timeout=60s"]).expect_ok();
    // Paused: a template change makes no new ReplicaSet until resumed.
    c.kubectl(&["rollout", "pause", "deploy/p"]).expect_ok();
    c.kubectl(&["set", "image", "deploy/p", "c=busybox:2"]).expect_ok();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(c.get_json(&["rs", "-l", "app=p"])["items"].as_array().unwrap().len(), 1);
    let d = c.get_json(&["deploy", "p"]);
    let progressing =
        d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").unwrap().clone();
    assert_eq!(progressing["reason"], "DeploymentPaused");
    c.kubectl(&["rollout", "resume", "deploy/p"]).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/p", "--timeout=60s"]).expect_ok();
    assert_eq!(c.get_json(&["rs", "-l", "app=p"])["items"].as_array().unwrap().len(), 2);
    // restart: a new ReplicaSet with the restartedAt annotation.
    c.kubectl(&["rollout", "restart", "deploy/p"]).expect_ok();
    c.kubectl(&["rollout", "status", "deploy/p", "--timeout=60s"]).expect_ok();
    assert_eq!(c.get_json(&["rs", "-l", "app=p"])["items"].as_array().unwrap().len(), 3);
    let d = c.get_json(&["deploy", "p"]);
    let cond =
        d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").unwrap().clone();
    assert_eq!(cond["reason"], "NewReplicaSetAvailable");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    // A rollout that cannot progress (no node fits) reports ProgressDeadlineExceeded.
    c.kubectl(&[
        "patch",
        "deploy/p",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":2,"template":{"spec":{"nodeSelector":{"nowhere":"true"}}}}}"#,
    ])
    .expect_ok();
    let out = c.kubectl(&["rollout", "status", "deploy/p", "--timeout=60s"]);
    assert!(!out.ok && out.stderr.contains("exceeded its progress deadline"), "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_node_reporting_not_ready_is_tainted() {
    let c = Cluster::start_with("notready", &["--sim-nodes", "1"]);
    // Registered and its first status written (a patch before that would be overwritten).
    eventually(30, || {
        let r =
            c.kubectl(&["get", "node", "sim-0", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        (r.ok && r.stdout == "True").then_some(())
    });
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady","message":"container runtime is down"}]}}"#;
    c.kubectl(&["patch", "node", "sim-0", "--subresource=status", "--type=merge", "-p", status]).expect_ok();
    let taints = eventually(30, || {
        let t = c.get_json(&["node", "sim-0"])["spec"]["taints"].clone();
        t.as_array().is_some_and(|a| a.iter().any(|t| t["key"] == "node.kubernetes.io/not-ready")).then_some(t)
    });
    assert!(taints.as_array().unwrap().iter().any(|t| t["effect"] == "NoExecute"), "{taints}");
}
