use super::*;
use crate::slices::SliceList;
use k8s_openapi::api::core::v1::ServiceSpec;
use serde_json::{json, Value};

fn config(table: &str) -> RulesConfig {
    RulesConfig { table: table.into(), cluster_cidr: None, localhost_nodeports: false, node_name: None }
}

/// The ruleset for these Services and a list of EndpointSlices.
fn compute<S: Borrow<Service>, E: Borrow<EndpointSlice>>(
    config: &RulesConfig,
    services: &[S],
    slices: &[E],
) -> Result<ProxyRules, RulesError> {
    ProxyRules::compute(config, services, &SliceList::new(slices))
}

fn service(name: &str, ip: &str, ports: Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"namespace": "ns1", "name": name}, "spec": {"clusterIP": ip, "ports": ports}}),
    )
    .unwrap()
}

fn spec(svc: &mut Service) -> &mut ServiceSpec {
    svc.spec.as_mut().unwrap()
}

fn slice(svc: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({"metadata": {"namespace": "ns1", "name": format!("{svc}-abc"), "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints}))
    .unwrap()
}

fn ep(ip: &str, ready: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating}})
}

const NO_SLICES: &[EndpointSlice] = &[];

/// `nft -c` checks a script against the kernel without committing it: the text is valid nft.
fn nft_check(script: &str) {
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft -c rejected:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
}

fn web() -> (Vec<Service>, Vec<EndpointSlice>) {
    let svc = service("web", "10.96.0.10", json!([{"name": "http", "port": 80, "targetPort": 8080}]));
    let sl = slice(
        "web",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        json!([ep("10.244.0.5", true, false), ep("10.244.0.6", true, false), ep("10.244.0.7", false, false)]),
    );
    (vec![svc], vec![sl])
}

#[test]
fn cluster_ip_balances_over_ready_endpoints() {
    let (svcs, slices) = web();
    let r = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    let text = r.full_text();
    assert_eq!((r.service_ports(), r.endpoints()), (1, 2));
    let chain = format!("service-{}-ns1/web/tcp/http", hash_prefix("ns1/web/tcp/http"));
    assert!(text.contains(&format!("add element ip kp-unit service-ips {{ 10.96.0.10 . tcp . 80 : goto {chain} }}")));
    let ep5 =
        format!("endpoint-{}-ns1/web/tcp/http__10.244.0.5/8080", hash_prefix("ns1/web/tcp/http__10.244.0.5/8080"));
    let ep6 =
        format!("endpoint-{}-ns1/web/tcp/http__10.244.0.6/8080", hash_prefix("ns1/web/tcp/http__10.244.0.6/8080"));
    assert!(text.contains(&format!(
        "add rule ip kp-unit {chain} numgen random mod 2 vmap {{ 0 : goto {ep5}, 1 : goto {ep6} }}"
    )));
    assert!(text.contains(&format!("add rule ip kp-unit {ep5} meta l4proto tcp dnat to 10.244.0.5:8080")));
    // The not-ready endpoint gets nothing.
    assert!(!text.contains("10.244.0.7"));
    // Hairpin: an endpoint reaching itself is masqueraded.
    assert!(text.contains(&format!("add rule ip kp-unit {ep5} ip saddr 10.244.0.5 jump mark-for-masquerade")));
    assert!(text.contains("add rule ip kp-unit masquerading masquerade fully-random"));
    assert!(text.starts_with("add table ip kp-unit\ndelete table ip kp-unit\n"));
    nft_check(&text);
}

#[test]
fn udp_and_sctp_ports_and_unnamed_ports() {
    let svc = service(
        "dns",
        "10.96.0.53",
        json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "s", "port": 99, "protocol": "SCTP"}]),
    );
    let sl = slice(
        "dns",
        json!([{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "s", "port": 9999, "protocol": "SCTP"}]),
        json!([ep("10.244.1.2", true, false)]),
    );
    let plain = service("plain", "10.96.0.54", json!([{"port": 81}]));
    let plain_sl = slice("plain", json!([{"port": 8081}]), json!([ep("10.244.1.3", true, false)]));
    let r = compute(&config("kp-unit"), &[svc, plain], &[sl, plain_sl]).unwrap();
    let text = r.full_text();
    assert!(text.contains("10.96.0.53 . udp . 53 : goto service-"));
    assert!(text.contains("meta l4proto udp dnat to 10.244.1.2:5353"));
    assert!(text.contains("10.96.0.53 . sctp . 99 : goto service-"));
    assert!(text.contains("meta l4proto sctp dnat to 10.244.1.2:9999"));
    assert!(text.contains("-ns1/plain/tcp/81 "), "unnamed ports are named by number");
    assert!(text.contains("meta l4proto tcp dnat to 10.244.1.3:8081"));
    assert_eq!(r.endpoints(), 3);
    nft_check(&text);
}

