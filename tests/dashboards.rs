//! Every panel of every dashboard in dashboards/ is evaluated against a real Prometheus
//! (Debian's) scraping a running kubus: a query that errors or returns nothing fails.

mod common;
use common::{eventually, free_port, Cluster};
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

fn start_prometheus(target_port: u16, dir: std::path::PathBuf) -> Prometheus {
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: kubus\n  static_configs:\n  - targets: ['127.0.0.1:{target_port}']\n"
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

#[test]
fn every_dashboard_panel_has_data() {
    let c = Cluster::start_with_node("dash", &[]);
    let prom = start_prometheus(c.port, c.dir.join("prometheus"));
    // Traffic of every kind the panels show: writes, reads, a watch, an error.
    let out = c.dir.join("watch.out");
    let mut watch = c.kubectl_background(&["get", "cm", "-w"], &out);
    for i in 0..5 {
        c.kubectl_stdin(&["apply", "-f", "-"], &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d{i}}}\n"))
            .expect_ok();
    }
    c.kubectl(&["get", "cm", "missing"]).expect_err("NotFound");
    // A real pod with a probe, its logs and an exec: the node dashboard's panels.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: probed}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo up; sleep 3600']\n    readinessProbe: {exec: {command: [\"true\"]}, periodSeconds: 1}\n",
    );
    c.wait_pod_ready("probed", 60);
    c.kubectl(&["logs", "probed"]).expect_ok();
    c.kubectl(&["exec", "probed", "--", "true"]).expect_ok();
    // Cluster DNS through kube-proxy (the services dashboard): a cluster name and a forwarded
    // one (whose upstream may not answer here: any result counts).
    eventually(30, || {
        c.kubectl(&["exec", "probed", "--", "nslookup", "kubernetes.default.svc.cluster.local"]).ok.then_some(())
    });
    let _ = c.kubectl(&["exec", "probed", "--", "timeout", "5", "nslookup", "example.com."]);
    c.kubectl(&["delete", "cm", "d0"]).expect_ok();
    // rate() needs two scrapes after the traffic.
    eventually(30, || {
        let r = query(prom.port, "count(apiserver_request_total)");
        let v = &r["data"]["result"];
        (v.as_array().is_some_and(|a| !a.is_empty())).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(3));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "10s")
                    .replace("$__range", "5m")
                    .replace("$job", "kubus");
                let r = query(prom.port, &expr);
                assert_eq!(r["status"], "success", "{}: panel {:?}: {expr}: {r}", path.display(), panel["title"]);
                let result = r["data"]["result"].as_array().cloned().unwrap_or_default();
                assert!(!result.is_empty(), "{}: panel {:?} has no data: {expr}", path.display(), panel["title"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} panel queries found");
    let _ = watch.kill();
    let _ = watch.wait();
}
