//! Sandboxes with the real plugins of /usr/lib/cni, as root. Every test names what it creates on
//! the host after a random token (state dir `kubus-t<tok>`, bridge `kb<tok>`, pod uids
//! `t<tok>-…`, a random 10.x.y.0/24) and a guard undoes it even when an assertion fails.

use kubus_network::{
    CniError, DnsConfig, HostAlias, NetworkConfig, NetworkError, PortMapping, Protocol, SandboxManager, SandboxRequest,
};
use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b
}

fn sh(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().expect(program);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(program: &str, args: &[&str]) -> String {
    let (ok, out) = sh(program, args);
    assert!(ok, "{program} {args:?}: {out}");
    out
}

fn nat_rules() -> String {
    must("iptables-save", &["-t", "nat"])
}

/// One test's host resources; Drop removes whatever is left of them.
struct Env {
    tok: String,
    state: PathBuf,
    bridge: String,
    /// First two octets after 10.: the pod CIDR is 10.a.b.0/24.
    a: u8,
    b: u8,
    extra_netns: Vec<String>,
    extra_links: Vec<String>,
}

impl Env {
    fn new() -> Env {
        let r = random_bytes::<5>();
        let tok = format!("{:02x}{:02x}{:02x}", r[0], r[1], r[2]);
        let state = std::env::temp_dir().join(format!("kubus-t{tok}"));
        std::fs::create_dir_all(&state).unwrap();
        // 10.0/16 and 10.255/16 are common elsewhere; stay between.
        Env {
            bridge: format!("kb{tok}"),
            tok,
            state,
            a: 1 + r[3] % 250,
            b: r[4],
            extra_netns: vec![],
            extra_links: vec![],
        }
    }

    fn pod_cidr(&self) -> String {
        format!("10.{}.{}.0/24", self.a, self.b)
    }

    fn config(&self) -> NetworkConfig {
        let mut cfg = NetworkConfig::new(&self.state, self.pod_cidr());
        cfg.bridge = self.bridge.clone();
        cfg.dns = DnsConfig {
            nameservers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        cfg
    }

    fn uid(&self, name: &str) -> String {
        format!("t{}-{name}", self.tok)
    }

    fn request(&self, name: &str) -> SandboxRequest {
        SandboxRequest {
            uid: self.uid(name),
            namespace: "default".into(),
            name: name.into(),
            hostname: name.into(),
            ..Default::default()
        }
    }

    /// nsfs mounts under our state dir still in the mount table.
    fn mounts(&self) -> Vec<String> {
        let prefix = self.state.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    /// host-local's reservations: files named after an address.
    fn reservations(&self) -> Vec<String> {
        let dir = self.state.join("cni/ipam/kubus");
        let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// nat rules mentioning this test (portmap and ipMasq rules carry the pod uid in a comment).
    fn nat_lines(&self) -> Vec<String> {
        nat_rules().lines().filter(|l| l.contains(&self.tok)).map(str::to_string).collect()
    }

    /// Deletes every nat rule naming our token, or jumping to a chain that does, then those
    /// chains; portmap's shared CNI-HOSTPORT-* chains stay (other users of the host have them).
    fn sweep_iptables(&self) {
        let save = nat_rules();
        let mut chains = BTreeSet::new();
        for line in save.lines().filter(|l| l.starts_with("-A ") && l.contains(&self.tok)) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut candidates = vec![words[1]];
            if let Some(i) = words.iter().position(|w| *w == "-j") {
                candidates.extend(words.get(i + 1));
            }
            for c in candidates {
                if (c.starts_with("CNI-") && !c.starts_with("CNI-HOSTPORT-")) || c.contains(&self.tok) {
                    chains.insert(c.to_string());
                }
            }
        }
        for entry in ["POSTROUTING", "PREROUTING", "OUTPUT", "CNI-HOSTPORT-DNAT"] {
            loop {
                let (ok, rules) = sh("iptables", &["-w", "-t", "nat", "-S", entry]);
                if !ok {
                    break;
                }
                let rules: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A ")).collect();
                let hit = rules
                    .iter()
                    .position(|r| r.contains(&self.tok) || chains.iter().any(|c| r.ends_with(&format!("-j {c}"))));
                match hit {
                    Some(i) => {
                        sh("iptables", &["-w", "-t", "nat", "-D", entry, &(i + 1).to_string()]);
                    }
                    None => break,
                }
            }
        }
        for c in &chains {
            sh("iptables", &["-w", "-t", "nat", "-F", c]);
            sh("iptables", &["-w", "-t", "nat", "-X", c]);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for m in self.mounts() {
            sh("umount", &["-l", &m]);
        }
        self.sweep_iptables();
        for link in self.extra_links.iter().chain([&self.bridge]) {
            sh("ip", &["link", "del", link]);
        }
        for ns in &self.extra_netns {
            sh("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nsenter(ns: &Path, kind: &str, args: &[&str]) -> (bool, String) {
    let flag = format!("--{kind}={}", ns.display());
    let mut all = vec![flag.as_str()];
    all.extend(args);
    sh("nsenter", &all)
}

/// `busybox nc` in `netns` answering every connection on `port` with `reply`.
fn serve(netns: &Path, port: u16, reply: &str) -> Proc {
    let child = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "nc", "-ll", "-p", &port.to_string(), "-e", "busybox", "echo", reply])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Connects from the node's network namespace, retrying while the listener starts.
fn fetch_from_host(addr: &str, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt =
            std::net::TcpStream::connect_timeout(&format!("{addr}:{port}").parse().unwrap(), Duration::from_secs(2))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                });
        match attempt {
            Ok(out) if !out.is_empty() => return out,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("no answer from {addr}:{port}: {other:?}"),
        }
    }
}

/// Connects from inside `netns`, retrying while the listener starts.
fn fetch_from_netns(netns: &Path, addr: &str, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (ok, out) = nsenter(netns, "net", &["busybox", "nc", "-w", "2", addr, &port.to_string()]);
        if (ok && !out.trim().is_empty()) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node's first global IPv4 address outside our bridge (eth0's here).
fn node_address(bridge: &str) -> String {
    let out = must("ip", &["-4", "-o", "addr", "show", "scope", "global"]);
    out.lines()
        .filter(|l| !l.contains(bridge) && !l.contains(" kb"))
        .find_map(|l| l.split_whitespace().nth(3)?.split('/').next().map(str::to_string))
        .expect("a global IPv4 address on the node")
}

fn in_cidr(ip: IpAddr, a: u8, b: u8) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, a, b] && v4.octets()[3] > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sandboxes_talk_map_host_ports_and_clean_up() {
    let env = Env::new();
    let mgr = SandboxManager::new(env.config()).unwrap();
    let host_port = 20000 + u16::from_be_bytes(random_bytes::<2>()) % 20000;

    let mut req_a = env.request("web-a");
    req_a.subdomain = Some("web".into());
    req_a.host_aliases = vec![HostAlias { ip: "10.1.2.3".into(), hostnames: vec!["foo.local".into()] }];
    req_a.port_mappings = vec![PortMapping { host_port, container_port: 8080, protocol: Protocol::Tcp, host_ip: None }];
    let a = mgr.create(req_a.clone()).await.unwrap();
    let b = mgr.create(env.request("web-b")).await.unwrap();
    let (ip_a, ip_b) = (a.ip.unwrap(), b.ip.unwrap());
    assert!(in_cidr(ip_a, env.a, env.b) && in_cidr(ip_b, env.a, env.b), "{ip_a} {ip_b} in {}", env.pod_cidr());
    assert_ne!(ip_a, ip_b);
    let netns_a = a.netns.clone().unwrap();
    let netns_b = b.netns.clone().unwrap();
    assert_eq!(mgr.create(req_a.clone()).await.unwrap(), a, "create is idempotent");
    assert_eq!(mgr.get(&a.uid), Some(a.clone()));
    assert_eq!(mgr.list(), vec![a.clone(), b.clone()]);
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim(), "1");

    // lo is up and eth0 carries the address; the UTS namespace has the pod's hostname.
    let (_, lo) = nsenter(&netns_a, "net", &["ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains("LOOPBACK,UP"), "{lo}");
    let (_, eth0) = nsenter(&netns_a, "net", &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(eth0.contains(&format!("{ip_a}/24")), "{eth0}");
    assert_eq!(nsenter(a.utsns.as_ref().unwrap(), "uts", &["hostname"]).1.trim(), "web-a");
    assert_eq!(nsenter(b.utsns.as_ref().unwrap(), "uts", &["hostname"]).1.trim(), "web-b");
    assert!(nsenter(&a.ipcns, "ipc", &["true"]).0, "IPC namespace file is joinable");

    // The pod files.
    let hosts = std::fs::read_to_string(&a.hosts_file).unwrap();
    assert!(hosts.contains(&format!("{ip_a}\tweb-a.web.default.svc.cluster.local\tweb-a\n")), "{hosts}");
    assert!(hosts.contains("10.1.2.3\tfoo.local\n"), "{hosts}");
    assert_eq!(std::fs::read_to_string(&a.hostname_file).unwrap(), "web-a\n");
    assert_eq!(
        std::fs::read_to_string(&a.resolv_conf).unwrap(),
        "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );

    // Pod to pod: ping and TCP.
    let (ok, ping) = nsenter(&netns_b, "net", &["busybox", "ping", "-c", "1", "-W", "2", &ip_a.to_string()]);
    assert!(ok, "ping {ip_a} from b: {ping}");
    let _server = serve(&netns_a, 8080, "hello-from-a");
    assert_eq!(fetch_from_netns(&netns_b, &ip_a.to_string(), 8080).trim(), "hello-from-a");

    // hostPort: from the node's own address, from 127.0.0.1 (portmap sets route_localnet on the
    // bridge and masquerades localhost), and from another pod to the node's address.
    let node_ip = node_address(&env.bridge);
    assert_eq!(fetch_from_host(&node_ip, host_port).trim(), "hello-from-a");
    assert_eq!(fetch_from_host("127.0.0.1", host_port).trim(), "hello-from-a");
    assert_eq!(fetch_from_netns(&netns_b, &node_ip, host_port).trim(), "hello-from-a");
    assert!(env.nat_lines().iter().any(|l| l.contains(&a.uid) && l.contains("DNAT")), "portmap rules exist");

    // Remove a: nothing of it is left, and removing again is fine.
    mgr.remove(&a.uid).await.unwrap();
    assert!(!a.dir.exists());
    assert!(env.mounts().iter().all(|m| !m.contains(&a.uid)), "{:?}", env.mounts());
    assert!(!env.reservations().contains(&ip_a.to_string()), "{:?}", env.reservations());
    assert!(env.nat_lines().iter().all(|l| !l.contains(&a.uid)), "{:?}", env.nat_lines());
    assert_eq!(mgr.get(&a.uid), None);
    mgr.remove(&a.uid).await.unwrap();

    // Remove b after its saved CNI result was lost: DEL still runs and frees everything.
    std::fs::remove_file(b.dir.join("cni.json")).unwrap();
    mgr.remove(&b.uid).await.unwrap();
    assert!(!b.dir.exists());
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(env.reservations().is_empty(), "{:?}", env.reservations());
    assert!(env.nat_lines().is_empty(), "{:?}", env.nat_lines());
    assert_eq!(must("ip", &["-o", "link", "show", "master", &env.bridge]).trim(), "", "no veth left");

    // A recreated sandbox gets an address again.
    let a2 = mgr.create(req_a).await.unwrap();
    assert!(in_cidr(a2.ip.unwrap(), env.a, env.b));
    mgr.remove(&a2.uid).await.unwrap();
    assert!(env.mounts().is_empty() && env.reservations().is_empty() && env.nat_lines().is_empty());
    mgr.remove_node_network().await.unwrap();
    assert!(!sh("ip", &["link", "show", &env.bridge]).0, "bridge removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugin_reports_its_message_and_leaves_nothing() {
    let env = Env::new();
    let mut cfg = env.config();
    // Valid syntax, but host-local cannot allocate from a /31.
    cfg.pod_cidr = format!("10.{}.{}.0/31", env.a, env.b);
    let mgr = SandboxManager::new(cfg).unwrap();
    let req = env.request("broken");
    let err = mgr.create(req.clone()).await.unwrap_err();
    match &err {
        NetworkError::Cni(CniError::Plugin { plugin, command, msg, .. }) => {
            assert_eq!((plugin.as_str(), *command), ("bridge", "ADD"));
            assert!(msg.contains("too small"), "{msg}");
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    assert!(err.to_string().starts_with("CNI plugin bridge ADD failed"), "{err}");
    assert!(!env.state.join("pods").join(&req.uid).exists());
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(env.nat_lines().is_empty(), "{:?}", env.nat_lines());
    let (_, veths) = sh("ip", &["-o", "link", "show", "master", &env.bridge]);
    assert!(!veths.contains("veth"), "{veths}");
    assert_eq!(mgr.list_incomplete(), Vec::<String>::new());
    mgr.remove(&req.uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_sandbox_uses_the_nodes_files() {
    let env = Env::new();
    let mgr = SandboxManager::new(env.config()).unwrap();
    let mut req = env.request("hostnet");
    req.host_network = true;
    let sb = mgr.create(req).await.unwrap();
    assert_eq!((sb.netns.as_ref(), sb.utsns.as_ref(), sb.ip), (None, None, None));
    assert!(env.mounts().iter().any(|m| m.ends_with("/ns/ipc")), "IPC is pinned: {:?}", env.mounts());
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(std::fs::read_to_string(&sb.hosts_file).unwrap().contains(node_hosts.trim_end()));
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(std::fs::read_to_string(&sb.hostname_file).unwrap().trim(), node_hostname.trim());
    let node_dns = DnsConfig::read(Path::new("/etc/resolv.conf")).unwrap();
    assert_eq!(std::fs::read_to_string(&sb.resolv_conf).unwrap(), node_dns.render());
    assert!(env.reservations().is_empty(), "no CNI for host-network pods");
    mgr.remove(&sb.uid).await.unwrap();
    assert!(env.mounts().is_empty() && !sb.dir.exists());
}

/// A half-created sandbox (crash after the namespaces were pinned) is cleaned up by remove and
/// replaced by create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_created_sandbox_is_removed_or_replaced() {
    let env = Env::new();
    let mgr = SandboxManager::new(env.config()).unwrap();
    let req = env.request("half");
    let sb = mgr.create(req.clone()).await.unwrap();
    // Simulate a crash before the record became ready: the record says not ready.
    let record_path = sb.dir.join("sandbox.json");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["ready"] = false.into();
    std::fs::write(&record_path, record.to_string()).unwrap();
    assert_eq!(mgr.get(&sb.uid), None);
    assert_eq!(mgr.list_incomplete(), vec![sb.uid.clone()]);

    let again = mgr.create(req.clone()).await.unwrap();
    assert!(again.ip.is_some());
    assert_eq!(env.reservations().len(), 1, "the old address was released: {:?}", env.reservations());
    assert_eq!(env.mounts().len(), 3, "{:?}", env.mounts());

    // Namespaces lost (as after a reboot) make the sandbox incomplete too; create replaces it.
    must("umount", &[again.netns.as_ref().unwrap().to_str().unwrap()]);
    assert_eq!(mgr.get(&sb.uid), None);
    assert_eq!(mgr.list_incomplete(), vec![sb.uid.clone()]);
    let third = mgr.create(req).await.unwrap();
    assert_eq!(mgr.get(&sb.uid), Some(third));
    assert_eq!(env.reservations().len(), 1, "{:?}", env.reservations());
    assert_eq!(env.mounts().len(), 3, "{:?}", env.mounts());
    mgr.remove(&sb.uid).await.unwrap();
    assert!(env.mounts().is_empty() && env.reservations().is_empty() && env.nat_lines().is_empty());
}

/// With a cluster CIDR, traffic to it keeps the pod's address, traffic elsewhere is masqueraded.
/// An "outside" namespace holds one address in the cluster CIDR and one outside of it, and
/// busybox netstat there shows which source address each connection came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_cidr_limits_masquerading() {
    let mut env = Env::new();
    let mut cfg = env.config();
    cfg.cluster_cidr = Some(format!("10.{}.0.0/16", env.a));
    let ext_ns = format!("kubus-t{}", env.tok);
    let (veth_host, veth_ext) = (format!("kbh{}", env.tok), format!("kbe{}", env.tok));
    env.extra_netns.push(ext_ns.clone());
    env.extra_links.push(veth_host.clone());
    let in_cluster =
        (format!("10.{}.{}.1", env.a, env.b.wrapping_add(1)), format!("10.{}.{}.2", env.a, env.b.wrapping_add(1)));
    let outside = (format!("100.64.{}.1", env.b), format!("100.64.{}.2", env.b));
    must("ip", &["netns", "add", &ext_ns]);
    must("ip", &["link", "add", &veth_host, "type", "veth", "peer", "name", &veth_ext, "netns", &ext_ns]);
    for (host, ext) in [&in_cluster, &outside] {
        must("ip", &["addr", "add", &format!("{host}/24"), "dev", &veth_host]);
        must("ip", &["-n", &ext_ns, "addr", "add", &format!("{ext}/24"), "dev", &veth_ext]);
    }
    must("ip", &["link", "set", &veth_host, "up"]);
    must("ip", &["-n", &ext_ns, "link", "set", &veth_ext, "up"]);
    must("ip", &["-n", &ext_ns, "route", "add", "default", "via", &in_cluster.0]);

    let mgr = SandboxManager::new(cfg).unwrap();
    let sb = mgr.create(env.request("egress")).await.unwrap();
    let pod_ip = sb.ip.unwrap().to_string();
    let chain = format!("KUBUS-MASQ-{}", env.bridge);
    assert!(nat_rules().contains(&format!("-A {chain} -j MASQUERADE")));
    assert!(env.nat_lines().iter().all(|l| !l.contains(&sb.uid)), "the bridge's ipMasq is off");

    let ext_netns = PathBuf::from(format!("/run/netns/{ext_ns}"));
    for (port, (_, ext_ip), expected_source) in
        [(7001u16, &in_cluster, pod_ip.clone()), (7002, &outside, outside.0.clone())]
    {
        // The listener keeps the connection open (no -e), so netstat can see its peer.
        let _server = Proc(
            Command::new("ip")
                .args(["netns", "exec", &ext_ns, "busybox", "nc", "-l", "-p", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(200));
        let _client = Proc(
            Command::new("nsenter")
                .arg(format!("--net={}", sb.netns.as_ref().unwrap().display()))
                .args(["busybox", "nc", ext_ip, &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let peer = loop {
            let (_, netstat) = nsenter(&ext_netns, "net", &["busybox", "netstat", "-tn"]);
            let line = netstat.lines().find(|l| l.contains(&format!("{ext_ip}:{port}")) && l.contains("ESTABLISHED"));
            if let Some(line) = line {
                // The listener's socket is IPv6, so IPv4 peers show as ::ffff:a.b.c.d.
                let peer = line.split_whitespace().nth(4).unwrap().rsplit_once(':').unwrap().0;
                break peer.trim_start_matches("::ffff:").to_string();
            }
            assert!(Instant::now() < deadline, "no connection to {ext_ip}:{port}: {netstat}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(peer, expected_source, "source seen by {ext_ip}");
    }

    mgr.remove(&sb.uid).await.unwrap();
    mgr.remove_node_network().await.unwrap();
    assert!(!nat_rules().contains(&chain), "masquerade chain removed");
}

/// Latency of one create + remove (the figure the report quotes), and no leak over 20 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_remove_latency() {
    let env = Env::new();
    let mgr = SandboxManager::new(env.config()).unwrap();
    let mut times = Vec::new();
    for i in 0..20 {
        let mut req = env.request(&format!("lat{i}"));
        req.port_mappings =
            vec![PortMapping { host_port: 30000 + i, container_port: 80, protocol: Protocol::Tcp, host_ip: None }];
        let started = Instant::now();
        let sb = mgr.create(req).await.unwrap();
        mgr.remove(&sb.uid).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "create+remove of one sandbox over {} rounds: p50 {:?}, min {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    assert!(env.mounts().is_empty() && env.reservations().is_empty() && env.nat_lines().is_empty());
    // Where the time goes: mean seconds per plugin invocation, from the exported histogram.
    for family in prometheus::gather().iter().filter(|f| f.name() == "kubus_cni_plugin_seconds") {
        for m in family.get_metric() {
            let labels: Vec<String> = m.get_label().iter().map(|l| l.value().to_string()).collect();
            let h = m.get_histogram();
            println!(
                "  {}: {} calls, mean {:.1} ms",
                labels.join(" "),
                h.get_sample_count(),
                1000.0 * h.get_sample_sum() / h.get_sample_count() as f64
            );
        }
    }
    let ops = prometheus::gather().into_iter().find(|f| f.name() == "kubus_sandbox_operations_total").unwrap();
    assert!(ops.get_metric().iter().any(|m| m.get_counter().get_value() >= 20.0), "operations are counted");
}

/// The manager is shared by pod workers: parallel creates of different pods get distinct
/// addresses, parallel creates of one pod give one sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_and_removes() {
    let env = Env::new();
    let mgr = SandboxManager::new(env.config()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (mgr, req) = (mgr.clone(), env.request(&format!("par{}", i % 4)));
        tasks.spawn(async move { mgr.create(req).await });
    }
    let mut by_uid = std::collections::HashMap::new();
    while let Some(res) = tasks.join_next().await {
        let sb = res.unwrap().unwrap();
        if let Some(prev) = by_uid.insert(sb.uid.clone(), sb.clone()) {
            assert_eq!(prev, sb, "one pod, one sandbox");
        }
    }
    assert_eq!(by_uid.len(), 4);
    let ips: BTreeSet<IpAddr> = by_uid.values().map(|s| s.ip.unwrap()).collect();
    assert_eq!(ips.len(), 4, "distinct addresses: {ips:?}");
    assert_eq!(env.reservations().len(), 4);
    let mut removals = tokio::task::JoinSet::new();
    for uid in by_uid.keys() {
        let (mgr, uid) = (mgr.clone(), uid.clone());
        removals.spawn(async move { mgr.remove(&uid).await });
    }
    while let Some(res) = removals.join_next().await {
        res.unwrap().unwrap();
    }
    assert!(mgr.list().is_empty());
    assert!(env.mounts().is_empty() && env.reservations().is_empty() && env.nat_lines().is_empty());
}
