//! Disk use of what pods write on the node: each container's writable layer (the overlay's
//! upper directory), its logs, and the pod's emptyDir volumes; what the kubelet's summary calls
//! a container's `rootfs` and `logs`, a pod's `volume` stats and its `ephemeral-storage`.
//!
//! This filesystem has no project quotas to read the figures from, so they are counted by
//! walking the directories, as cAdvisor and the kubelet do with `du`. A walk costs in
//! proportion to the files, so it is done on the slow period of cAdvisor's disk-usage
//! housekeeping ([`FS_PERIOD`]), not at each scrape: each pod is measured when it is first seen
//! with a container not measured yet, then once per period, and the figures are served from
//! [`FsCache`] in between.

use super::StatsError;
use crate::context::PodHandleInner;
use prometheus::{register_histogram, Histogram};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How often a pod's directories are walked again (cAdvisor's disk usage period).
pub const FS_PERIOD: Duration = Duration::from_secs(60);

static WALK_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_kubelet_fs_usage_duration_seconds",
        "Time to measure the disk use of one pod's writable layers, logs and emptyDirs",
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .expect("registers once")
});

pub use kubus_bus::usage::FsUsage;

/// What `du -x` and `find -xdev` say of `dir`: blocks and inodes below it (itself included),
/// on its own filesystem only, without following symbolic links, each hard-linked file once.
pub fn disk_usage(dir: &Path) -> Result<FsUsage, StatsError> {
    let read_err = |path: &Path, source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => StatsError::Gone(path.to_path_buf()),
        _ => StatsError::Read { path: path.to_path_buf(), source },
    };
    let top = std::fs::symlink_metadata(dir).map_err(|e| read_err(dir, e))?;
    let dev = top.dev();
    let mut usage = FsUsage::default();
    let mut linked: HashSet<u64> = HashSet::new();
    let mut count = |m: &std::fs::Metadata| {
        if m.nlink() > 1 && !m.is_dir() && !linked.insert(m.ino()) {
            return;
        }
        usage.used_bytes += m.blocks() * 512;
        usage.inodes_used += 1;
    };
    count(&top);
    if !top.is_dir() {
        return Ok(usage);
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        // A directory removed meanwhile (a container's files change under the walk) is skipped.
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            // Another filesystem mounted below (a tmpfs volume) is not this one's use.
            if m.dev() != dev {
                continue;
            }
            count(&m);
            if m.is_dir() {
                pending.push(e.path());
            }
        }
    }
    Ok(usage)
}

/// The block device (the mount source, e.g. `/dev/vda`) holding `path`, as cAdvisor's
/// `device` label names it.
pub fn device_of(path: &Path, mountinfo: &str) -> Option<String> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let want = format!("{}:{}", major(dev), minor(dev));
    mountinfo.lines().find_map(|l| {
        let mut fields = l.split(' ');
        if fields.nth(2)? != want {
            return None;
        }
        // After the optional fields and their " - " separator: fs type, then the source.
        let (_, tail) = l.split_once(" - ")?;
        tail.split(' ').nth(1).map(str::to_string)
    })
}

/// Linux's encoding of a device number (glibc's `gnu_dev_major` and `gnu_dev_minor`).
fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

/// The last measure of one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodFs {
    /// Writable layer of each container run measured, by container id.
    pub layers: HashMap<String, FsUsage>,
    /// Logs of each container, by container name.
    pub logs: HashMap<String, FsUsage>,
    /// Each emptyDir volume, by name, and whether it is memory-backed (tmpfs).
    pub volumes: BTreeMap<String, (FsUsage, bool)>,
    /// The device of the pod's directory.
    pub device: Option<String>,
    /// The container runs this measure covered (a run without a layer yet included).
    pub(super) runs: HashSet<String>,
}

