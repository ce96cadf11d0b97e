//! Pod-level cgroups, laid out like kubelet's cgroupfs driver:
//! `<cgroup_root>/pod<uid>` (Guaranteed), `<cgroup_root>/burstable/pod<uid>`,
//! `<cgroup_root>/besteffort/pod<uid>`, with each container's leaf (made by libcontainer from
//! `linux.cgroupsPath`) below its pod's. Works on cgroup v1 (legacy or hybrid: every mounted
//! controller hierarchy) and v2 (unified: controllers enabled down the tree).
//!
//! Plain file writes: this runs in the agent, which must not call libcontainer.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::common::CgroupSetup;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("detecting the cgroup setup: {0}")]
    Detect(String),
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("invalid cgroup path {0:?}: must be absolute, without . or .. components")]
    InvalidPath(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup {path} still has processes after killing them: {pids:?}")]
    Busy { path: PathBuf, pids: Vec<i32> },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy or hybrid: controllers on v1 hierarchies (libcontainer uses its v1 manager there).
    V1,
    V2,
}

/// The pod's QoS class picks its parent cgroup; the class is the API's (one definition for
/// the API server, the scheduler and the kubelet).
pub use kubus_apimachinery::resources::QosClass;

/// `<cgroup_root>/[burstable|besteffort/]pod<uid>`, as kubelet's cgroupfs driver names it.
pub fn pod_cgroup_path(cgroup_root: &str, qos: QosClass, pod_uid: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    match qos {
        QosClass::Guaranteed => format!("{root}/pod{pod_uid}"),
        QosClass::Burstable => format!("{root}/burstable/pod{pod_uid}"),
        QosClass::BestEffort => format!("{root}/besteffort/pod{pod_uid}"),
    }
}

/// A container's `linux.cgroupsPath`: its leaf below the pod's cgroup.
pub fn container_cgroup_path(pod_cgroup: &str, container_id: &str) -> String {
    format!("{}/{container_id}", pod_cgroup.trim_end_matches('/'))
}

/// Pod-level limits, in the units the kubelet derives from the containers' resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupResources {
    /// v1 `cpu.shares` (2..262144); converted to `cpu.weight` on v2 as kubelet does.
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; `None` = unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (kubelet: 100000).
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// kubelet's `CpuSharesToCpuWeight`: maps [2, 262144] onto [1, 10000].
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Where the cgroup hierarchies of this host are mounted.
#[derive(Debug, Clone)]
pub struct CgroupLayout {
    pub version: CgroupVersion,
    /// v1: mount point of each hierarchy with its controllers; v2: the one unified mount.
    hierarchies: Vec<Hierarchy>,
}

#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    controllers: Vec<String>,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

