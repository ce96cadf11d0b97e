//! The pod network across nodes (issue #5): three "machines" (network namespaces on a test
//! bridge, see common/hosts.rs), each with its own node agent and address, and a control plane
//! on the bridge. Pods on different nodes reach each other with their own IPs, a pod on one node
//! reaches a Service whose pods are on the others (by DNS name), NodePort on one node reaches
//! pods on another, the Local traffic policies keep traffic on the node, and a node cut off
//! from the network leaves the rotation until it is back.

mod common;

use common::hosts::Hosts;
use common::{condition, eventually, host_get};
use std::collections::{BTreeMap, BTreeSet};

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: kubus.test/host, operator: In, values: [h2, h3]}]
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: busybox
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          hostname > /www/index.html
          printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip
          chmod +x /www/cgi-bin/ip
          exec httpd -f -p 8080 -h /www
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubus.test/host: h1}
  containers:
  - {name: main, image: busybox, command: ["sleep", "3600"]}
"#;

#[test]
fn pods_and_services_across_nodes_and_a_node_cut_off() {
    let hosts = Hosts::start("multinode", 3, 8);
    let c = hosts.cluster();
    // Every node got its own block of the cluster CIDR, and routes the others' via their address.
    let cidrs: BTreeMap<String, String> = hosts
        .hosts
        .iter()
        .map(|h| {
            let cidr = eventually(30, || {
                let r = c.kubectl(&["get", "node", &h.node_name, "-o", "jsonpath={.spec.podCIDR}"]);
                (!r.stdout.is_empty()).then_some(r.stdout)
            });
            (h.node_name.clone(), cidr)
        })
        .collect();
    assert_eq!(cidrs.values().collect::<BTreeSet<_>>().len(), 3, "{cidrs:?}");
    for h in &hosts.hosts {
        for other in hosts.hosts.iter().filter(|o| o.node_name != h.node_name) {
            let cidr = &cidrs[&other.node_name];
            eventually(30, || {
                let out = h.command("ip").args(["route", "show", cidr]).output().ok()?;
                String::from_utf8_lossy(&out.stdout).contains(&format!("via {} ", other.ip)).then_some(())
            });
        }
    }

    c.apply(APP);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]).expect_ok();
    c.wait_pod_ready("client", 90);
    let pods = c.get_json(&["pods", "-l", "app=web"]);
    let web: BTreeMap<String, (String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["spec"]["nodeName"].as_str().unwrap().to_string();
            let ip = p["status"]["podIP"].as_str().unwrap().to_string();
            (p["metadata"]["name"].as_str().unwrap().to_string(), (node, ip))
        })
        .collect();
    let nodes: BTreeSet<&str> = web.values().map(|(n, _)| n.as_str()).collect();
    let expected: BTreeSet<&str> = [hosts.host(2).node_name.as_str(), hosts.host(3).node_name.as_str()].into();
    assert_eq!(nodes, expected, "one replica on each of h2 and h3: {web:?}");
    let client = c.pod("client");
    assert_eq!(client["spec"]["nodeName"], hosts.host(1).node_name);
    let client_ip = client["status"]["podIP"].as_str().unwrap().to_string();
    assert!(client_ip.starts_with(cidrs[&hosts.host(1).node_name].trim_end_matches("0/24")), "{client_ip}");

    let exec = |script: &str| c.kubectl(&["exec", "client", "--", "sh", "-c", script]);
    // Pod to pod across nodes, and the server sees the client's own pod IP (no masquerade
    // inside the cluster CIDR).
    for (name, (_, ip)) in &web {
        let body = eventually(30, || {
            let r = exec(&format!("timeout 3 wget -qO- http://{ip}:8080/"));
            r.ok.then(|| r.stdout.trim().to_string())
        });
        assert_eq!(&body, name);
        let seen = exec(&format!("timeout 3 wget -qO- http://{ip}:8080/cgi-bin/ip")).expect_ok();
        // busybox httpd listens on IPv6 and shows IPv4 peers mapped: [::ffff:a.b.c.d].
        let seen = seen.trim().trim_start_matches("[::ffff:").trim_end_matches(']');
        assert_eq!(seen, client_ip, "the pod on another node sees the client's pod IP");
    }

    // The Service by DNS name from h1 reaches both replicas, on h2 and h3, with no failures.
    let hits = |n: usize| c.wget_lines("client", "http://web.default.svc.cluster.local", n);
    let all: BTreeSet<String> = web.keys().cloned().collect();
    eventually(60, || (hits(30).into_iter().collect::<BTreeSet<_>>() == all).then_some(()));

    // NodePort on h2's address, from the machine (outside every host), reaches the pod on h3 too.
    let node_port = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]).expect_ok();
    let url = format!("http://{}:{node_port}/", hosts.host(2).ip);
    eventually(60, || {
        let seen: BTreeSet<String> = (0..30).filter_map(|_| host_get(&url)).collect();
        (seen == all).then_some(())
    });

    // Traffic policies Local: NodePort traffic from outside goes to the receiving node's own pod
    // and keeps the client's address; a node without one drops it; ClusterIP traffic stays on
    // the client's node (none there: refused).
    c.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#,
    );
    let local_port = c.kubectl(&["get", "svc", "web-local", "-o", "jsonpath={.spec.ports[0].nodePort}"]).expect_ok();
    let (on_h3, _) = web.iter().find(|(_, (n, _))| *n == hosts.host(3).node_name).unwrap();
    let (on_h2, _) = web.iter().find(|(_, (n, _))| *n == hosts.host(2).node_name).unwrap();
    let url = format!("http://{}:{local_port}", hosts.host(2).ip);
    eventually(30, || (host_get(&format!("{url}/")).as_deref() == Some(on_h2.as_str())).then_some(()));
    for _ in 0..10 {
        assert_eq!(host_get(&format!("{url}/")).as_deref(), Some(on_h2.as_str()));
    }
    let seen = host_get(&format!("{url}/cgi-bin/ip")).expect("the local pod answers");
    assert_eq!(seen.trim_start_matches("[::ffff:").trim_end_matches(']'), hosts.gateway, "client address kept");
    assert_eq!(host_get(&format!("http://{}:{local_port}/", hosts.host(1).ip)), None, "h1 has no web pod");
    let r = exec("timeout 3 wget -qO- http://web-local.default.svc.cluster.local");
    assert!(!r.ok && !r.stderr.contains("Terminated"), "refused at once from h1: {} {}", r.stdout, r.stderr);

    // h3 is cut off: its node turns Unknown, its pod leaves the endpoints, and every request from
    // h1 is answered by the pod on h2.
    hosts.host(3).cut_off();
    let cut = std::time::Instant::now();
    let ready = |node: &str| c.node_ready_status(node);
    eventually(60, || (ready(&hosts.host(3).node_name) == "Unknown").then_some(()));
    eprintln!("cut off: node Unknown after {:?}", cut.elapsed());
    c.wait_pod(on_h3, 30, "not Ready", |p| condition(p, "Ready") == "False");
    eventually(30, || {
        let slices = c.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let ready: Vec<String> = slices["items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_string))
            .collect();
        (ready == [on_h2.clone()]).then_some(())
    });
    // kube-proxy on h1 follows within its sync period; then no request goes to h3.
    eventually(30, || (hits(20).iter().all(|b| b == on_h2)).then_some(()));
    eprintln!("cut off: traffic only to the reachable pod after {:?}", cut.elapsed());
    assert!(hits(20).iter().all(|b| b == on_h2));

    // Back on the network: the node heartbeats, the kubelet reports its pod ready again and it
    // returns to the rotation.
    hosts.host(3).reconnect();
    let back = std::time::Instant::now();
    eventually(60, || (ready(&hosts.host(3).node_name) == "True").then_some(()));
    eprintln!("reconnected: node Ready after {:?}", back.elapsed());
    c.wait_pod_ready(on_h3, 60);
    eprintln!("reconnected: its pod Ready after {:?}", back.elapsed());
    eventually(60, || (hits(30).into_iter().collect::<BTreeSet<_>>() == all).then_some(()));
    eprintln!("reconnected: both pods in rotation again after {:?}", back.elapsed());

    // logs and exec reach pods on any node (through the bus).
    let name = c.kubectl(&["exec", on_h3, "--", "hostname"]).expect_ok();
    assert_eq!(name.trim(), on_h3);
    c.kubectl(&["logs", on_h2]).expect_ok();

    // A node that is gone (its agent stopped, the Node deleted) loses its routes on the others.
    let h3_cidr = cidrs[&hosts.host(3).node_name].clone();
    let h3_name = hosts.host(3).node_name.clone();
    hosts.host(3).stop();
    c.kubectl(&["delete", "node", &h3_name]).expect_ok();
    for i in [1, 2] {
        eventually(30, || {
            let out = hosts.host(i).command("ip").args(["route", "show", &h3_cidr]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().is_empty().then_some(())
        });
    }
}
