use super::*;
use crate::slices::{SliceList, SERVICE_NAME_LABEL};
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

/// Marks these Services of ns1.
fn marked(names: &[&str]) -> ServiceChanges {
    let mut c = ServiceChanges::default();
    names.iter().for_each(|n| c.mark("ns1", n));
    c
}

/// Recomputes the marked Services of `rules` from these lists.
fn update<S: Borrow<Service>, E: Borrow<EndpointSlice>>(
    rules: &mut ProxyRules,
    changes: &ServiceChanges,
    services: &[S],
    slices: &[E],
) -> RulesUpdate {
    rules.update(changes, &ServiceList::new(services), &SliceList::new(slices))
}

#[test]
fn incremental_update_keeps_affinity_sets_and_deletes_stale_objects() {
    let (mut svcs, slices) = web();
    spec(&mut svcs[0]).session_affinity = Some("ClientIP".into());
    let mut rules = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    let fewer = slice("web", json!([{"name": "http", "port": 8080}]), json!([ep("10.244.0.5", true, false)]));
    let up = update(&mut rules, &marked(&["web"]), &svcs, &[&fewer]);
    assert_eq!((up.recomputed(), up.changed()), (1, 1));
    let text = up.text();
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
    assert!(!text.contains(&format!("add set ip kp-unit {kept}")));
    assert!(text.contains("numgen random mod 1 vmap"));
    // Only what changed is written: the kept endpoint chain and the base chains stay as they are.
    let kept_chain =
        format!("endpoint-{}-ns1/web/tcp/http__10.244.0.5/8080", hash_prefix("ns1/web/tcp/http__10.244.0.5/8080"));
    assert!(!text.contains(&kept_chain.to_string().replace("endpoint-", "add rule ip kp-unit endpoint-")));
    assert!(!text.contains("add rule ip kp-unit services "));
    assert!(!text.contains("add element"), "the service's map element still points to the same chain");
    assert_eq!(rules, compute(&config("kp-unit"), &svcs, &[&fewer]).unwrap());
    // Nothing changed: nothing to write, whether one Service or all are recomputed.
    assert!(update(&mut rules, &marked(&["web"]), &svcs, &[&fewer]).is_empty());
    let all = update(&mut rules, &ServiceChanges::all(), &svcs, &[&fewer]);
    assert!(all.is_empty() && all.recomputed() == 1, "{}", all.text());
}

/// A table of the test's own, deleted on drop (also when the test fails).
struct Table(String);

