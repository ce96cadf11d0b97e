//! A pod's container as an OCI runtime spec (config.json): the process (command, env, user,
//! working dir, capabilities), the pod sandbox's namespaces, mounts (volumes, /etc/hosts,
//! resolv.conf, the termination log), resources as cgroup limits, and the default hardening
//! (masked and read-only /proc paths, no new privileges). Built as JSON and parsed into
//! `oci_spec`'s type, which checks it.

use crate::volumes::VolumePaths;
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile, SecurityContext};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubus_apimachinery::pod;
use kubus_apimachinery::quantity::parse_quantity;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("container has no command: the pod gives none and the image has no entrypoint or cmd")]
    NoCommand,
    #[error("volumeMount {0} refers to no volume of the pod")]
    UnknownVolume(String),
    #[error("invalid subPath {0}")]
    SubPath(String),
    #[error("couldn't find user {0} in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("invalid resource quantity: {0}")]
    Quantity(String),
    #[error("seccomp profile {0}")]
    Seccomp(String),
    #[error("runtime spec: {0}")]
    Oci(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What an image says a container runs with when the pod does not say.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// The QoS class the API server recorded (`status.qosClass`): the pod's parent cgroup and OOM
/// scores follow it.
pub use kubus_apimachinery::resources::QosClass;

/// Everything one container's spec is made from.
pub struct ContainerPlan<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageDefaults,
    /// Resolved environment (image's, then the pod's); the runtime's default PATH is added
    /// when neither sets one.
    pub env: &'a [(String, String)],
    pub rootfs: &'a Path,
    pub volumes: &'a VolumePaths,
    /// Namespace files of the sandbox; None for a host namespace.
    pub netns: Option<&'a Path>,
    pub ipcns: Option<&'a Path>,
    pub utsns: Option<&'a Path>,
    pub hosts_file: &'a Path,
    pub resolv_conf: &'a Path,
    pub hostname_file: &'a Path,
    /// The pod's /dev/shm (shared by its containers, like its IPC namespace).
    pub shm_dir: &'a Path,
    pub termination_log: &'a Path,
    pub cgroups_path: &'a str,
    pub qos: QosClass,
    pub memory_capacity: u64,
    /// cgroup v2 host: containers get a cgroup namespace of their own.
    pub cgroup_v2: bool,
    /// Where `Localhost` seccomp profiles live (kubelet's `<root>/seccomp`).
    pub seccomp_dir: &'a Path,
}

/// The PATH containerd and Docker give a container whose image and pod set none (images built
/// `FROM scratch`): the runtime resolves the command against it, and exec and probes inherit it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process's `KEY=value` environment: the resolved variables (the pod's over the image's),
/// after the runtime's default PATH when neither set one, as containerd's CRI builds it.
pub fn process_env(env: &[(String, String)]) -> Vec<String> {
    let default_path = (!env.iter().any(|(k, _)| k == "PATH")).then(|| format!("PATH={DEFAULT_PATH}"));
    default_path.into_iter().chain(env.iter().map(|(k, v)| format!("{k}={v}"))).collect()
}

