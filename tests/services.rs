//! Services as users reach them (issue #5, on one node): by DNS name through the cluster DNS,
//! by ClusterIP through kube-proxy's nftables rules, balanced over the ready pods.

mod common;

use common::{eventually, host_get, Cluster};
use std::collections::BTreeSet;

#[test]
fn service_names_resolve_and_balance_over_ready_pods() {
    let c = Cluster::start_with_node("svc", &[]);
    c.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
"#,
    );
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]).expect_ok();
    c.wait_pod_ready("client", 60);
    let pods: BTreeSet<String> = c
        .kubectl(&["get", "pods", "-l", "app=web", "-o", "name"])
        .expect_ok()
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect();
    assert_eq!(pods.len(), 3);
    // The pod's resolv.conf points at the cluster DNS with the namespace's search path.
    let resolv = c.kubectl(&["exec", "client", "--", "cat", "/etc/resolv.conf"]).expect_ok();
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let hits = |url: &str, n: usize| c.wget_lines("client", url, n);
    // Every replica answers through the Service's name, over repeated requests (once the
    // endpoints of all three are programmed: kube-proxy syncs at most once a second).
    eventually(60, || {
        let seen: BTreeSet<String> = hits("http://web.default.svc.cluster.local", 40).into_iter().collect();
        (seen == pods).then_some(())
    });
    // The short name works through the search path.
    assert!(pods.contains(&hits("http://web", 1)[0]));
    // DNS answers: the ClusterIP for the Service, NXDOMAIN for an unknown name.
    let ip = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]).expect_ok();
    let ns = c.kubectl(&["exec", "client", "--", "nslookup", "web.default.svc.cluster.local"]).expect_ok();
    assert!(ns.contains(&ip), "{ns}");
    let nx = c.kubectl(&["exec", "client", "--", "nslookup", "nope.default.svc.cluster.local"]);
    assert!(!nx.ok || nx.stdout.contains("NXDOMAIN") || nx.stderr.contains("NXDOMAIN"), "{}{}", nx.stdout, nx.stderr);
    // The node itself reaches the ClusterIP (kube-proxy's route for the service range).
    let from_host = eventually(30, || host_get(&format!("http://{ip}/")));
    assert!(pods.contains(&from_host), "{from_host}");
    // Scaling down takes endpoints out of rotation.
    c.kubectl(&["scale", "deployment/web", "--replicas=1"]).expect_ok();
    eventually(60, || {
        let seen: BTreeSet<String> = hits("http://web.default.svc.cluster.local", 10).into_iter().collect();
        (seen.len() == 1).then_some(())
    });
}

#[test]
fn node_ports_readiness_and_headless_services() {
    let c = Cluster::start_with_node("svc-np", &[]);
    c.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: ["sh", "-c", "touch /tmp/ready; mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {exec: {command: ["test", "-f", "/tmp/ready"]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  type: NodePort
  selector: {app: api}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api-pods}
spec:
  clusterIP: None
  selector: {app: api}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
"#,
    );
    c.kubectl(&["rollout", "status", "deployment/api", "--timeout=120s"]).expect_ok();
    c.wait_pod_ready("client", 60);
    let pods: Vec<(String, String)> = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=api",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
        ])
        .expect_ok()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, ip)| (n.to_string(), ip.to_string())))
        .collect();
    assert_eq!(pods.len(), 2);
    let node_port = c.kubectl(&["get", "svc", "api", "-o", "jsonpath={.spec.ports[0].nodePort}"]).expect_ok();
    let url = format!("http://127.0.0.1:{node_port}/");
    let from_host = |n: usize| -> BTreeSet<String> { (0..n).filter_map(|_| host_get(&url)).collect() };
    // The NodePort answers from the host, from every replica.
    let all: BTreeSet<String> = pods.iter().map(|(n, _)| n.clone()).collect();
    eventually(60, || (from_host(30) == all).then_some(()));
    // Headless: the name lists the ready pods' addresses.
    let lookup = || c.kubectl(&["exec", "client", "--", "nslookup", "api-pods.default.svc.cluster.local"]).stdout;
    eventually(30, || pods.iter().all(|(_, ip)| lookup().contains(ip.as_str())).then_some(()));
    // A pod failing readiness leaves the rotation and the headless answer.
    let (gone, stays) = (&pods[0], &pods[1]);
    c.kubectl(&["exec", &gone.0, "--", "rm", "/tmp/ready"]).expect_ok();
    eventually(60, || (from_host(20) == BTreeSet::from([stays.0.clone()])).then_some(()));
    eventually(30, || {
        let l = lookup();
        (l.contains(stays.1.as_str()) && !l.contains(gone.1.as_str())).then_some(())
    });

    // A Service without a selector reaches the addresses of the Endpoints the user writes
    // (mirrored into its EndpointSlice), by name; deleting them takes it out of service.
    c.apply(
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: manual}}\nspec:\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n\
             apiVersion: v1\nkind: Endpoints\nmetadata: {{name: manual}}\nsubsets:\n- addresses: [{{ip: {}}}]\n  ports: [{{port: 8080}}]\n",
            stays.1
        ),
    );
    let manual = || c.kubectl(&["exec", "client", "--", "sh", "-c", "timeout 3 wget -qO- http://manual"]);
    eventually(30, || (manual().stdout.trim() == stays.0).then_some(()));
    let slices = c.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=manual"]);
    assert_eq!(slices["items"].as_array().map(Vec::len), Some(1), "{slices}");
    let slice = &slices["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    c.kubectl(&["delete", "endpoints", "manual"]).expect_ok();
    eventually(30, || (!manual().ok).then_some(()));
}