impl CgroupLayout {
    /// Reads the host's setup the way libcontainer will (`libcgroups::common::get_cgroup_setup`)
    /// and the mount points from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, CgroupError> {
        let setup = libcgroups::common::get_cgroup_setup().map_err(|e| CgroupError::Detect(e.to_string()))?;
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(io_err(Path::new("/proc/self/mountinfo")))?;
        let layout = match setup {
            CgroupSetup::Legacy | CgroupSetup::Hybrid => {
                Self { version: CgroupVersion::V1, hierarchies: parse_v1_mounts(&mountinfo) }
            }
            CgroupSetup::Unified => {
                let mount = parse_v2_mount(&mountinfo).ok_or(CgroupError::NoHierarchy)?;
                let controllers = fs::read_to_string(mount.join("cgroup.controllers"))
                    .map_err(io_err(&mount))?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                Self { version: CgroupVersion::V2, hierarchies: vec![Hierarchy { mount, controllers }] }
            }
        };
        if layout.hierarchies.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(layout)
    }

    /// The directory of `path` in every hierarchy.
    pub fn dirs(&self, path: &str) -> Result<Vec<PathBuf>, CgroupError> {
        let rel = relative(path)?;
        Ok(self.hierarchies.iter().map(|h| h.mount.join(&rel)).collect())
    }

    /// The directory of `path` in the hierarchy holding `controller` (v2: the unified one);
    /// None when no hierarchy has it. Readers of usage files (the kubelet's stats) use it.
    pub fn controller_dir(&self, controller: &str, path: &str) -> Result<Option<PathBuf>, CgroupError> {
        let rel = relative(path)?;
        let h = match self.version {
            CgroupVersion::V1 => self.hierarchies.iter().find(|h| h.has(controller)),
            CgroupVersion::V2 => self.hierarchies.first(),
        };
        Ok(h.map(|h| h.mount.join(rel)))
    }

    /// Whether `path` exists in any hierarchy.
    pub fn exists(&self, path: &str) -> Result<bool, CgroupError> {
        Ok(self.dirs(path)?.iter().any(|d| d.is_dir()))
    }

    /// Creates `path` (and its parents) in every hierarchy and writes the limits. Idempotent: an
    /// existing cgroup gets the limits rewritten.
    pub fn create(&self, path: &str, res: &CgroupResources) -> Result<(), CgroupError> {
        let rel = relative(path)?;
        for h in &self.hierarchies {
            match self.version {
                CgroupVersion::V1 => {
                    create_v1_dirs(h, &rel)?;
                    write_v1_limits(h, &h.mount.join(&rel), res)?;
                }
                CgroupVersion::V2 => {
                    create_v2_dirs(h, &rel)?;
                    write_v2_limits(&h.mount.join(&rel), res)?;
                }
            }
        }
        Ok(())
    }

    /// Every process in `path` and below, in any hierarchy (deduplicated).
    pub fn pids(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.dirs(path)? {
            collect_pids(&dir, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Removes `path` and everything below it in every hierarchy, SIGKILLing processes left in
    /// it first (the kubelet's pod cgroup teardown). Idempotent: a missing cgroup is success.
    pub fn remove(&self, path: &str) -> Result<(), CgroupError> {
        let dirs = self.dirs(path)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids(path)?;
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Busy { path: PathBuf::from(path), pids });
            }
            for pid in pids {
                // ESRCH (already gone) is fine; the loop re-reads until the cgroups are empty.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in dirs {
            remove_tree(&dir, deadline)?;
        }
        Ok(())
    }

    /// Times the OOM killer killed a process of the cgroup (`None`: no memory controller).
    pub fn oom_kill_count(&self, path: &str) -> Result<Option<u64>, CgroupError> {
        let rel = relative(path)?;
        let (file, key) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => ("memory.events", "oom_kill"),
        };
        let Some(h) = self.hierarchies.iter().find(|h| h.has("memory")) else {
            return Ok(None);
        };
        let p = h.mount.join(rel).join(file);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CgroupError::Io { path: p, source: e }),
        };
        Ok(text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok()))
    }
}

/// `path` below a hierarchy's mount; rejects what could escape it.
fn relative(path: &str) -> Result<PathBuf, CgroupError> {
    let rel = path.strip_prefix('/').ok_or_else(|| CgroupError::InvalidPath(path.to_string()))?;
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(CgroupError::InvalidPath(path.to_string()));
    }
    Ok(PathBuf::from(rel))
}

/// v1 hierarchies with at least one controller (named-only ones like `name=systemd` hold none of
/// our limits and libcontainer does not create leaves there).
fn parse_v1_mounts(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let super_opts = post.nth(1).unwrap_or_default();
        let Some(mount) = pre.split_whitespace().nth(4) else { continue };
        let controllers: Vec<String> = super_opts
            .split(',')
            .filter(|o| {
                !o.starts_with("name=")
                    && !matches!(*o, "rw" | "ro" | "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode")
                    && !o.starts_with("release_agent=")
            })
            .map(str::to_string)
            .collect();
        if !controllers.is_empty() {
            out.push(Hierarchy { mount: PathBuf::from(mount), controllers });
        }
    }
    out
}