/// Docker's and containerd's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The process's argv: the pod's command replaces the image's entrypoint, its args the image's
/// cmd; `$(VAR)` in either is expanded.
pub fn argv(container: &Container, image: &ImageDefaults, env: &[(String, String)]) -> Result<Vec<String>, SpecError> {
    let strings =
        |v: &Option<Vec<String>>| v.as_ref().map(|a| a.iter().map(|s| crate::env::expand(s, env)).collect::<Vec<_>>());
    let command = strings(&container.command);
    let args = strings(&container.args);
    let argv: Vec<String> = match (command, args) {
        (Some(c), Some(a)) => c.into_iter().chain(a).collect(),
        (Some(c), None) => c,
        (None, Some(a)) => image.entrypoint.iter().cloned().chain(a).collect(),
        (None, None) => image.entrypoint.iter().chain(image.cmd.iter()).cloned().collect(),
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// uid, gid and additional gids the container runs as.
pub fn user(
    pod: &Pod,
    container: &Container,
    image: &ImageDefaults,
    rootfs: &Path,
) -> Result<(u32, u32, Vec<u32>), SpecError> {
    let sc = container.security_context.as_ref();
    let psc = pod::spec(pod).security_context.as_ref();
    let id = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).map(|v| v as u32);
    let run_as_user = id(sc.and_then(|s| s.run_as_user)).or_else(|| id(psc.and_then(|s| s.run_as_user)));
    let run_as_group = id(sc.and_then(|s| s.run_as_group)).or_else(|| id(psc.and_then(|s| s.run_as_group)));
    let (mut uid, mut gid) = (0u32, None::<u32>);
    if !image.user.is_empty() {
        let (u, g) = image.user.split_once(':').map(|(u, g)| (u, Some(g))).unwrap_or((image.user.as_str(), None));
        uid = match u.parse() {
            Ok(n) => n,
            Err(_) => {
                lookup(rootfs, "etc/passwd", u).map(|(id, _)| id).ok_or_else(|| SpecError::UnknownUser(u.into()))?
            }
        };
        gid = match g {
            Some(g) => Some(g.parse().ok().or_else(|| lookup(rootfs, "etc/group", g).map(|(id, _)| id)).unwrap_or(0)),
            None => lookup_uid_gid(rootfs, uid),
        };
    }
    if let Some(u) = run_as_user {
        uid = u;
        gid = gid.or_else(|| lookup_uid_gid(rootfs, u));
    }
    let gid = run_as_group.or(gid).unwrap_or(0);
    let mut extra: Vec<u32> =
        psc.and_then(|s| s.supplemental_groups.as_ref()).into_iter().flatten().filter_map(|g| id(Some(*g))).collect();
    if let Some(fs) = id(psc.and_then(|s| s.fs_group)) {
        extra.push(fs);
    }
    Ok((uid, gid, extra))
}

/// (id, primary gid) of a name in the image's passwd/group file.
fn lookup(rootfs: &Path, file: &str, name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&name) {
            return None;
        }
        Some((f.get(2)?.parse().ok()?, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0)))
    })
}

fn lookup_uid_gid(rootfs: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(3)?.parse().ok()).flatten()
    })
}

/// A resource of a container's requests or limits, in milli-units.
fn quantity(
    list: Option<&std::collections::BTreeMap<String, ApiQuantity>>,
    name: &str,
) -> Result<Option<i128>, SpecError> {
    list.and_then(|l| l.get(name))
        .map(|q| parse_quantity(&q.0).map(|q| q.milli_value()).map_err(SpecError::Quantity))
        .transpose()
}

/// Upstream's OOM score adjustment by QoS class.
pub fn oom_score_adj(qos: QosClass, memory_request: u64, memory_capacity: u64) -> i64 {
    match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let adj = 1000 - (1000 * memory_request as i64) / (memory_capacity.max(1) as i64);
            adj.clamp(3, 999)
        }
    }
}