#[test]
fn terminating_serving_endpoints_are_a_fallback_only() {
    let svc = service("web", "10.96.0.10", json!([{"name": "http", "port": 80}]));
    let ports = json!([{"name": "http", "port": 80}]);
    let both = slice("web", ports.clone(), json!([ep("10.244.0.5", true, false), ep("10.244.0.9", false, true)]));
    let text = compute(&config("kp-unit"), std::slice::from_ref(&svc), &[both]).unwrap().full_text();
    assert!(!text.contains("10.244.0.9"));
    let only_terminating = slice("web", ports, json!([ep("10.244.0.9", false, true)]));
    let text = compute(&config("kp-unit"), &[svc], &[only_terminating]).unwrap().full_text();
    assert!(text.contains("dnat to 10.244.0.9:80"));
}

#[test]
fn services_without_endpoints_reject() {
    let mut svc = service("empty", "10.96.0.20", json!([{"port": 80, "nodePort": 30080}]));
    spec(&mut svc).type_ = Some("NodePort".into());
    let r = compute(&config("kp-unit"), &[svc], NO_SLICES).unwrap();
    let text = r.full_text();
    assert!(text.contains("add element ip kp-unit no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"));
    assert!(text.contains("add element ip kp-unit no-endpoint-nodeports { tcp . 30080 : goto reject-chain }"));
    assert!(text.contains("add rule ip kp-unit reject-chain meta l4proto tcp reject with tcp reset"));
    assert!(text.contains("add rule ip kp-unit filter-output ct state new jump service-endpoints-check"));
    assert!(!text.contains("add element ip kp-unit service-ips"));
    assert_eq!((r.service_ports(), r.endpoints()), (1, 0));
    nft_check(&text);
}

#[test]
fn node_ports_masquerade_and_localhost_is_optional() {
    let (mut svcs, slices) = web();
    spec(&mut svcs[0]).type_ = Some("NodePort".into());
    spec(&mut svcs[0]).ports.as_mut().unwrap()[0].node_port = Some(30080);
    let text = compute(&config("kp-unit"), &svcs, &slices).unwrap().full_text();
    let ext = format!("external-{}-ns1/web/tcp/http", hash_prefix("ns1/web/tcp/http"));
    assert!(text.contains(&format!("service-nodeports {{ tcp . 30080 : goto {ext} }}")));
    assert!(text.contains(&format!("add rule ip kp-unit {ext} jump mark-for-masquerade")));
    assert!(
        text.contains("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports")
    );
    assert!(!text.contains("ct status & dnat == 0 drop"));
    nft_check(&text);
    let mut cfg = config("kp-unit");
    cfg.localhost_nodeports = true;
    let text = compute(&cfg, &svcs, &slices).unwrap().full_text();
    assert!(text
        .contains("add rule ip kp-unit services fib daddr type local meta l4proto . th dport vmap @service-nodeports"));
    assert!(text.contains("ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop"));
    nft_check(&text);
    // A ClusterIP service's nodePort field (left over from a type change) is not programmed.
    spec(&mut svcs[0]).type_ = Some("ClusterIP".into());
    let text = compute(&cfg, &svcs, &slices).unwrap().full_text();
    assert!(!text.contains("30080"));
}

#[test]
fn session_affinity_uses_a_timeout_set_per_endpoint() {
    let (mut svcs, slices) = web();
    spec(&mut svcs[0]).session_affinity = Some("ClientIP".into());
    spec(&mut svcs[0]).session_affinity_config =
        serde_json::from_value(json!({"clientIP": {"timeoutSeconds": 60}})).unwrap();
    let r = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    let text = r.full_text();
    let set =
        format!("affinity-{}-ns1/web/tcp/http__10.244.0.5/8080", hash_prefix("ns1/web/tcp/http__10.244.0.5/8080/60"));
    assert!(
        text.contains(&format!("add set ip kp-unit {set} {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}"))
    );
    assert!(text.contains(&format!("update @{set} {{ ip saddr }}")));
    assert!(text.contains(&format!("ip saddr @{set} goto endpoint-")));
    nft_check(&text);
    // Without timeoutSeconds: upstream's default of 3 hours.
    spec(&mut svcs[0]).session_affinity_config = None;
    let text = compute(&config("kp-unit"), &svcs, &slices).unwrap().full_text();
    assert!(text.contains("timeout 10800s;"));
}