impl Table {
    fn new(which: &str) -> Table {
        Table(format!("kp-{which}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = nft(&format!("add table ip {t}\ndelete table ip {t}\n", t = self.0));
    }
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What the kernel holds in `table`, comparable across tables: each chain's declaration and
/// rules in order, each set's and map's declaration and sorted elements (no handles, no
/// table name).
fn kernel_state(table: &str) -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new("nft").args(["-j", "list", "table", "ip", table]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut state: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in listing["nftables"].as_array().unwrap() {
        let Some((kind, obj)) = item.as_object().and_then(|o| o.iter().next()) else { continue };
        let mut obj = obj.as_object().unwrap().clone();
        for field in ["handle", "table", "family"] {
            obj.remove(field);
        }
        match kind.as_str() {
            "chain" => {
                state.entry(format!("chain {}", obj["name"])).or_default().insert(0, Value::from(obj).to_string())
            }
            "rule" => state.entry(format!("chain {}", obj["chain"])).or_default().push(obj["expr"].to_string()),
            "set" | "map" => {
                let mut elements: Vec<String> = obj
                    .remove("elem")
                    .and_then(|e| e.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .map(Value::to_string)
                    .collect();
                elements.sort();
                elements.insert(0, Value::from(obj.clone()).to_string());
                state.insert(format!("{kind} {}", obj["name"]), elements);
            }
            _ => {}
        }
    }
    state
}

/// Many Services of every kind the rules know (NodePort, affinity, UDP, local policies, no
/// endpoints), each with its slice.
fn many() -> (Vec<Service>, Vec<EndpointSlice>) {
    let (mut svcs, mut slices) = (vec![], vec![]);
    for i in 0..40u32 {
        let name = format!("svc-{i}");
        let proto = if i % 7 == 3 { "UDP" } else { "TCP" };
        let mut svc = service(
            &name,
            &format!("10.96.1.{i}"),
            json!([{"name": "p", "port": 80, "protocol": proto, "nodePort": 30000 + i}]),
        );
        if i % 2 == 0 {
            spec(&mut svc).type_ = Some("NodePort".into());
        }
        if i % 5 == 1 {
            spec(&mut svc).session_affinity = Some("ClientIP".into());
        }
        if i % 6 == 2 {
            spec(&mut svc).external_traffic_policy = Some("Local".into());
        }
        svcs.push(svc);
        // Every ninth Service has no endpoints.
        if i % 9 != 5 {
            let eps: Vec<Value> =
                (0..3).map(|j| on_node(&format!("10.244.{i}.{j}"), ["a", "b"][(j % 2) as usize])).collect();
            slices.push(slice(&name, json!([{"name": "p", "port": 8080, "protocol": proto}]), Value::from(eps)));
        }
    }
    (svcs, slices)
}

/// Applies `up` to the kernel table `incremental` (which holds the rules before it), replaces
/// `full` with a fresh computation from the same objects, and checks that the kernel holds the
/// same in both, and that the incrementally updated rules equal the fresh ones.
fn same_as_fresh(
    rules: &ProxyRules,
    up: &RulesUpdate,
    incremental: &Table,
    full: &Table,
    svcs: &[Service],
    slices: &[EndpointSlice],
) {
    nft(&up.text()).unwrap_or_else(|e| panic!("incremental text refused: {e}\n{}", up.text()));
    let mut cfg = rules.config().clone();
    cfg.table = full.0.clone();
    let fresh = compute(&cfg, svcs, slices).unwrap();
    nft(&fresh.full_text()).unwrap();
    assert_eq!(kernel_state(&incremental.0), kernel_state(&full.0));
    let mut fresh_here = compute(rules.config(), svcs, slices).unwrap();
    assert_eq!(rules, &fresh_here);
    // The text of a full recompute of unchanged objects is empty.
    assert!(update(&mut fresh_here, &ServiceChanges::all(), svcs, slices).is_empty());
}

#[test]
fn incremental_updates_leave_the_kernel_as_a_full_recompute_would() {
    let (incremental, full) = (Table::new("incr"), Table::new("full"));
    let mut cfg = config(&incremental.0);
    cfg.node_name = Some("a".into());
    cfg.cluster_cidr = Some("10.244.0.0/16".into());
    let (mut svcs, mut slices) = many();
    let mut rules = compute(&cfg, &svcs, &slices).unwrap();
    nft(&rules.full_text()).unwrap();

    // One endpoint of one Service among many changes (a UDP one with affinity: its flows and
    // sets are involved too).
    let i = slices.iter().position(|s| s.name() == "svc-31-abc").unwrap();
    slices[i].endpoints[0].addresses = vec!["10.244.99.1".into()];
    let up = update(&mut rules, &marked(&["svc-31"]), &svcs, &slices);
    assert_eq!((up.recomputed(), up.changed()), (1, 1));
    assert_eq!(up.stale_udp_flows().len(), 1, "the old endpoint's ClusterIP flow");
    same_as_fresh(&rules, &up, &incremental, &full, &svcs, &slices);

    // A Service without endpoints gets some; one loses all of them.
    slices.push(slice(
        "svc-5",
        json!([{"name": "p", "port": 8080, "protocol": "TCP"}]),
        json!([ep("10.244.5.9", true, false)]),
    ));
    slices.retain(|s| s.name() != "svc-7-abc");
    let up = update(&mut rules, &marked(&["svc-5", "svc-7"]), &svcs, &slices);
    assert_eq!(up.changed(), 2);
    same_as_fresh(&rules, &up, &incremental, &full, &svcs, &slices);

    // A Service's ClusterIP moves; another is deleted and a new one takes its ClusterIP and
    // NodePort in the same sync (deletes come before adds).
    spec(&mut svcs[3]).cluster_ip = Some("10.96.2.3".into());
    let taken = svcs.remove(6);
    let mut newcomer = taken.clone();
    newcomer.metadata.name = Some("newcomer".into());
    svcs.push(newcomer);
    slices.push(slice(
        "newcomer",
        json!([{"name": "p", "port": 8080, "protocol": "TCP"}]),
        json!([ep("10.244.77.1", true, false)]),
    ));
    let up = update(&mut rules, &marked(&["svc-3", "svc-6", "newcomer"]), &svcs, &slices);
    assert_eq!(up.changed(), 3);
    same_as_fresh(&rules, &up, &incremental, &full, &svcs, &slices);

    // An affinity timeout change makes new sets; a type change drops the NodePort.
    spec(&mut svcs[1]).session_affinity_config =
        serde_json::from_value(json!({"clientIP": {"timeoutSeconds": 60}})).unwrap();
    spec(&mut svcs[2]).type_ = Some("ClusterIP".into());
    let up = update(&mut rules, &ServiceChanges::all(), &svcs, &slices);
    assert_eq!((up.recomputed(), up.changed()), (svcs.len(), 2));
    same_as_fresh(&rules, &up, &incremental, &full, &svcs, &slices);

    // A resync that finds Services gone removes them too.
    svcs.truncate(10);
    let up = update(&mut rules, &ServiceChanges::all(), &svcs, &slices);
    assert_eq!(up.changed(), 30);
    same_as_fresh(&rules, &up, &incremental, &full, &svcs, &slices);
}

#[test]
fn deleting_a_service_removes_exactly_its_chains_elements_and_sets() {
    let (mut svcs, mut slices) = web();
    let mut np = svcs[0].clone();
    np.metadata.name = Some("web2".into());
    spec(&mut np).cluster_ip = Some("10.96.0.11".into());
    spec(&mut np).type_ = Some("NodePort".into());
    spec(&mut np).ports.as_mut().unwrap()[0].node_port = Some(30080);
    spec(&mut np).session_affinity = Some("ClientIP".into());
    let mut sl2 = slices[0].clone();
    sl2.metadata.name = Some("web2-abc".into());
    sl2.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "web2".to_string())].into());
    svcs.push(np);
    slices.push(sl2);
    let mut rules = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    let before = rules.full_text();
    svcs.pop();
    let up = update(&mut rules, &marked(&["web2"]), &svcs, &slices);
    let text = up.text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("add table") && !l.starts_with("add map")).collect();
    let web2 = format!("{}-ns1/web2/tcp/http", hash_prefix("ns1/web2/tcp/http"));
    // Its service, external and 2 endpoint chains are flushed and deleted, its 2 sets deleted.
    let deleted: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("delete chain ip kp-unit ")).collect();
    assert_eq!(deleted.len(), 4, "{text}");
    assert!(deleted.iter().all(|c| c.contains("-ns1/web2/")), "{text}");
    assert!(
        deleted.contains(&format!("service-{web2}").as_str()) && deleted.contains(&format!("external-{web2}").as_str())
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("flush chain")).count(), 4);
    let sets: Vec<&&str> = lines.iter().filter(|l| l.starts_with("delete set ip kp-unit affinity-")).collect();
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().all(|l| l.contains("-ns1/web2/")));
    assert!(lines.contains(&"delete element ip kp-unit service-ips { 10.96.0.11 . tcp . 80 }"), "{text}");
    assert!(lines.contains(&"delete element ip kp-unit service-nodeports { tcp . 30080 }"), "{text}");
    assert_eq!(lines.len(), 4 + 4 + 2 + 2, "nothing else: {text}");
    assert!(!text.contains("ns1/web/") && !text.contains("10.96.0.10"));
    assert_eq!(rules, compute(&config("kp-unit"), &svcs, &slices).unwrap());
    assert_eq!((rules.service_ports(), rules.endpoints()), (1, 2));
    // A Service that comes back brings everything back.
    let back = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    assert_ne!(back.full_text(), before);
}

