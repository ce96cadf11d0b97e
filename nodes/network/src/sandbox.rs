//! Pod sandboxes: pinned namespaces, the CNI attachment and the pod's /etc files, kept on disk
//! under `<state>/pods/<uid>/` so a restarted agent finds them again.

use crate::cni::{result_ip, Attachment, CniError, CniRuntime, ConfList};
use crate::files::{self, DnsConfig, FilesError, HostAlias};
use crate::masq::{self, MasqError, Masquerade};
use crate::metrics::record_op;
use crate::ns::{self, NsError, NsFiles, NsSpec};
use crate::NetworkConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{info, info_span, warn, Instrument};

/// The network of every pod with its own network namespace.
pub const NETWORK_NAME: &str = "kubus";
/// The pod's interface, as every Kubernetes runtime names it.
pub const POD_IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("invalid sandbox request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error(transparent)]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Masquerade(#[from] MasqError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI result of network {NETWORK_NAME} has no IP address on {POD_IFNAME}: {0}")]
    NoPodIp(String),
    #[error("{0} sandboxes still exist on bridge {1}")]
    SandboxesRemain(usize, String),
}

/// The transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl std::str::FromStr for Protocol {
    type Err = NetworkError;

    /// Kubernetes spells protocols `TCP`, CNI `tcp`: any case is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(NetworkError::InvalidRequest(format!("unknown protocol {s:?}"))),
        }
    }
}

/// A container's hostPort (`runtimeConfig.portMappings` of the portmap plugin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// Only traffic to this node address is forwarded; None means all addresses.
    pub host_ip: Option<String>,
}

/// What the kubelet knows of a pod when it creates its sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRequest {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// spec.hostname or the pod name (kubelet cuts it to 63 characters).
    pub hostname: String,
    /// spec.subdomain: gives the pod the FQDN `<hostname>.<subdomain>.<ns>.svc.<cluster domain>`.
    pub subdomain: Option<String>,
    pub host_aliases: Vec<HostAlias>,
    /// The node's network and UTS namespaces, hosts and resolv.conf.
    pub host_network: bool,
    pub port_mappings: Vec<PortMapping>,
    /// The pod's resolv.conf as its dnsPolicy/dnsConfig make it; None = the node's
    /// (`NetworkConfig::dns`, or the node's file as is for host-network pods).
    pub dns: Option<DnsConfig>,
}

/// A created sandbox: what container specs need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub uid: String,
    /// None for a host-network pod.
    pub netns: Option<PathBuf>,
    pub ipcns: PathBuf,
    /// None for a host-network pod: like containerd and CRI-O, such a pod shares the node's UTS
    /// namespace and thus its hostname.
    pub utsns: Option<PathBuf>,
    pub ip: Option<IpAddr>,
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname_file: PathBuf,
    pub dir: PathBuf,
}

/// `<pod dir>/sandbox.json`: written before the first host change (so a removal knows what to
/// undo) and again with `ready` once everything is in place.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    request: SandboxRequest,
    ip: Option<IpAddr>,
    ready: bool,
}