#[test]
fn cluster_cidr_masquerades_outside_sources() {
    let (svcs, slices) = web();
    let mut cfg = config("kp-unit");
    cfg.cluster_cidr = Some("10.244.0.0/16".into());
    let text = compute(&cfg, &svcs, &slices).unwrap().full_text();
    assert!(text.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
    cfg.cluster_cidr = Some("10.244.0.0/33".into());
    assert!(matches!(compute(&cfg, &svcs, &slices), Err(RulesError::InvalidCidr(_))));
    assert!(matches!(compute(&config("bad name;"), &svcs, &slices), Err(RulesError::InvalidTable(_))));
}

#[test]
fn headless_external_name_and_ipv6_are_skipped() {
    let headless = service("h", "None", json!([{"port": 80}]));
    let mut ext = service("e", "", json!([{"port": 80}]));
    spec(&mut ext).type_ = Some("ExternalName".into());
    let v6 = service("v6", "fd00::10", json!([{"port": 80}]));
    let r = compute(&config("kp-unit"), &[headless, ext, v6], NO_SLICES).unwrap();
    assert_eq!(r.service_ports(), 0);
}

#[test]
fn slices_of_one_service_merge_and_dedupe() {
    let svc = service("web", "10.96.0.10", json!([{"name": "http", "port": 80}]));
    let ports = json!([{"name": "http", "port": 80}]);
    let mut a = slice("web", ports.clone(), json!([ep("10.244.0.5", true, false)]));
    let b = slice("web", ports, json!([ep("10.244.0.5", true, false), ep("10.244.0.6", true, false)]));
    a.metadata.name = Some("web-1".into());
    let r = compute(&config("kp-unit"), &[svc], &[a, b]).unwrap();
    assert_eq!(r.endpoints(), 2);
}

#[test]
fn incremental_update_keeps_affinity_sets_and_deletes_stale_objects() {
    let (mut svcs, slices) = web();
    spec(&mut svcs[0]).session_affinity = Some("ClientIP".into());
    let before = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    let fewer = slice("web", json!([{"name": "http", "port": 8080}]), json!([ep("10.244.0.5", true, false)]));
    let after = compute(&config("kp-unit"), &svcs, &[fewer]).unwrap();
    let text = after.incremental_text(&before);
    assert!(!text.contains("delete table"));
    let gone =
        format!("endpoint-{}-ns1/web/tcp/http__10.244.0.6/8080", hash_prefix("ns1/web/tcp/http__10.244.0.6/8080"));
    assert!(text.contains(&format!("delete chain ip kp-unit {gone}")));
    assert!(text.contains("delete set ip kp-unit affinity-"));
    let kept = format!(
        "affinity-{}-ns1/web/tcp/http__10.244.0.5/8080",
        hash_prefix("ns1/web/tcp/http__10.244.0.5/8080/10800")
    );
    assert!(!text.contains(&format!("flush set ip kp-unit {kept}")));
    assert!(!text.contains(&format!("delete set ip kp-unit {kept}")));
    assert!(text.contains("numgen random mod 1 vmap"));
    // Only what changed is written: the kept endpoint chain and the base chains stay as they are.
    let kept_chain =
        format!("endpoint-{}-ns1/web/tcp/http__10.244.0.5/8080", hash_prefix("ns1/web/tcp/http__10.244.0.5/8080"));
    assert!(!text.contains(&kept_chain.to_string().replace("endpoint-", "add rule ip kp-unit endpoint-")));
    assert!(!text.contains("add rule ip kp-unit services "));
    assert!(!text.contains("add element"), "the service's map element still points to the same chain");
    // Nothing changed: nothing but idempotent declarations.
    let same = after.incremental_text(&after);
    assert!(!same.contains("add rule") && !same.contains("element") && !same.contains("delete"), "{same}");
}

fn on_node(ip: &str, node: &str) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": node})
}