#[test]
fn a_cluster_ip_that_moves_moves_only_the_map_elements() {
    let (mut svcs, slices) = web();
    let mut rules = compute(&config("kp-unit"), &svcs, &slices).unwrap();
    let before = rules.full_text();
    spec(&mut svcs[0]).cluster_ip = Some("10.96.0.99".into());
    let text = update(&mut rules, &marked(&["web"]), &svcs, &slices).text();
    let chain = format!("service-{}-ns1/web/tcp/http", hash_prefix("ns1/web/tcp/http"));
    assert!(text.contains("delete element ip kp-unit service-ips { 10.96.0.10 . tcp . 80 }"), "{text}");
    assert!(text.contains(&format!("add element ip kp-unit service-ips {{ 10.96.0.99 . tcp . 80 : goto {chain} }}")));
    assert!(!text.contains("chain ip") && !text.contains("add rule"), "chains stay: {text}");
    nft_check(&format!("{before}{text}"));
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
    let mut rules = compute(&cfg, &[&svc], &[&before]).unwrap();
    let up = update(&mut rules, &marked(&["dns"]), &[&svc], &[&after]);
    let gone: Ipv4Addr = "10.244.0.5".parse().unwrap();
    assert_eq!(
        up.stale_udp_flows(),
        vec![
            UdpFlow { dst: None, port: 30053, endpoint: gone },
            UdpFlow { dst: Some("10.96.0.10".parse().unwrap()), port: 53, endpoint: gone },
        ]
    );
    assert!(update(&mut rules, &marked(&["dns"]), &[&svc], &[&after]).stale_udp_flows().is_empty());
    // A deleted UDP Service's flows are all stale.
    let up = update(&mut rules, &marked(&["dns"]), &[] as &[Service], &[&after]);
    assert_eq!(up.stale_udp_flows().len(), 4);
}