fn parse_v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

/// mkdir every level; a new cpuset cgroup starts with empty cpus/mems (no task could join), so
/// each new level copies its parent's.
fn create_v1_dirs(h: &Hierarchy, rel: &Path) -> Result<(), CgroupError> {
    let mut dir = h.mount.clone();
    for comp in rel.components() {
        let parent = dir.clone();
        dir.push(comp);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::Io { path: dir, source: e }),
        }
        if h.has("cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let mine = fs::read_to_string(dir.join(f)).map_err(io_err(&dir))?;
                if mine.trim().is_empty() {
                    let theirs = fs::read_to_string(parent.join(f)).map_err(io_err(&parent))?;
                    write_file(&dir.join(f), theirs.trim())?;
                }
            }
        }
    }
    Ok(())
}

fn write_v1_limits(h: &Hierarchy, dir: &Path, res: &CgroupResources) -> Result<(), CgroupError> {
    if h.has("cpu") {
        if let Some(shares) = res.cpu_shares {
            write_file(&dir.join("cpu.shares"), &shares.to_string())?;
        }
        // The period first: a quota is checked against the current period.
        if let Some(period) = res.cpu_period {
            write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
        }
        write_file(&dir.join("cpu.cfs_quota_us"), &res.cpu_quota.unwrap_or(-1).to_string())?;
    }
    if h.has("memory") {
        if let Some(limit) = res.memory_limit {
            write_file(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
        }
    }
    if h.has("pids") {
        let v = res.pids_limit.map_or_else(|| "max".to_string(), |p| p.to_string());
        write_file(&dir.join("pids.max"), &v)?;
    }
    Ok(())
}

/// mkdir every level, enabling in each parent's `cgroup.subtree_control` the controllers it has
/// (limits of a child need the controller enabled in its parent).
fn create_v2_dirs(h: &Hierarchy, rel: &Path) -> Result<(), CgroupError> {
    let mut dir = h.mount.clone();
    for comp in rel.components() {
        enable_controllers(&dir)?;
        dir.push(comp);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::Io { path: dir, source: e }),
        }
    }
    // The pod's own children (container leaves) need them too.
    enable_controllers(&dir)
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = fs::read_to_string(dir.join("cgroup.controllers")).map_err(io_err(dir))?;
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).map_err(io_err(dir))?;
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| matches!(*c, "cpu" | "cpuset" | "memory" | "pids" | "io" | "hugetlb"))
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&dir.join("cgroup.subtree_control"), &missing.join(" "))
}