/// Creates and removes pod sandboxes on one node. Cheap to clone; operations on different pods
/// run in parallel, those on one pod one after another.
#[derive(Clone)]
pub struct SandboxManager {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: NetworkConfig,
    cni: CniRuntime,
    loopback: ConfList,
    network: ConfList,
    masquerade: Option<Masquerade>,
    masquerade_ready: tokio::sync::OnceCell<()>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SandboxManager {
    pub fn new(cfg: NetworkConfig) -> Result<Self, NetworkError> {
        validate_config(&cfg)?;
        let cni = CniRuntime::new(cfg.cni_bin_dirs.clone());
        for plugin in ["loopback", "bridge", "host-local", "portmap"] {
            cni.find(plugin)?;
        }
        let ipam_dir = cfg.state_dir.join("cni").join("ipam");
        let pods_dir = cfg.state_dir.join("pods");
        for dir in [&ipam_dir, &pods_dir] {
            std::fs::create_dir_all(dir).map_err(|source| NetworkError::Io {
                op: "create",
                path: dir.clone(),
                source,
            })?;
        }
        let mut bridge = json!({
            "type": "bridge",
            "bridge": cfg.bridge,
            "isGateway": true,
            // With a cluster CIDR, masq.rs masquerades instead, sparing pod-to-pod traffic.
            "ipMasq": cfg.cluster_cidr.is_none(),
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": cfg.pod_cidr}]],
                "routes": [{"dst": if cfg.pod_cidr.contains(':') { "::/0" } else { "0.0.0.0/0" }}],
                "dataDir": ipam_dir,
            },
        });
        if let Some(mtu) = cfg.mtu {
            bridge["mtu"] = json!(mtu);
        }
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true});
        let network = ConfList::new(NETWORK_NAME, vec![bridge, portmap])?;
        // Its own network, as kubelet's runtimes do: loopback v1.1.1 forces its interface to `lo`
        // and would sit in the bridge chain's prevResult otherwise.
        let loopback = ConfList::new("cni-loopback", vec![json!({"type": "loopback"})])?;
        // For people debugging a node: the exact configuration the plugins get.
        let conflist = cfg.state_dir.join("cni").join(format!("{NETWORK_NAME}.conflist"));
        files::write_atomic(&conflist, format!("{:#}\n", network.to_json()).as_bytes())?;
        let masquerade = cfg.cluster_cidr.as_ref().map(|cluster_cidr| Masquerade {
            bridge: cfg.bridge.clone(),
            pod_cidr: cfg.pod_cidr.clone(),
            cluster_cidr: cluster_cidr.clone(),
        });
        Ok(SandboxManager {
            inner: Arc::new(Inner {
                cfg,
                cni,
                loopback,
                network,
                masquerade,
                masquerade_ready: tokio::sync::OnceCell::new(),
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.inner.cfg
    }

    /// The CNI network configuration list every pod is attached with.
    pub fn network(&self) -> &ConfList {
        &self.inner.network
    }

    /// Pins new net/ipc/uts namespaces, attaches the pod to the node's network (loopback, then
    /// bridge + host-local + portmap), writes its hosts, resolv.conf and hostname files. Returns
    /// the existing sandbox if there is one; a half-created one is removed and made anew. On
    /// failure everything done so far is undone.
    pub async fn create(&self, req: SandboxRequest) -> Result<Sandbox, NetworkError> {
        let span = info_span!("sandbox_create", uid = %req.uid, pod = %format_args!("{}/{}", req.namespace, req.name));
        let result = async {
            validate_request(&req)?;
            let _lock = self.lock(&req.uid).await;
            self.create_locked(&req).await
        }
        .instrument(span)
        .await;
        record_op("create", result.is_ok());
        result
    }

    /// Detaches the pod from the network (CNI DEL, also without the saved result), unpins its
    /// namespaces and removes its directory. Idempotent, and works on half-created sandboxes.
    pub async fn remove(&self, uid: &str) -> Result<(), NetworkError> {
        let result = async {
            validate_uid(uid)?;
            let _lock = self.lock(uid).await;
            self.teardown(uid).await
        }
        .instrument(info_span!("sandbox_remove", uid))
        .await;
        record_op("remove", result.is_ok());
        result
    }

    /// A ready sandbox, from disk. One whose namespaces are no longer pinned (the node rebooted,
    /// someone unmounted them) does not count: it is incomplete and has to be made anew.
    pub fn get(&self, uid: &str) -> Option<Sandbox> {
        validate_uid(uid).ok()?;
        let sandbox = self.read_record(uid).filter(|r| r.ready).map(|r| self.sandbox_of(&r))?;
        let pinned = [Some(&sandbox.ipcns), sandbox.netns.as_ref(), sandbox.utsns.as_ref()]
            .into_iter()
            .flatten()
            .all(|path| ns::is_pinned(path));
        pinned.then_some(sandbox)
    }

    /// Every ready sandbox on disk.
    pub fn list(&self) -> Vec<Sandbox> {
        let Ok(entries) = std::fs::read_dir(self.pods_dir()) else { return Vec::new() };
        let mut out: Vec<Sandbox> =
            entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|uid| self.get(uid))).collect();
        out.sort_by(|a, b| a.uid.cmp(&b.uid));
        out
    }

    /// Uids with a directory but no ready sandbox (a crash mid-create, namespaces lost in a
    /// reboot): the agent removes them.
    pub fn list_incomplete(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.pods_dir()) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|uid| validate_uid(uid).is_ok() && self.get(uid).is_none())
            .collect();
        out.sort();
        out
    }

    /// Undoes the node-wide parts once no sandbox is left: the masquerade chain, the bridge and
    /// host-local's files. For decommissioning a node (and tests).
    pub async fn remove_node_network(&self) -> Result<(), NetworkError> {
        let left = self.list().len() + self.list_incomplete().len();
        if left > 0 {
            return Err(NetworkError::SandboxesRemain(left, self.inner.cfg.bridge.clone()));
        }
        if let Some(m) = &self.inner.masquerade {
            m.remove().await?;
        }
        let out = tokio::process::Command::new("ip")
            .args(["link", "del", "dev", &self.inner.cfg.bridge])
            .output()
            .await
            .map_err(|source| NetworkError::Io { op: "run", path: "ip".into(), source })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("Cannot find device") {
            return Err(NetworkError::Config(format!("ip link del {}: {}", self.inner.cfg.bridge, stderr.trim())));
        }
        let ipam = self.inner.cfg.state_dir.join("cni").join("ipam").join(NETWORK_NAME);
        match std::fs::remove_dir_all(&ipam) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetworkError::Io { op: "remove", path: ipam, source: e })
            }
            _ => Ok(()),
        }
    }

    async fn create_locked(&self, req: &SandboxRequest) -> Result<Sandbox, NetworkError> {
        if let Some(sandbox) = self.get(&req.uid) {
            return Ok(sandbox);
        }
        if self.pod_dir(&req.uid).exists() {
            info!("removing a half-created sandbox first");
            self.teardown(&req.uid).await?;
        }
        match self.setup(req).await {
            Ok(sandbox) => {
                info!(ip = ?sandbox.ip, "sandbox created");
                Ok(sandbox)
            }
            Err(e) => {
                warn!(error = %e, "sandbox creation failed; undoing it");
                if let Err(cleanup) = self.teardown(&req.uid).await {
                    warn!(error = %cleanup, "cleanup after the failed creation failed too");
                }
                Err(e)
            }
        }
    }

    async fn setup(&self, req: &SandboxRequest) -> Result<Sandbox, NetworkError> {
        let dir = self.pod_dir(&req.uid);
        for d in [dir.join("ns"), dir.join("etc")] {
            std::fs::create_dir_all(&d).map_err(|source| NetworkError::Io { op: "create", path: d.clone(), source })?;
        }
        let mut rec = Record { request: req.clone(), ip: None, ready: false };
        self.write_record(&rec)?;

        let ns_files = NsFiles::in_dir(&dir.join("ns"));
        let own_net = !req.host_network;
        ns::pin(&ns_files, NsSpec { net: own_net, uts_hostname: own_net.then_some(req.hostname.as_str()) }).await?;

        if own_net {
            enable_forwarding(&self.inner.cfg.pod_cidr)?;
            if let Some(m) = &self.inner.masquerade {
                self.inner.masquerade_ready.get_or_try_init(|| m.ensure()).await?;
            }
            let lo = self.attachment(&req.uid, Some(req), true);
            self.inner.cni.add(&self.inner.loopback, &Attachment { ifname: "lo".into(), ..lo.clone() }).await?;
            let result = self.inner.cni.add(&self.inner.network, &lo).await?;
            files::write_atomic(&dir.join("cni.json"), format!("{result:#}\n").as_bytes())?;
            rec.ip = Some(result_ip(&result, POD_IFNAME).ok_or_else(|| NetworkError::NoPodIp(result.to_string()))?);
        }

        let etc = dir.join("etc");
        let (hosts, hostname) = if req.host_network {
            let node_hosts = read_to_string(Path::new(files::NODE_HOSTS))?;
            let node_hostname = read_to_string(Path::new("/proc/sys/kernel/hostname"))?;
            (files::node_hosts(&node_hosts, &req.host_aliases), node_hostname.trim().to_string())
        } else {
            let fqdn = req
                .subdomain
                .as_ref()
                .map(|sub| format!("{}.{}.{}.svc.{}", req.hostname, sub, req.namespace, self.inner.cfg.cluster_domain));
            (files::pod_hosts(rec.ip, &req.hostname, fqdn.as_deref(), &req.host_aliases), req.hostname.clone())
        };
        let dns = match (&req.dns, req.host_network) {
            (Some(dns), _) => dns.clone(),
            // Host-network pods share the node's loopback, so its local resolver works for them.
            (None, true) => DnsConfig::read(Path::new(files::NODE_RESOLV_CONF))?,
            (None, false) => self.inner.cfg.dns.clone(),
        };
        files::write_atomic(&etc.join("hosts"), hosts.as_bytes())?;
        files::write_atomic(&etc.join("resolv.conf"), dns.render().as_bytes())?;
        files::write_atomic(&etc.join("hostname"), format!("{hostname}\n").as_bytes())?;

        rec.ready = true;
        self.write_record(&rec)?;
        Ok(self.sandbox_of(&rec))
    }

    /// The deletion order of the design: CNI DEL (network in reverse, then loopback), unpin the
    /// namespaces, remove the directory. Each step tolerates a previous partial run.
    async fn teardown(&self, uid: &str) -> Result<(), NetworkError> {
        let dir = self.pod_dir(uid);
        let rec = self.read_record(uid);
        let ns_files = NsFiles::in_dir(&dir.join("ns"));
        if !rec.as_ref().is_some_and(|r| r.request.host_network) {
            let prev = self.read_result(uid);
            let added = prev.is_some() || rec.as_ref().is_some_and(|r| r.ip.is_some());
            let netns = ns::is_pinned(&ns_files.net);
            let att = self.attachment(uid, rec.as_ref().map(|r| &r.request), netns);
            let del = self.inner.cni.del(&self.inner.network, &att, prev.as_ref()).await;
            let lo = Attachment { ifname: "lo".into(), runtime_config: Map::new(), ..att };
            let mut del =
                del.and(self.inner.cni.del(&self.inner.loopback, &lo, None).await).map_err(NetworkError::from);
            // The namespace was lost (unmounted by someone else) after ADD: the bridge plugin
            // then leaves its ipMasq rules behind, so they are removed here.
            if added && !netns && self.inner.masquerade.is_none() {
                let ipv6 = self.inner.cfg.pod_cidr.contains(':');
                del = del.and(masq::remove_bridge_ipmasq(ipv6, NETWORK_NAME, uid).await.map_err(NetworkError::from));
            }
            if let Err(e) = del {
                // Without a completed ADD the plugins may refuse even DEL (a configuration
                // host-local rejects), yet nothing of theirs outlives the namespace: go on.
                if added {
                    return Err(e);
                }
                warn!(error = %e, "ignoring a CNI DEL failure of a sandbox whose ADD never completed");
            }
        }
        ns::unpin(&ns_files)?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetworkError::Io { op: "remove", path: dir, source: e })
            }
            _ => Ok(()),
        }
    }

    /// CNI parameters of a pod. Without the request (its record is gone), portmap gets a
    /// placeholder mapping: it skips DEL when it sees no mappings, but deletes its chains by
    /// name (network + container id), whatever the mappings.
    fn attachment(&self, uid: &str, req: Option<&SandboxRequest>, netns: bool) -> Attachment {
        let mut args = vec![("IgnoreUnknown".to_string(), "1".to_string())];
        if let Some(req) = req {
            args.push(("K8S_POD_NAMESPACE".into(), req.namespace.clone()));
            args.push(("K8S_POD_NAME".into(), req.name.clone()));
        }
        args.push(("K8S_POD_INFRA_CONTAINER_ID".into(), uid.to_string()));
        args.push(("K8S_POD_UID".into(), uid.to_string()));
        let mappings: Vec<Value> = match req {
            Some(req) => req
                .port_mappings
                .iter()
                .map(|pm| {
                    let mut m =
                        json!({"hostPort": pm.host_port, "containerPort": pm.container_port, "protocol": pm.protocol});
                    if let Some(ip) = &pm.host_ip {
                        m["hostIP"] = json!(ip);
                    }
                    m
                })
                .collect(),
            None => vec![json!({"hostPort": 1, "containerPort": 1, "protocol": "tcp"})],
        };
        let mut runtime_config = Map::new();
        if !mappings.is_empty() {
            runtime_config.insert("portMappings".into(), Value::Array(mappings));
        }
        Attachment {
            container_id: uid.to_string(),
            netns: netns.then(|| self.pod_dir(uid).join("ns").join("net")),
            ifname: POD_IFNAME.into(),
            args,
            runtime_config,
        }
    }

    fn sandbox_of(&self, rec: &Record) -> Sandbox {
        let dir = self.pod_dir(&rec.request.uid);
        let ns = NsFiles::in_dir(&dir.join("ns"));
        let own_net = !rec.request.host_network;
        Sandbox {
            uid: rec.request.uid.clone(),
            netns: own_net.then_some(ns.net),
            ipcns: ns.ipc,
            utsns: own_net.then_some(ns.uts),
            ip: rec.ip,
            hosts_file: dir.join("etc").join("hosts"),
            resolv_conf: dir.join("etc").join("resolv.conf"),
            hostname_file: dir.join("etc").join("hostname"),
            dir,
        }
    }

    fn pods_dir(&self) -> PathBuf {
        self.inner.cfg.state_dir.join("pods")
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    fn read_record(&self, uid: &str) -> Option<Record> {
        let text = std::fs::read(self.pod_dir(uid).join("sandbox.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write_record(&self, rec: &Record) -> Result<(), NetworkError> {
        let data = serde_json::to_vec_pretty(rec).expect("a record serializes");
        Ok(files::write_atomic(&self.pod_dir(&rec.request.uid).join("sandbox.json"), &data)?)
    }

    fn read_result(&self, uid: &str) -> Option<Value> {
        serde_json::from_slice(&std::fs::read(self.pod_dir(uid).join("cni.json")).ok()?).ok()
    }

    /// One operation per pod at a time; entries leave the map when no one holds or awaits them.
    async fn lock(&self, uid: &str) -> UidLock {
        let mutex = self.inner.locks.lock().expect("lock map poisoned").entry(uid.to_string()).or_default().clone();
        let guard = mutex.lock_owned().await;
        UidLock { inner: self.inner.clone(), uid: uid.to_string(), guard: Some(guard) }
    }
}

struct UidLock {
    inner: Arc<Inner>,
    uid: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UidLock {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.inner.locks.lock().expect("lock map poisoned");
        if locks.get(&self.uid).is_some_and(|m| Arc::strong_count(m) == 1) {
            locks.remove(&self.uid);
        }
    }
}

fn read_to_string(path: &Path) -> Result<String, NetworkError> {
    std::fs::read_to_string(path).map_err(|source| NetworkError::Io { op: "read", path: path.to_path_buf(), source })
}

/// Pods reach beyond the node only if it forwards (sysctl net.ipv4.ip_forward=1, off on a fresh
/// Debian): the bridge's gateway and ipMasq rules are useless without it. Set before every
/// attachment rather than left to the plugin, so it is true whatever the plugin version.
fn enable_forwarding(pod_cidr: &str) -> Result<(), NetworkError> {
    let path = Path::new(if pod_cidr.contains(':') {
        "/proc/sys/net/ipv6/conf/all/forwarding"
    } else {
        "/proc/sys/net/ipv4/ip_forward"
    });
    if read_to_string(path)?.trim() != "1" {
        std::fs::write(path, "1").map_err(|source| NetworkError::Io { op: "write", path: path.into(), source })?;
    }
    Ok(())
}

/// CNI_CONTAINERID's rule (and a safe directory name).
fn validate_uid(uid: &str) -> Result<(), NetworkError> {
    let mut chars = uid.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && uid.len() <= 253;
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidRequest(format!("pod uid {uid:?} must match [A-Za-z0-9][A-Za-z0-9_.-]*")))
    }
}

