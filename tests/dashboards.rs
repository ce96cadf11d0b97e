//! Every panel of every dashboard in dashboards/ is evaluated against a real Prometheus
//! (Debian's) scraping a running kubus and a second node agent in its own process: a query
//! that errors or returns nothing fails, and the figures people read first are checked against
//! what kubectl and the machine say.

mod common;
use common::{eventually, free_port, Cluster, NodeAgent, NodeNames};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prometheus scraping the API server over HTTPS as a monitoring client would (the cluster CA
/// checked, a client certificate presented: /metrics needs authentication) and the node
/// agents' plain loopback /metrics.
fn start_prometheus(api: &str, pki: &std::path::Path, agents: &[String], dir: std::path::PathBuf) -> Prometheus {
    std::fs::create_dir_all(&dir).unwrap();
    let agents: Vec<String> = agents.iter().map(|t| format!("'{t}'")).collect();
    let file = |name: &str| pki.join(name).display().to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: kubus-apiserver\n  scheme: https\n  tls_config:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n  static_configs:\n  - targets: ['{api}']\n\
         - job_name: kubus-node\n  static_configs:\n  - targets: [{}]\n",
        file("ca.crt"),
        file("admin.crt"),
        file("admin.key"),
        agents.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus is installed (scripts/deps.sh --test)");
    Prometheus { child, dir, port }
}

fn query(port: u16, expr: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sf", "--get", &format!("http://127.0.0.1:{port}/api/v1/query"), "--data-urlencode"])
        .arg(format!("query={expr}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The value of an instant query that returns one series.
fn scalar(port: u16, expr: &str) -> Option<f64> {
    let r = query(port, expr);
    let v = &r["data"]["result"].as_array()?.first()?["value"][1];
    v.as_str()?.parse().ok()
}

#[test]
fn every_dashboard_panel_has_data_and_the_right_values() {
    let c = Cluster::start_with_node("dash", &["--horizontal-pod-autoscaler-sync-period", "2s"]);
    let up_node = c.node.as_ref().unwrap().node_name.clone();
    // A second node agent in its own process, with its own /metrics.
    let names = NodeNames::new();
    let agent_addr = format!("127.0.0.1:{}", free_port());
    // On this one host its pods take a range of their own (the harness gives each agent one).
    let agent = NodeAgent::start_with(&c, names.clone(), &["--metrics-bind-address", &agent_addr]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while c.node_ready_status(&names.node_name) != "True" {
        assert!(std::time::Instant::now() < deadline, "the second node is not Ready:\n{}", agent.log());
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let prom = start_prometheus(
        &format!("127.0.0.1:{}", c.port),
        &c.dir.join("pki"),
        std::slice::from_ref(&agent_addr),
        c.dir.join("prometheus"),
    );

    // Traffic of every kind the panels show: writes, reads, a watch, an error.
    let out = c.dir.join("watch.out");
    let mut watch = c.kubectl_background(&["get", "cm", "-w"], &out);
    for i in 0..5 {
        c.kubectl_stdin(&["apply", "-f", "-"], &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d{i}}}\n"))
            .expect_ok();
    }
    c.kubectl(&["get", "cm", "missing"]).expect_err("NotFound");
    // A Deployment with a probe on kubus up's node (its logs, an exec, DNS through kube-proxy),
    // an autoscaler on it, and a busy loop on the other node.
    let web = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      nodeName: {up_node}\n      containers:\n      - name: c\n        image: busybox\n        command: [sh, -c, 'echo up; sleep 3600']\n        resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}\n        readinessProbe: {{exec: {{command: [\"true\"]}}, periodSeconds: 1}}\n"
    );
    c.apply(&web);
    let busy = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: busy}}\nspec:\n  nodeName: {}\n  containers:\n  - name: spin\n    image: busybox\n    command: [sh, -c, 'while :; do :; done']\n",
        names.node_name
    );
    c.apply(&busy);
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=90s"]).expect_ok();
    c.wait_pod_ready("busy", 90);
    c.kubectl(&["autoscale", "deployment", "web", "--max=2"]).expect_ok();
    let probed = c.get_json(&["pods", "-l", "app=web"])["items"][0]["metadata"]["name"].as_str().unwrap().to_string();
    c.kubectl(&["logs", &probed]).expect_ok();
    c.kubectl(&["exec", &probed, "--", "true"]).expect_ok();
    // Cluster DNS through kube-proxy (the services dashboard): a cluster name and a forwarded
    // one (whose upstream may not answer here: any result counts).
    eventually(30, || {
        c.kubectl(&["exec", &probed, "--", "nslookup", "kubernetes.default.svc.cluster.local"]).ok.then_some(())
    });
    let _ = c.kubectl(&["exec", &probed, "--", "timeout", "5", "nslookup", "example.com."]);
    c.kubectl(&["delete", "cm", "d0"]).expect_ok();

    // The figures people read first.
    let running = |c: &Cluster| {
        c.get_json(&["pods", "-A", "--field-selector", "status.phase=Running"])["items"].as_array().map_or(0, Vec::len)
            as f64
    };
    eventually(60, || {
        let want = running(&c);
        let phase = scalar(prom.port, r#"sum(kube_pod_status_phase{phase="Running"})"#)?;
        let kubelets = scalar(prom.port, "sum(kubelet_running_pods)")?;
        (phase == want && kubelets == want).then_some(())
    });
    let nodes = scalar(prom.port, "count(count by (instance) (kubelet_running_pods))");
    assert_eq!(nodes, Some(2.0), "both nodes' series");
    let ready = scalar(prom.port, r#"sum(kube_node_status_condition{condition="Ready",status="true"})"#);
    assert_eq!(ready, Some(2.0));
    // The busy loop keeps about one core (the machine is shared: retried until it shows).
    let cpu = eventually(90, || {
        let v = scalar(prom.port, r#"sum(rate(container_cpu_usage_seconds_total{pod="busy",container!=""}[15s]))"#)?;
        (v > 0.5).then_some(v)
    });
    assert!(cpu < 1.2, "one busy loop uses at most a core: {cpu}");
    let on_agent = scalar(
        prom.port,
        &format!(r#"count(container_cpu_usage_seconds_total{{pod="busy",instance="{agent_addr}"}})"#),
    );
    assert!(on_agent.is_some_and(|n| n >= 1.0), "the busy pod's series come from its own node agent");
    // Its writable layer, once its agent has walked it (within a housekeeping interval).
    eventually(60, || {
        let q = format!(r#"count(container_fs_usage_bytes{{pod="busy",container="spin",instance="{agent_addr}"}})"#);
        (scalar(prom.port, &q)? >= 1.0).then_some(())
    });
    // Every pod started on the two nodes counts once in their startup SLI: the web pod on
    // kubus up's node and the busy one on the other, at least.
    let started = |instance: &str| {
        scalar(prom.port, &format!(r#"sum(kubelet_pod_start_sli_duration_seconds_count{{instance="{instance}"}})"#))
    };
    eventually(60, || {
        (started(&agent_addr)? >= 1.0 && started(&format!("127.0.0.1:{}", c.port))? >= 1.0).then_some(())
    });
    let requested = scalar(prom.port, r#"sum(kube_pod_container_resource_requests{resource="cpu",pod=~"web-.*"})"#);
    assert_eq!(requested, Some(0.01));
    eventually(60, || {
        let hpa = scalar(prom.port, "sum(horizontal_pod_autoscaler_controller_reconciliations_total)")?;
        (hpa > 0.0).then_some(())
    });
    // rate() needs two scrapes after the traffic.
    std::thread::sleep(std::time::Duration::from_secs(3));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut checked = 0;
    let mut empty = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "10s")
                    .replace("$__range", "5m")
                    .replace("$job", "kubus-.*");
                let r = query(prom.port, &expr);
                assert_eq!(r["status"], "success", "{}: panel {:?}: {expr}: {r}", path.display(), panel["title"]);
                let result = r["data"]["result"].as_array().cloned().unwrap_or_default();
                if result.is_empty() {
                    empty.push(format!("{}: {:?}: {expr}", path.display(), panel["title"]));
                }
                checked += 1;
            }
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    assert!(checked >= 60, "only {checked} panel queries found");
    let _ = watch.kill();
    let _ = watch.wait();
}
