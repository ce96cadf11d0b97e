//! Real nftables, netns and busybox httpd "pods" (needs root, nft, ip, busybox).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_proxy::{Proxier, ProxierConfig, RulesConfig, ServiceChanges, ServiceList, SliceList};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("command runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes a netns or link even if the test panics.
struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(&self.0).stderr(Stdio::null()).status();
    }
}

struct Process(Child);
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace on the test bridge with one address, like a pod.
fn pod(guards: &mut Vec<Cleanup>, tok: &str, which: &str, bridge: &str, ip: &str, gw: &str) -> String {
    let ns = format!("kp-{tok}-{which}");
    let host_if = format!("kp{which}{tok}");
    sh(&["ip", "netns", "add", &ns]);
    guards.push(Cleanup(vec!["netns".into(), "del".into(), ns.clone()]));
    sh(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
    guards.push(Cleanup(vec!["link".into(), "del".into(), host_if.clone()]));
    sh(&["ip", "link", "set", &host_if, "master", bridge, "up"]);
    // As the CNI bridge plugin's hairpinMode (nodes/network sets it): with br_netfilter the
    // hairpin DNAT happens at the bridge level and the frame goes back out its ingress port.
    sh(&["ip", "link", "set", &host_if, "type", "bridge_slave", "hairpin", "on"]);
    sh(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    sh(&["ip", "-n", &ns, "route", "add", "default", "via", gw]);
    ns
}

/// One HTTP GET with busybox wget, from `netns` (None: the host). Err carries wget's message.
fn get(netns: Option<&str>, url: &str) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "timeout", "3", "busybox"]);
            c
        }
        None => {
            let mut c = Command::new("timeout");
            c.args(["3", "busybox"]);
            c
        }
    };
    // Debian's busybox 1.35 wget segfaults with -T, hence timeout(1).
    let out = cmd.args(["wget", "-qO-", url]).output().expect("wget runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// These Services of the default namespace, marked changed.
fn marked(names: &[&str]) -> ServiceChanges {
    let mut c = ServiceChanges::default();
    names.iter().for_each(|n| c.mark("default", n));
    c
}

fn tally(netns: Option<&str>, url: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let body = get(netns, url).unwrap_or_else(|e| panic!("GET {url} from {netns:?}: {e}"));
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

/// A Service with one http port 8080 -> 80; `extra` fields are merged into its spec.
fn service(name: &str, ip: &str, extra: Value) -> Service {
    let mut spec =
        json!({"clusterIP": ip, "ports": [{"name": "http", "port": 8080, "targetPort": 80, "protocol": "TCP"}]});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"namespace": "default", "name": name}, "spec": spec})).unwrap()
}

fn slice(svc: &str, ips: &[&str]) -> EndpointSlice {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}))
        .collect();
    serde_json::from_value(
        json!({"metadata": {"namespace": "default", "name": svc, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], "endpoints": endpoints}),
    )
    .unwrap()
}