pub fn build(plan: &ContainerPlan<'_>) -> Result<Value, SpecError> {
    let c = plan.container;
    let no_sc = SecurityContext::default();
    let sc = c.security_context.as_ref().unwrap_or(&no_sc);
    let privileged = sc.privileged.unwrap_or(false);
    let argv = argv(c, plan.image, plan.env)?;
    let (uid, gid, additional) = user(plan.pod, c, plan.image, plan.rootfs)?;
    let mut caps: Vec<String> = if privileged {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    let cap_name = |s: &str| if s.starts_with("CAP_") { s.to_string() } else { format!("CAP_{}", s.to_uppercase()) };
    let capabilities = sc.capabilities.as_ref();
    let drops: Vec<String> =
        capabilities.and_then(|c| c.drop.as_ref()).into_iter().flatten().map(|s| cap_name(s)).collect();
    if drops.iter().any(|d| d == "CAP_ALL") {
        caps.clear();
    }
    caps.retain(|c| !drops.contains(c));
    for add in capabilities.and_then(|c| c.add.as_ref()).into_iter().flatten() {
        if add.eq_ignore_ascii_case("ALL") {
            caps = ALL_CAPS.iter().map(|s| s.to_string()).collect();
        } else if !caps.contains(&cap_name(add)) {
            caps.push(cap_name(add));
        }
    }
    // Kubernetes' default lets processes gain privileges (setuid binaries); an explicit
    // allowPrivilegeEscalation: false or a non-root user without CAP_SYS_ADMIN sets the flag.
    let no_new_privs = !privileged && sc.allow_privilege_escalation != Some(true);
    let env = process_env(plan.env);
    let cwd = c.working_dir.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        if plan.image.working_dir.is_empty() {
            "/".into()
        } else {
            plan.image.working_dir.clone()
        }
    });

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/dev/shm", "type": "bind", "source": plan.shm_dir, "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": plan.hosts_file, "options": ["rbind", "rw"]}),
        json!({"destination": "/etc/resolv.conf", "type": "bind", "source": plan.resolv_conf, "options": ["rbind", "rw"]}),
        json!({"destination": "/etc/hostname", "type": "bind", "source": plan.hostname_file, "options": ["rbind", "rw"]}),
    ];
    let term_path = c.termination_message_path.as_deref().unwrap_or("/dev/termination-log");
    mounts.push(
        json!({"destination": term_path, "type": "bind", "source": plan.termination_log, "options": ["rbind", "rw"]}),
    );
    for vm in c.volume_mounts.iter().flatten() {
        let name = vm.name.as_str();
        let vol = plan.volumes.get(name).ok_or_else(|| SpecError::UnknownVolume(name.to_string()))?;
        let mut source: PathBuf = vol.host_path.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let sub = crate::env::expand(sub, plan.env);
            if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                return Err(SpecError::SubPath(sub));
            }
            source = source.join(&sub);
            if std::fs::symlink_metadata(&source).is_err() {
                std::fs::create_dir_all(&source)?;
            }
        }
        let ro = vol.read_only || vm.read_only.unwrap_or(false);
        mounts.push(json!({"destination": vm.mount_path, "type": "bind", "source": source,
            "options": ["rbind", "rprivate", if ro { "ro" } else { "rw" }]}));
    }

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    if plan.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }
    for (kind, path) in [("network", plan.netns), ("ipc", plan.ipcns), ("uts", plan.utsns)] {
        if let Some(p) = path {
            namespaces.push(json!({"type": kind, "path": p}));
        }
    }

    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let cpu_request = quantity(requests, "cpu")?.or(quantity(limits, "cpu")?);
    // cpu.shares from the request (milliCPU * 1024 / 1000, at least 2), a CFS quota from the limit.
    let shares = cpu_request.map(|m| ((m * 1024) / 1000).max(2)).unwrap_or(2);
    let mut cpu = json!({"shares": shares});
    if let Some(limit) = quantity(limits, "cpu")? {
        cpu["quota"] = json!(((limit * 100_000) / 1000).max(1000));
        cpu["period"] = json!(100_000);
    }
    resources["cpu"] = cpu;
    if let Some(mem) = quantity(limits, "memory")? {
        let bytes = (mem / 1000) as i64;
        // Swap stays off for the container: the limit is the limit.
        resources["memory"] = json!({"limit": bytes, "swap": bytes});
    }
    let memory_request =
        quantity(requests, "memory")?.or(quantity(limits, "memory")?).map(|m| (m / 1000) as u64).unwrap_or(0);

    let seccomp = seccomp_profile(plan.pod, c, privileged, &caps, plan.seccomp_dir)?;
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            // `tty: true`: the shim gives the process a pty and logs what it prints.
            "terminal": c.tty.unwrap_or(false),
            "user": {"uid": uid, "gid": gid, "additionalGids": additional},
            "args": argv,
            "env": env,
            "cwd": cwd,
            // No rlimits: containers inherit the node's, as containerd's default spec does
            // (raising RLIMIT_NOFILE above the node's hard limit fails with EPERM).
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            "noNewPrivileges": no_new_privs,
            "oomScoreAdj": oom_score_adj(plan.qos, memory_request, plan.memory_capacity),
        },
        "root": {"path": plan.rootfs, "readonly": sc.read_only_root_filesystem.unwrap_or(false)},
        "mounts": mounts,
        "linux": {
            "cgroupsPath": plan.cgroups_path,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": if privileged { json!([]) } else { json!(["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]) },
            "readonlyPaths": if privileged { json!([]) } else { json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]) },
        },
    });
    if let Some(profile) = seccomp {
        spec["linux"]["seccomp"] = profile;
    }
    Ok(spec)
}

/// Syscalls the RuntimeDefault profile refuses with EPERM: those Docker's default profile
/// blocks for a container without extra capabilities (kernel modules, keyrings, clocks,
/// tracing other processes, BPF, reboot, swap, ...).
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "settimeofday",
    "swapon",
    "swapoff",
    "sysfs",
    "_sysctl",
    "uselib",
    "userfaultfd",
    "ustat",
];