impl PodFs {
    /// The pod's ephemeral storage as the kubelet's summary counts it: writable layers, logs
    /// and the volumes on the node's disk (a memory-backed emptyDir is memory, not storage).
    pub fn ephemeral_storage(&self) -> FsUsage {
        let mut total = FsUsage::default();
        for u in self.layers.values().chain(self.logs.values()) {
            total += *u;
        }
        for (u, memory) in self.volumes.values() {
            if !memory {
                total += *u;
            }
        }
        total
    }
}

/// Where a pod's directories are on the node.
#[derive(Debug, Clone)]
pub struct FsLayout {
    /// The agent's state dir: pods are under `pods/<uid>`.
    pub state_dir: PathBuf,
    /// Container logs: `<ns>_<name>_<uid>/<container>/`.
    pub log_dir: PathBuf,
}

impl FsLayout {
    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("pods").join(uid)
    }
}

/// The last measures of every pod, refreshed by the housekeeping and read by the samples.
#[derive(Debug, Default)]
pub struct FsCache {
    pods: Mutex<HashMap<String, (Instant, Arc<PodFs>)>>,
}

impl FsCache {
    pub fn get(&self, uid: &str) -> Option<Arc<PodFs>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).get(uid).map(|(_, f)| f.clone())
    }

    /// Measures the pods that are due (never measured, a container run not measured yet, or
    /// measured longer than `period` ago) and forgets the pods gone; returns how many it walked.
    pub fn refresh(&self, layout: &FsLayout, pods: &[PodHandleInner], period: Duration) -> usize {
        let now = Instant::now();
        let due: Vec<&PodHandleInner> = {
            let mut cached = self.pods.lock().unwrap_or_else(|p| p.into_inner());
            let live: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
            cached.retain(|uid, _| live.contains(uid.as_str()));
            pods.iter()
                .filter(|p| !p.uid.is_empty())
                .filter(|p| match cached.get(&p.uid) {
                    None => true,
                    Some((at, fs)) => {
                        now.duration_since(*at) >= period
                            || p.containers.values().any(|(id, _, _)| !fs.runs.contains(id))
                    }
                })
                .collect()
        };
        if due.is_empty() {
            return 0;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for p in &due {
            let started = Instant::now();
            let fs = measure(layout, p, &mountinfo);
            WALK_DURATION.observe(started.elapsed().as_secs_f64());
            self.pods.lock().unwrap_or_else(|p| p.into_inner()).insert(p.uid.clone(), (Instant::now(), Arc::new(fs)));
        }
        due.len()
    }
}