#[test]
fn traffic_policies_local_use_this_nodes_endpoints() {
    let mut svc = service("web", "10.96.0.10", json!([{"name": "http", "port": 80, "nodePort": 30080}]));
    spec(&mut svc).type_ = Some("NodePort".into());
    spec(&mut svc).external_traffic_policy = Some("Local".into());
    spec(&mut svc).internal_traffic_policy = Some("Local".into());
    let sl = slice(
        "web",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        json!([on_node("10.244.0.5", "a"), on_node("10.244.1.5", "b"), on_node("10.244.1.6", "b")]),
    );
    let id = "ns1/web/tcp/http";
    let (local, cluster, external) = (
        format!("local-{}-{id}", hash_prefix(id)),
        format!("service-{}-{id}", hash_prefix(id)),
        format!("external-{}-{id}", hash_prefix(id)),
    );
    let ep = |ip: &str| format!("endpoint-{}-{id}__{ip}/8080", hash_prefix(&format!("{id}__{ip}/8080")));
    let mut cfg = config("kp-unit");
    cfg.cluster_cidr = Some("10.244.0.0/16".into());
    cfg.node_name = Some("a".into());
    let text = compute(&cfg, &[&svc], &[&sl]).unwrap().full_text();
    nft_check(&text);
    // ClusterIP: only node a's endpoint, no masquerade.
    assert!(text.contains(&format!("service-ips {{ 10.96.0.10 . tcp . 80 : goto {local} }}")), "{text}");
    assert!(text.contains(&format!(
        "add rule ip kp-unit {local} numgen random mod 1 vmap {{ 0 : goto {} }}",
        ep("10.244.0.5")
    )));
    assert!(!text.contains(&format!("add rule ip kp-unit {local} ip saddr")));
    // NodePort: pods and the node itself reach all three; outsiders the local one, unmasqueraded.
    let rules: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix(&format!("add rule ip kp-unit {external} "))).collect();
    assert_eq!(
        rules,
        [
            format!("ip saddr 10.244.0.0/16 goto {cluster}"),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {cluster}"),
            format!("goto {local}"),
        ]
    );
    assert!(text.contains(&format!("add rule ip kp-unit {cluster} numgen random mod 3 vmap")));

    // On node c (no endpoint of its own): the ClusterIP rejects, outsiders' NodePort traffic
    // is dropped, pods still reach the service through the NodePort.
    cfg.node_name = Some("c".into());
    let text = compute(&cfg, &[&svc], &[&sl]).unwrap().full_text();
    nft_check(&text);
    assert!(text.contains("no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }"), "{text}");
    assert!(text.contains(&format!("add rule ip kp-unit {external} drop")));
    assert!(!text.contains(&local));

    // Cluster policies (or an unknown node name) ignore locality.
    spec(&mut svc).external_traffic_policy = Some("Cluster".into());
    spec(&mut svc).internal_traffic_policy = Some("Cluster".into());
    let text = compute(&cfg, &[&svc], &[&sl]).unwrap().full_text();
    assert!(text.contains(&format!("service-ips {{ 10.96.0.10 . tcp . 80 : goto {cluster} }}")));
    assert!(text.contains(&format!("add rule ip kp-unit {external} jump mark-for-masquerade")));
}

#[test]
fn udp_flows_of_departed_endpoints_are_stale() {
    let mut svc =
        service("dns", "10.96.0.10", json!([{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]));
    spec(&mut svc).type_ = Some("NodePort".into());
    let ports = json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]);
    let before = slice("dns", ports.clone(), json!([ep("10.244.0.5", true, false), ep("10.244.0.6", true, false)]));
    let after = slice("dns", ports, json!([ep("10.244.0.6", true, false), ep("10.244.0.7", true, false)]));
    let cfg = config("kp-unit");
    let old = compute(&cfg, &[&svc], &[&before]).unwrap();
    let new = compute(&cfg, &[&svc], &[&after]).unwrap();
    let gone: Ipv4Addr = "10.244.0.5".parse().unwrap();
    assert_eq!(
        new.stale_udp_flows(&old),
        vec![
            UdpFlow { dst: None, port: 30053, endpoint: gone },
            UdpFlow { dst: Some("10.96.0.10".parse().unwrap()), port: 53, endpoint: gone },
        ]
    );
    assert!(old.stale_udp_flows(&old).is_empty());
}