fn write_v2_limits(dir: &Path, res: &CgroupResources) -> Result<(), CgroupError> {
    let has = |f: &str| dir.join(f).exists();
    if has("cpu.weight") {
        if let Some(shares) = res.cpu_shares {
            write_file(&dir.join("cpu.weight"), &cpu_shares_to_weight(shares).to_string())?;
        }
    }
    if has("cpu.max") {
        let quota = match res.cpu_quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        write_file(&dir.join("cpu.max"), &format!("{quota} {}", res.cpu_period.unwrap_or(100_000)))?;
    }
    if has("memory.max") {
        let v = res.memory_limit.map_or_else(|| "max".to_string(), |m| m.to_string());
        write_file(&dir.join("memory.max"), &v)?;
    }
    if has("pids.max") {
        let v = res.pids_limit.map_or_else(|| "max".to_string(), |p| p.to_string());
        write_file(&dir.join("pids.max"), &v)?;
    }
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::Io { path: dir.to_path_buf(), source: e }),
    };
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for child in subdirs(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::Io { path: dir.to_path_buf(), source: e }),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// rmdir depth-first; EBUSY right after a kill (the exiting tasks still count) is retried.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    for child in subdirs(dir)? {
        remove_tree(&child, deadline)?;
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(CgroupError::Io { path: dir.to_path_buf(), source: e }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn parses_mounts() {
        let v1 = parse_v1_mounts(HYBRID);
        let got: Vec<(String, Vec<String>)> =
            v1.iter().map(|h| (h.mount.display().to_string(), h.controllers.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("/sys/fs/cgroup/cpu,cpuacct".to_string(), vec!["cpu".to_string(), "cpuacct".to_string()]),
                ("/sys/fs/cgroup/memory".to_string(), vec!["memory".to_string()]),
            ]
        );
        assert_eq!(parse_v2_mount(HYBRID), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn paths_like_kubelet() {
        assert_eq!(pod_cgroup_path("/kubus", QosClass::Burstable, "u-1"), "/kubus/burstable/podu-1");
        assert_eq!(pod_cgroup_path("/kubus/", QosClass::BestEffort, "u"), "/kubus/besteffort/podu");
        assert_eq!(pod_cgroup_path("/kubus", QosClass::Guaranteed, "u"), "/kubus/podu");
        assert_eq!(container_cgroup_path("/kubus/podu", "c1"), "/kubus/podu/c1");
        assert!(relative("kubus").is_err());
        assert!(relative("/kubus/../etc").is_err());
        assert!(relative("/").is_err());
        assert_eq!(relative("/a/b").unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn shares_to_weight_like_kubelet() {
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(0), 1);
    }

    /// The v2 code path on the unified hierarchy of this host (hybrid: cgroup2 at
    /// /sys/fs/cgroup/unified with few controllers), as root.
    #[test]
    fn v2_tree_create_kill_remove() {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(mount) = parse_v2_mount(&mountinfo) else {
            println!("skipped: no cgroup2 mount");
            return;
        };
        let controllers = fs::read_to_string(mount.join("cgroup.controllers"))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let layout = CgroupLayout {
            version: CgroupVersion::V2,
            hierarchies: vec![Hierarchy { mount: mount.clone(), controllers }],
        };
        let mut b = [0u8; 3];
        io::Read::read_exact(&mut fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
        let root = format!("/kubus-t{:02x}{:02x}{:02x}", b[0], b[1], b[2]);
        struct Guard(CgroupLayout, String);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.remove(&self.1);
            }
        }
        let _guard = Guard(layout.clone(), root.clone());
        let pod = pod_cgroup_path(&root, QosClass::BestEffort, "uid-1");
        let res = CgroupResources { pids_limit: Some(64), memory_limit: Some(64 << 20), ..Default::default() };
        layout.create(&pod, &res).unwrap();
        layout.create(&pod, &res).unwrap();
        assert!(layout.exists(&pod).unwrap());
        // The leaf as libcontainer makes it: a plain directory (a cgroup with controllers enabled
        // for children may hold no processes on v2).
        let leaf = container_cgroup_path(&pod, "c1");
        fs::create_dir(mount.join(relative(&leaf).unwrap())).unwrap();
        // Controllers the hierarchy offers are enabled for the pod's children.
        let offered = fs::read_to_string(mount.join(relative(&root).unwrap()).join("cgroup.controllers")).unwrap();
        let enabled = fs::read_to_string(mount.join(relative(&pod).unwrap()).join("cgroup.subtree_control")).unwrap();
        for c in offered.split_whitespace().filter(|c| matches!(*c, "cpu" | "memory" | "pids" | "hugetlb" | "io")) {
            assert!(enabled.split_whitespace().any(|e| e == c), "{c} not enabled: {enabled:?}");
        }
        struct Child(std::process::Child);
        impl Drop for Child {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Child(std::process::Command::new("/bin/sleep").arg("1000").spawn().unwrap());
        fs::write(mount.join(relative(&leaf).unwrap()).join("cgroup.procs"), child.0.id().to_string()).unwrap();
        assert_eq!(layout.pids(&root).unwrap(), vec![child.0.id() as i32]);
        layout.remove(&root).unwrap();
        assert!(!child.0.wait().unwrap().success());
        assert!(!layout.exists(&pod).unwrap());
        layout.remove(&root).unwrap();
    }
}