/// Walks one pod's writable layers, logs and emptyDirs.
fn measure(layout: &FsLayout, p: &PodHandleInner, mountinfo: &str) -> PodFs {
    let pod_dir = layout.pod_dir(&p.uid);
    let mut fs = PodFs { device: device_of(&pod_dir, mountinfo), ..Default::default() };
    let log_dir = layout.log_dir.join(format!("{}_{}_{}", p.namespace, p.name, p.uid));
    for (name, (id, _, _)) in &p.containers {
        fs.runs.insert(id.clone());
        let upper = pod_dir.join("containers").join(id).join("upper");
        if let Some(u) = super::note("writable layer", disk_usage(&upper)) {
            fs.layers.insert(id.clone(), u);
        }
        if let Ok(u) = disk_usage(&log_dir.join(name)) {
            fs.logs.insert(name.clone(), u);
        }
    }
    for (name, memory) in &p.empty_dirs {
        if let Some(u) = super::note("emptyDir", disk_usage(&pod_dir.join("volumes").join(name))) {
            fs.volumes.insert(name.clone(), (u, *memory));
        }
    }
    fs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kubus-fs-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn disk_usage_counts_blocks_and_inodes_once() {
        let d = tmp();
        let empty = disk_usage(&d).unwrap();
        assert_eq!(empty.inodes_used, 1, "the directory itself");
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/big"), vec![7u8; 256 * 1024]).unwrap();
        fs::write(d.join("small"), b"x").unwrap();
        fs::hard_link(d.join("small"), d.join("small-again")).unwrap();
        std::os::unix::fs::symlink("/usr", d.join("link")).unwrap();
        let u = disk_usage(&d).unwrap();
        // The dir, a, b, big, small (once though linked twice), the link (not followed).
        assert_eq!(u.inodes_used, 6);
        assert!(u.used_bytes >= 256 * 1024 + empty.used_bytes, "{u:?}");
        assert!(u.used_bytes < 1 << 20, "the symlink's target is not counted: {u:?}");
        fs::remove_dir_all(&d).unwrap();
        assert!(disk_usage(&d).unwrap_err().is_gone());
    }

    #[test]
    fn devices_by_number_from_mountinfo() {
        assert_eq!((major(0xfd01), minor(0xfd01)), (0xfd, 1));
        let root = std::fs::metadata("/").unwrap().dev();
        let line = format!(
            "25 1 {}:{} / / rw,relatime shared:1 - ext4 /dev/vdz rw\n26 25 0:5 / /dev rw - devtmpfs udev rw",
            major(root),
            minor(root)
        );
        assert_eq!(device_of(Path::new("/"), &line).as_deref(), Some("/dev/vdz"));
        assert_eq!(device_of(Path::new("/"), "26 25 0:5 / /dev rw - devtmpfs udev rw"), None);
    }

    #[test]
    fn pods_are_walked_when_due_and_forgotten_when_gone() {
        let d = tmp();
        let layout = FsLayout { state_dir: d.join("state"), log_dir: d.join("logs") };
        let upper = layout.pod_dir("u1").join("containers/c1/upper");
        fs::create_dir_all(upper.join("tmp")).unwrap();
        fs::write(upper.join("tmp/out"), vec![1u8; 64 * 1024]).unwrap();
        fs::create_dir_all(layout.pod_dir("u1").join("volumes/scratch")).unwrap();
        fs::write(layout.pod_dir("u1").join("volumes/scratch/f"), vec![1u8; 8192]).unwrap();
        fs::create_dir_all(layout.log_dir.join("ns_p_u1/app")).unwrap();
        fs::write(layout.log_dir.join("ns_p_u1/app/0.log"), b"hello\n").unwrap();
        let mut pod = PodHandleInner {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u1".into(),
            containers: [("app".to_string(), ("c1".to_string(), 0, true))].into(),
            empty_dirs: vec![("scratch".into(), false)],
            ..Default::default()
        };
        let cache = FsCache::default();
        assert_eq!(cache.refresh(&layout, std::slice::from_ref(&pod), FS_PERIOD), 1);
        let fs1 = cache.get("u1").unwrap();
        assert!(fs1.layers["c1"].used_bytes >= 64 * 1024);
        assert!(fs1.volumes["scratch"].0.used_bytes >= 8192);
        assert!(fs1.logs["app"].used_bytes > 0);
        let total = fs1.ephemeral_storage();
        assert_eq!(
            total.used_bytes,
            fs1.layers["c1"].used_bytes + fs1.logs["app"].used_bytes + fs1.volumes["scratch"].0.used_bytes
        );
        // Not due again within the period.
        assert_eq!(cache.refresh(&layout, std::slice::from_ref(&pod), FS_PERIOD), 0);
        // A new run of the container is measured at once.
        pod.containers.insert("app".into(), ("c2".into(), 1, true));
        assert_eq!(cache.refresh(&layout, std::slice::from_ref(&pod), FS_PERIOD), 1);
        assert!(!cache.get("u1").unwrap().layers.contains_key("c2"), "no layer yet: nothing counted");
        assert_eq!(cache.refresh(&layout, std::slice::from_ref(&pod), FS_PERIOD), 0, "but the run was seen");
        // Past the period: walked again.
        assert_eq!(cache.refresh(&layout, std::slice::from_ref(&pod), Duration::ZERO), 1);
        assert_eq!(cache.refresh(&layout, &[], FS_PERIOD), 0);
        assert!(cache.get("u1").is_none(), "a pod gone is forgotten");
        fs::remove_dir_all(&d).unwrap();
    }
}