#[test]
fn services_through_real_nftables() {
    let tok = token();
    let x = u8::from_str_radix(&tok[..2], 16).unwrap();
    let (gw, ip_a, ip_b, ip_c) =
        (format!("198.19.{x}.1"), format!("198.19.{x}.10"), format!("198.19.{x}.11"), format!("198.19.{x}.12"));
    let bridge = format!("kpbr{tok}");
    let table = format!("kp-test-{tok}");
    let mut guards = Vec::new();
    // Pod -> ClusterIP is routed back out of the bridge after DNAT, as on a node (the pod
    // network enables forwarding there; a fresh host has it off).
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable forwarding");
    sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
    guards.push(Cleanup(vec!["link".into(), "del".into(), bridge.clone()]));
    sh(&["ip", "addr", "add", &format!("{gw}/24"), "dev", &bridge]);
    sh(&["ip", "link", "set", &bridge, "up"]);
    let ns_a = pod(&mut guards, &tok, "a", &bridge, &ip_a, &gw);
    let ns_b = pod(&mut guards, &tok, "b", &bridge, &ip_b, &gw);
    let ns_c = pod(&mut guards, &tok, "c", &bridge, &ip_c, &gw);
    let dir = TempDir(std::env::temp_dir().join(format!("kp-{tok}")));
    let mut servers = Vec::new();
    for (ns, name) in [(&ns_a, "backend-a"), (&ns_b, "backend-b")] {
        let root = dir.0.join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), format!("{name}\n")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "busybox", "httpd", "-f", "-p", "80", "-h", root.to_str().unwrap()])
            .spawn()
            .expect("httpd starts");
        servers.push(Process(child));
    }
    let direct = format!("http://{ip_a}/");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(Some(&ns_c), &direct).is_err() {
        assert!(Instant::now() < deadline, "httpd in {ns_a} never answered");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (vip, vip_empty, vip_sticky) = (format!("198.18.{x}.10"), format!("198.18.{x}.20"), format!("198.18.{x}.30"));
    let node_port = 30000 + (u16::from_str_radix(&tok[2..5], 16).unwrap() % 2700);
    let config = ProxierConfig {
        rules: RulesConfig { table: table.clone(), cluster_cidr: None, localhost_nodeports: true, node_name: None },
        service_cidr: Some(format!("198.18.{x}.0/24")),
        route_dev: bridge.clone(),
        min_sync_period: Duration::from_secs(1),
    };
    let mut proxier = Proxier::new(config);
    let services = vec![
        service(
            "web",
            &vip,
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 8080, "targetPort": 80, "nodePort": node_port}]}),
        ),
        service("empty", &vip_empty, json!({})),
        service(
            "sticky",
            &vip_sticky,
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}}}),
        ),
    ];
    let both = [ip_a.as_str(), ip_b.as_str()];
    let slices = vec![slice("web", &both), slice("sticky", &both)];
    // The first sync reads every Service, whatever is marked.
    let stats = proxier.sync(&marked(&[]), &ServiceList::new(&services), &SliceList::new(&slices)).expect("first sync");
    assert_eq!((stats.service_ports, stats.endpoints, stats.recomputed), (3, 4, 3));
    assert!(sh(&["nft", "list", "tables"]).contains(&table));

    let url = format!("http://{vip}:8080/");
    for (who, ns) in [("client pod", Some(ns_c.as_str())), ("host", None), ("backend a (hairpin)", Some(ns_a.as_str()))]
    {
        let seen = tally(ns, &url, 40);
        println!("ClusterIP from {who}: {seen:?}");
        assert!(seen.get("backend-a").copied().unwrap_or(0) > 0 && seen.get("backend-b").copied().unwrap_or(0) > 0);
    }

    let started = Instant::now();
    let err = get(Some(&ns_c), &format!("http://{vip_empty}:8080/")).expect_err("no endpoints");
    let from_host = get(None, &format!("http://{vip_empty}:8080/")).expect_err("no endpoints");
    println!("no endpoints: {err} / {from_host} in {:?}", started.elapsed());
    assert!(err.contains("refused") && from_host.contains("refused"), "{err} / {from_host}");
    assert!(started.elapsed() < Duration::from_secs(2));

    for addr in ["127.0.0.1", gw.as_str()] {
        let seen = tally(None, &format!("http://{addr}:{node_port}/"), 20);
        println!("NodePort {addr}:{node_port}: {seen:?}");
        assert!(seen.len() == 2, "NodePort on {addr} reaches both backends: {seen:?}");
    }

    let seen = tally(Some(&ns_c), &format!("http://{vip_sticky}:8080/"), 20);
    println!("ClientIP affinity: {seen:?}");
    assert_eq!(seen.len(), 1, "one client pinned to one backend: {seen:?}");

    // Endpoint update: only b is left for web, and a service without endpoints gets one.
    let slices = vec![slice("web", &[ip_b.as_str()]), slice("sticky", &both), slice("empty", &[ip_a.as_str()])];
    let stats = proxier
        .sync(&marked(&["web", "empty"]), &ServiceList::new(&services), &SliceList::new(&slices))
        .expect("update");
    println!("update applied in {:?}", stats.apply);
    assert_eq!((stats.recomputed, stats.changed, stats.service_ports, stats.endpoints), (2, 2, 3, 4));
    let moved = tally(Some(&ns_c), &url, 20);
    assert_eq!(moved.get("backend-b"), Some(&20), "{moved:?}");
    assert_eq!(get(Some(&ns_c), &format!("http://{vip_empty}:8080/")).as_deref(), Ok("backend-a"));
    // Affinity survives the update (its sets are not recreated): still the same backend.
    let again = tally(Some(&ns_c), &format!("http://{vip_sticky}:8080/"), 5);
    assert_eq!(again.keys().collect::<Vec<_>>(), seen.keys().collect::<Vec<_>>(), "{again:?} vs {seen:?}");

    // A UDP flow to an endpoint that leaves loses its conntrack entry (else a client reusing
    // its source port, as resolvers do, keeps reaching the old endpoint).
    let vip_dns = format!("198.18.{x}.40");
    let dns_svc: Service = serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "dns"},
        "spec": {"clusterIP": vip_dns, "ports": [{"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]}}))
    .unwrap();
    let dns_slice = |ip: &str| -> EndpointSlice {
        serde_json::from_value(
            json!({"metadata": {"namespace": "default", "name": "dns", "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4", "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]}),
        )
        .unwrap()
    };
    let mut with_dns = services.clone();
    with_dns.push(dns_svc);
    let mut dns_slices = slices.clone();
    dns_slices.push(dns_slice(&ip_a));
    proxier.sync(&marked(&["dns"]), &ServiceList::new(&with_dns), &SliceList::new(&dns_slices)).expect("udp service");
    // From the host (OUTPUT DNAT): the flow is tracked in this namespace.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.send_to(b"query", format!("{vip_dns}:53")).expect("udp sent");
    let flows_to_a = || {
        let out = Command::new("conntrack")
            .args(["-L", "-p", "udp", "--orig-dst", &vip_dns, "--reply-src", &ip_a])
            .output()
            .expect("conntrack runs");
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("udp")).count()
    };
    assert_eq!(flows_to_a(), 1, "the flow to backend a is tracked");
    dns_slices.pop();
    dns_slices.push(dns_slice(&ip_b));
    proxier
        .sync(&marked(&["dns"]), &ServiceList::new(&with_dns), &SliceList::new(&dns_slices))
        .expect("udp endpoint change");
    assert_eq!(flows_to_a(), 0, "the stale flow to backend a is gone");

    // Deleting a service removes its rules.
    with_dns.remove(0);
    let stats =
        proxier.sync(&marked(&["web"]), &ServiceList::new(&with_dns), &SliceList::new(&dns_slices)).expect("delete");
    assert_eq!((stats.recomputed, stats.service_ports), (1, 3), "empty, sticky and dns are left");
    assert!(get(Some(&ns_c), &url).is_err());

    // Someone else empties a map of the table: the next incremental update fails (its element
    // delete finds nothing) and the table is replaced whole.
    let empty_url = format!("http://{vip_empty}:8080/");
    sh(&["nft", "flush", "map", "ip", &table, "service-ips"]);
    assert!(get(Some(&ns_c), &empty_url).is_err());
    with_dns.retain(|s| s.metadata.name.as_deref() != Some("sticky"));
    proxier
        .sync(&marked(&["sticky"]), &ServiceList::new(&with_dns), &SliceList::new(&dns_slices))
        .expect("the table replaced after a failed incremental update");
    assert_eq!(get(Some(&ns_c), &empty_url).as_deref(), Ok("backend-a"));
    assert!(!sh(&["nft", "list", "table", "ip", &table]).contains("default/sticky"));

    proxier.cleanup().expect("cleanup");
    assert!(!sh(&["nft", "list", "tables"]).contains(&table));
    assert!(!sh(&["ip", "route"]).contains(&format!("198.18.{x}.0/24")));
}

#[test]
fn thousand_services_apply_time() {
    let table = format!("kp-bench-{}", token());
    let config = ProxierConfig {
        rules: RulesConfig {
            table: table.clone(),
            cluster_cidr: Some("10.244.0.0/16".into()),
            localhost_nodeports: false,
            node_name: None,
        },
        service_cidr: None,
        route_dev: "lo".into(),
        min_sync_period: Duration::from_secs(1),
    };
    let services: Vec<Service> = (0..1000)
        .map(|i| service(&format!("svc-{i}"), &format!("10.96.{}.{}", i / 250, i % 250 + 1), json!({})))
        .collect();
    let endpoints = |i: usize, gen: usize| -> Vec<String> {
        (0..10).map(|j| (i * 10 + j, j)).map(|(k, _)| format!("10.{}.{}.{}", 100 + gen, k / 250, k % 250 + 1)).collect()
    };
    let mk_slices = |gen_of: &dyn Fn(usize) -> usize| -> Vec<EndpointSlice> {
        (0..1000)
            .map(|i| {
                let ips = endpoints(i, gen_of(i));
                slice(&format!("svc-{i}"), &ips.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect()
    };
    let slices = mk_slices(&|_| 0);
    let mut proxier = Proxier::new(config.clone());
    // A table left by an earlier run (crash) is replaced by the first sync, not merged into.
    sh(&["nft", "add", "table", "ip", &table]);
    sh(&["nft", "add", "chain", "ip", &table, "leftover-from-a-crash"]);
    let full = proxier
        .sync(&ServiceChanges::all(), &ServiceList::new(&services), &SliceList::new(&slices))
        .expect("full sync");
    assert_eq!((full.service_ports, full.endpoints, full.recomputed), (1000, 10_000, 1000));
    // One service's endpoints change: only its rules are recomputed, and the time until the
    // new rule is live is the time nft takes to commit the transaction.
    let changed = mk_slices(&|i| usize::from(i == 500));
    let incremental = proxier
        .sync(&marked(&["svc-500"]), &ServiceList::new(&services), &SliceList::new(&changed))
        .expect("incremental sync");
    assert_eq!((incremental.recomputed, incremental.changed, incremental.endpoints), (1, 1, 10_000));
    let listed = sh(&["nft", "list", "table", "ip", &table]);
    assert!(!listed.contains("leftover-from-a-crash"));
    assert!(listed.contains(&format!("dnat to {}:80", endpoints(500, 1)[0])));
    assert!(!listed.contains(&format!("dnat to {}:80", endpoints(500, 0)[0])));
    println!(
        "1000 services x 10 endpoints: first (full) sync {:?} + {:?}, endpoint change {:?} + {:?} (compute + apply)",
        full.compute, full.apply, incremental.compute, incremental.apply
    );
    proxier.cleanup().unwrap();
    assert!(!sh(&["nft", "list", "tables"]).contains(&table));
}