fn validate_request(req: &SandboxRequest) -> Result<(), NetworkError> {
    validate_uid(&req.uid)?;
    let bad = |m: String| Err(NetworkError::InvalidRequest(m));
    if !req.host_network && !is_hostname(&req.hostname) {
        return bad(format!("hostname {:?} is not a DNS name of at most 64 characters", req.hostname));
    }
    // CNI_ARGS is `K=V;K=V`.
    for v in [&req.namespace, &req.name] {
        if v.contains([';', '=']) || v.chars().any(char::is_whitespace) {
            return bad(format!("pod namespace/name {v:?} has characters CNI_ARGS cannot carry"));
        }
    }
    if let Some(sub) = &req.subdomain {
        if !is_hostname(sub) {
            return bad(format!("subdomain {sub:?} is not a DNS name"));
        }
    }
    for pm in &req.port_mappings {
        if pm.host_port == 0 || pm.container_port == 0 {
            return bad(format!("port mapping {pm:?} needs non-zero ports"));
        }
        if let Some(ip) = &pm.host_ip {
            if ip.parse::<IpAddr>().is_err() {
                return bad(format!("hostIP {ip:?} is not an IP address"));
            }
        }
    }
    for alias in &req.host_aliases {
        if alias.ip.parse::<IpAddr>().is_err() || alias.hostnames.iter().any(|h| !is_hostname(h)) {
            return bad(format!("host alias {alias:?} is not an IP with DNS names"));
        }
    }
    Ok(())
}

