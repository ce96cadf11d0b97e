//! Several "machines" on this one: each host is a network namespace joined to a test bridge by a
//! veth pair, with an address of its own and a default route to the bridge, where the control
//! plane (its NATS, API and DNS) listens. A node agent (`kubus node`) runs in each host's
//! network namespace (`nsenter --net`; mounts and cgroups stay the machine's, so every agent has
//! its own state dir, bridge and cgroup root). The agents get no cluster ranges: they read
//! what the control plane published, as an agent joining a real cluster does. Cutting a host
//! off is taking its link down.
//!
//! Everything is named after a random token and removed on drop, even after a failure: agents
//! are stopped, `kubus node-reset` runs inside each host, the namespaces and the bridge go.

use super::{eventually, node_reset, Cluster, NodeNames};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub struct Host {
    /// Network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// The host side of the link, in the machine's namespace (down = cut off).
    pub link: String,
    pub ip: String,
    pub node_name: String,
    pub bridge: String,
    pub cgroup_root: String,
    pub dir: PathBuf,
    agent: std::sync::Mutex<Option<Child>>,
}

impl Host {
    /// A command run inside this host's network namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns)).arg(program);
        c
    }

    pub fn cut_off(&self) {
        ip(&["link", "set", &self.link, "down"]);
    }

    pub fn reconnect(&self) {
        ip(&["link", "set", &self.link, "up"]);
    }

    /// Kills the agent (its containers keep running, as after a crash).
    pub fn stop(&self) {
        if let Some(mut c) = self.agent.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A control plane on the test bridge and `n` hosts, each running a node agent labelled
/// `kubus.test/host=h<i>` (i from 1).
pub struct Hosts {
    /// None only while starting.
    cluster: Option<Cluster>,
    pub hosts: Vec<Host>,
    pub bridge: String,
    pub gateway: String,
}

impl Hosts {
    /// `lease_seconds` is the agents' Lease duration; the control plane's node monitor grace
    /// period is the same, so a host cut off turns NotReady within about that long.
    pub fn start(tag: &str, n: usize, lease_seconds: u64) -> Hosts {
        let names = NodeNames::new();
        let routes =
            String::from_utf8_lossy(&Command::new("ip").args(["-4", "route"]).output().unwrap().stdout).into_owned();
        // The hosts' link: a 100.64.0.0/10 /24 (shared address space) nobody here routes.
        let seed = u32::from_str_radix(&names.token, 16).unwrap_or(0);
        let net = (0..64u32)
            .map(|i| format!("100.{}.{}", 64 + (seed + i) % 64, (seed >> 8) % 256))
            .find(|p| !routes.contains(&format!("{p}.")))
            .expect("a free 100.64.0.0/10 block");
        let bridge = format!("kbh{}", names.token);
        let gateway = format!("{net}.1");
        // The bridge first, so that a failure below still finds it to delete.
        let mut hosts = Hosts { cluster: None, hosts: vec![], bridge: bridge.clone(), gateway: gateway.clone() };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 1..=n {
            let netns = format!("{bridge}-{i}");
            let link = format!("{bridge}v{i}");
            let host = Host {
                netns: netns.clone(),
                link: link.clone(),
                ip: format!("{net}.{}", 10 + i),
                node_name: format!("{}-h{i}", names.node_name),
                bridge: format!("kbt{}h{i}", names.token),
                cgroup_root: format!("{}-h{i}", names.cgroup_root),
                dir: PathBuf::new(),
                agent: Default::default(),
            };
            ip(&["netns", "add", &netns]);
            hosts.hosts.push(host);
            ip(&["link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
            ip(&["link", "set", &link, "master", &bridge, "up"]);
            ip(&["-n", &netns, "addr", "add", &format!("{net}.{}/24", 10 + i), "dev", "eth0"]);
            ip(&["-n", &netns, "link", "set", "eth0", "up"]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            ip(&["-n", &netns, "route", "add", "default", "via", &gateway]);
        }
        let grace = lease_seconds.to_string();
        hosts.cluster = Some(Cluster::start_with(
            tag,
            &[
                "--nats-listen",
                &format!("{gateway}:0"),
                "--node-ip",
                &gateway,
                "--cluster-cidr",
                &names.cluster_cidr,
                "--service-cidr",
                &names.service_cidr,
                "--node-monitor-grace-period",
                &grace,
            ],
        ));
        // The hosts join as machines do: with a bootstrap token, over TLS, the CA pinned by the
        // hash `kubus token create` prints (the port is beyond loopback: it speaks only TLS).
        let join = super::join_command(hosts.cluster());
        let dir = hosts.cluster().dir.clone();
        for (i, h) in hosts.hosts.iter_mut().enumerate() {
            h.dir = dir.join(format!("h{}", i + 1));
            std::fs::create_dir_all(&h.dir).unwrap();
            let log = std::fs::File::create(h.dir.join("node.log")).unwrap();
            let child = h
                .command(env!("CARGO_BIN_EXE_kubus"))
                .args(["node", "--cluster", "e2e"])
                .args(&join.flags)
                .arg("--data-dir")
                .arg(h.dir.join("node"))
                .args(["--node-name", &h.node_name, "--node-ip", &h.ip, "--bridge", &h.bridge])
                .args(["--cgroup-root", &h.cgroup_root, "--pod-log-dir"])
                .arg(h.dir.join("pod-logs"))
                .args(["--node-lease-seconds", &grace, "--node-label", &format!("kubus.test/host=h{}", i + 1)])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("kubus node runs");
            *h.agent.get_mut().unwrap() = Some(child);
        }
        for h in &hosts.hosts {
            eventually(90, || (hosts.cluster().node_ready_status(&h.node_name) == "True").then_some(()));
        }
        hosts
    }

    pub fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("the control plane is started")
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &self.hosts {
            h.stop();
            if h.dir.as_os_str().is_empty() {
                continue;
            }
            // Inside the host: its bridge, nft table, iptables rules and routes live there.
            node_reset(h.command(env!("CARGO_BIN_EXE_kubus")), &h.dir.join("node"), &h.bridge, &h.cgroup_root);
        }
        for h in &self.hosts {
            // Deleting the namespace deletes the veth pair with it.
            let _ = Command::new("ip").args(["netns", "del", &h.netns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}