/// Refused unless the container has CAP_SYS_ADMIN (as Docker's profile does).
const ADMIN_SYSCALLS: &[&str] = &[
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "name_to_handle_at",
];

/// The container's seccomp filter from `securityContext.seccompProfile` (the container's
/// over the pod's): RuntimeDefault, a Localhost profile file (OCI `linux.seccomp` JSON) or
/// none (Unconfined, unset, privileged).
pub fn seccomp_profile(
    pod: &Pod,
    container: &Container,
    privileged: bool,
    caps: &[String],
    dir: &Path,
) -> Result<Option<Value>, SpecError> {
    let profile: Option<&SeccompProfile> = container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod::spec(pod).security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref()));
    let Some(profile) = profile.filter(|_| !privileged) else { return Ok(None) };
    match profile.type_.as_str() {
        "RuntimeDefault" => {
            let mut denied: Vec<&str> = DENIED_SYSCALLS.to_vec();
            if !caps.iter().any(|c| c == "CAP_SYS_ADMIN") {
                denied.extend(ADMIN_SYSCALLS);
            }
            Ok(Some(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
            })))
        }
        "Localhost" => {
            let rel = profile.localhost_profile.as_deref().unwrap_or("");
            if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
                return Err(SpecError::Seccomp(format!("localhostProfile {rel:?} must be a relative path")));
            }
            let path = dir.join(rel);
            let text =
                std::fs::read_to_string(&path).map_err(|e| SpecError::Seccomp(format!("{}: {e}", path.display())))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| SpecError::Seccomp(format!("{}: {e}", path.display())))?;
            Ok(Some(v))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_apimachinery::resources::qos_class;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn container(v: Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn qos_classes() {
        // The kubelet's class is the API's (`resources::qos_class`): one rule for both.
        let pod = |c: Value| pod(json!({"spec": {"containers": [c]}}));
        assert_eq!(qos_class(&pod(json!({}))), QosClass::BestEffort);
        assert_eq!(
            qos_class(&pod(json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}))),
            QosClass::Guaranteed
        );
        assert_eq!(
            qos_class(&pod(
                json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}})
            )),
            QosClass::Guaranteed
        );
        assert_eq!(qos_class(&pod(json!({"resources": {"requests": {"cpu": "100m"}}}))), QosClass::Burstable);
        // A recorded class wins over the spec: status.qosClass is immutable.
        let recorded = self::pod(json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "0"}}}]},
            "status": {"qosClass": "Burstable"}}));
        assert_eq!(qos_class(&recorded), QosClass::Burstable);
    }

    #[test]
    fn command_and_args_replace_entrypoint_and_cmd() {
        let img = ImageDefaults { entrypoint: vec!["/ep".into()], cmd: vec!["a".into()], ..Default::default() };
        let env = vec![("X".to_string(), "1".to_string())];
        assert_eq!(argv(&container(json!({})), &img, &env).unwrap(), vec!["/ep", "a"]);
        assert_eq!(argv(&container(json!({"args": ["b", "$(X)"]})), &img, &env).unwrap(), vec!["/ep", "b", "1"]);
        assert_eq!(argv(&container(json!({"command": ["sh"]})), &img, &env).unwrap(), vec!["sh"]);
        assert!(argv(&container(json!({})), &ImageDefaults::default(), &env).is_err());
    }

    /// A cluster with no ConfigMaps or Secrets (the containers below refer to none).
    struct NoObjects;

    impl crate::objects::ObjectSource for NoObjects {
        fn get<'a>(
            &'a self,
            _: crate::objects::SourceKind,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Option<crate::objects::SourceObject>, String>> {
            Box::pin(std::future::ready(Ok(None)))
        }
        fn service_account<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Option<k8s_openapi::api::core::v1::ServiceAccount>, String>>
        {
            Box::pin(std::future::ready(Ok(None)))
        }
    }

    /// The process environment of a container with `image_env` (the image config's `Env`)
    /// and the pod's `env`, resolved as the pod worker does, then as the runtime writes it.
    async fn process_env_of(image_env: &[&str], pod_env: Value) -> Vec<String> {
        let pod = pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}));
        let c = container(json!({"name": "c", "env": pod_env}));
        let alloc = std::collections::BTreeMap::new();
        let facts = crate::env::PodFacts { pod: &pod, pod_ips: &[], host_ip: "", node_allocatable: &alloc };
        let base: Vec<(String, String)> = image_env
            .iter()
            .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap())
            .collect();
        let env = crate::env::resolve(&facts, &c, &base, &[], &NoObjects).await.unwrap();
        process_env(&env)
    }

    #[tokio::test]
    async fn path_is_the_pods_then_the_images_then_the_runtimes_default() {
        let default = format!("PATH={DEFAULT_PATH}");
        // Neither sets one (an image built FROM scratch): containerd's default, first.
        assert_eq!(process_env_of(&[], json!(null)).await, [default.as_str()]);
        assert_eq!(
            process_env_of(&["HOME=/"], json!([{"name": "A", "value": "1"}])).await,
            [&default, "HOME=/", "A=1"]
        );
        // The image's, and no default besides it.
        assert_eq!(process_env_of(&["PATH=/app/bin", "HOME=/"], json!(null)).await, ["PATH=/app/bin", "HOME=/"]);
        // The pod's wins over the image's and over the default.
        assert_eq!(
            process_env_of(&["PATH=/app/bin"], json!([{"name": "PATH", "value": "/opt/bin"}])).await,
            ["PATH=/opt/bin"]
        );
        assert_eq!(process_env_of(&[], json!([{"name": "PATH", "value": "/opt/bin"}])).await, ["PATH=/opt/bin"]);
        // Set empty on purpose is still set: no default replaces it.
        assert_eq!(process_env_of(&[], json!([{"name": "PATH", "value": ""}])).await, ["PATH="]);
    }

    #[test]
    fn spec_parses_as_oci_and_carries_limits() {
        let pod = pod(json!({"spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"cpu": "500m", "memory": "16Mi"}}}]}}));
        let c = pod::spec(&pod).containers[0].clone();
        let img = ImageDefaults { cmd: vec!["sh".into()], ..Default::default() };
        let p = Path::new("/x");
        let vols = VolumePaths::new();
        let plan = ContainerPlan {
            pod: &pod,
            container: &c,
            image: &img,
            env: &[],
            rootfs: p,
            volumes: &vols,
            netns: Some(p),
            ipcns: Some(p),
            utsns: Some(p),
            hosts_file: p,
            resolv_conf: p,
            hostname_file: p,
            shm_dir: p,
            termination_log: p,
            cgroups_path: "/kubus/podx/c",
            qos: qos_class(&pod),
            memory_capacity: 1 << 30,
            cgroup_v2: false,
            seccomp_dir: p,
        };
        let v = build(&plan).unwrap();
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        let mem = spec.linux().as_ref().unwrap().resources().as_ref().unwrap().memory().as_ref().unwrap().limit();
        assert_eq!(mem, Some(16 * 1024 * 1024));
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(v["process"]["oomScoreAdj"], -997);
        assert!(v["linux"]["seccomp"].is_null(), "no profile asked for, none set");
        assert_eq!(v["process"]["env"], json!([format!("PATH={DEFAULT_PATH}")]), "no PATH given: the default");
    }

    #[test]
    fn seccomp_profiles() {
        let caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        let dir = std::env::temp_dir();
        let pod = pod(json!({"spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}));
        let none = container(json!({}));
        let p = seccomp_profile(&pod, &none, false, &caps, &dir).unwrap().unwrap();
        let denied = p["syscalls"][0]["names"].as_array().unwrap();
        assert!(denied.contains(&json!("kexec_load")) && denied.contains(&json!("unshare")));
        let oci: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert_eq!(oci.syscalls().as_ref().unwrap()[0].errno_ret(), Some(1));
        // The container's setting wins; Unconfined and privileged containers get none.
        let unconfined = container(json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}));
        assert!(seccomp_profile(&pod, &unconfined, false, &caps, &dir).unwrap().is_none());
        assert!(seccomp_profile(&pod, &none, true, &caps, &dir).unwrap().is_none());
        // CAP_SYS_ADMIN lets mount and namespace calls through.
        let admin: Vec<String> = caps.iter().cloned().chain(["CAP_SYS_ADMIN".to_string()]).collect();
        let p = seccomp_profile(&pod, &none, false, &admin, &dir).unwrap().unwrap();
        assert!(!p["syscalls"][0]["names"].as_array().unwrap().contains(&json!("mount")));
        let escape = container(
            json!({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "../etc/x"}}}),
        );
        assert!(seccomp_profile(&pod, &escape, false, &caps, &dir).is_err());
    }
}