/// sethostname(2) takes 64 bytes; `hostname` would read a leading dash as an option.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['-', '.'])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn validate_config(cfg: &NetworkConfig) -> Result<(), NetworkError> {
    let bad = |m: String| Err(NetworkError::Config(m));
    // IFNAMSIZ is 16 including the terminating NUL.
    if cfg.bridge.is_empty()
        || cfg.bridge.len() > 15
        || !cfg.bridge.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return bad(format!("bridge name {:?} must be 1-15 characters of [A-Za-z0-9_.-]", cfg.bridge));
    }
    for (what, cidr) in [("pod CIDR", Some(&cfg.pod_cidr)), ("cluster CIDR", cfg.cluster_cidr.as_ref())] {
        if let Some(cidr) = cidr {
            if !is_cidr(cidr) {
                return bad(format!("{what} {cidr:?} is not an address/prefix"));
            }
        }
    }
    if cfg.mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
        return bad(format!("mtu {:?} is out of range", cfg.mtu));
    }
    if !cfg.state_dir.is_absolute() {
        return bad(format!("state dir {} must be absolute", cfg.state_dir.display()));
    }
    Ok(())
}

/// Syntax only; whether host-local can allocate from it is the plugin's to say.
fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else { return false };
    match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_requests() {
        let ok = SandboxRequest {
            uid: "6f1c-22".into(),
            namespace: "default".into(),
            name: "web".into(),
            hostname: "web".into(),
            ..Default::default()
        };
        assert!(validate_request(&ok).is_ok());
        for bad in [
            SandboxRequest { uid: "../x".into(), ..ok.clone() },
            SandboxRequest { uid: "".into(), ..ok.clone() },
            SandboxRequest { hostname: "-n".into(), ..ok.clone() },
            SandboxRequest { hostname: "a".repeat(65), ..ok.clone() },
            SandboxRequest { name: "a;b".into(), ..ok.clone() },
            SandboxRequest {
                port_mappings: vec![PortMapping {
                    host_port: 0,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None,
                }],
                ..ok.clone()
            },
        ] {
            assert!(matches!(validate_request(&bad), Err(NetworkError::InvalidRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn cidrs_and_protocols() {
        assert!(is_cidr("10.244.0.0/24") && is_cidr("fd00::/64"));
        assert!(!is_cidr("10.244.0.0") && !is_cidr("10.244.0.0/33") && !is_cidr("nope/8"));
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!(serde_json::to_value(Protocol::Udp).unwrap(), json!("udp"));
        assert!("icmp".parse::<Protocol>().is_err());
    }
}
