//! Usage of one cgroup from its files, on v1 (cpuacct and memory hierarchies) and v2 (the
//! unified one), as cAdvisor reads them: cumulative CPU time, memory usage and the working set
//! (usage minus inactive file pages, what the kubelet and metrics-server report and evict by).

use super::StatsError;
use kubus_container_runtime::cgroups::{CgroupLayout, CgroupVersion};
use std::path::{Path, PathBuf};

/// What one cgroup used, read at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Cumulative CPU time of every process that ran in it, nanoseconds.
    pub cpu_ns: u64,
    pub memory_usage_bytes: u64,
    pub memory_working_set_bytes: u64,
}

/// cAdvisor's working set: usage without the inactive file cache (the kernel can drop that
/// at no cost), never below zero.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// Reads the usage of `path` (e.g. `/kubus/burstable/pod<uid>/<id>`) in the host's layout.
/// A cgroup that vanished meanwhile is [`StatsError::Gone`].
pub fn read(layout: &CgroupLayout, path: &str) -> Result<CgroupUsage, StatsError> {
    let dir = |controller: &'static str| -> Result<PathBuf, StatsError> {
        layout.controller_dir(controller, path)?.ok_or(StatsError::NoController(controller))
    };
    match layout.version {
        CgroupVersion::V1 => read_v1(&dir("cpuacct")?, &dir("memory")?),
        CgroupVersion::V2 => read_v2(&dir("cpu")?),
    }
}

/// The pids of `path` directly (not its children): `cgroup.procs` of its CPU hierarchy.
pub fn procs(layout: &CgroupLayout, path: &str) -> Result<Vec<i32>, StatsError> {
    let controller = if layout.version == CgroupVersion::V1 { "cpuacct" } else { "cpu" };
    let dir = layout.controller_dir(controller, path)?.ok_or(StatsError::NoController(controller))?;
    let text = super::read_file(&dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// v1: `cpuacct.usage` (ns), `memory.usage_in_bytes` and `total_inactive_file` of
/// `memory.stat` (the hierarchical count, as cAdvisor takes it).
pub fn read_v1(cpuacct: &Path, memory: &Path) -> Result<CgroupUsage, StatsError> {
    let cpu_ns = super::read_u64(&cpuacct.join("cpuacct.usage"))?;
    let usage = super::read_u64(&memory.join("memory.usage_in_bytes"))?;
    let stat_path = memory.join("memory.stat");
    let inactive = flat_keyed(&super::read_file(&stat_path)?, "total_inactive_file", &stat_path)?;
    Ok(CgroupUsage { cpu_ns, memory_usage_bytes: usage, memory_working_set_bytes: working_set(usage, inactive) })
}

/// v2: `usage_usec` of `cpu.stat`, `memory.current` and `inactive_file` of `memory.stat`.
/// (The root cgroup has no `memory.current`; the node's totals come from /proc.)
pub fn read_v2(dir: &Path) -> Result<CgroupUsage, StatsError> {
    let cpu_path = dir.join("cpu.stat");
    let usec = flat_keyed(&super::read_file(&cpu_path)?, "usage_usec", &cpu_path)?;
    let usage = super::read_u64(&dir.join("memory.current"))?;
    let stat_path = dir.join("memory.stat");
    let inactive = flat_keyed(&super::read_file(&stat_path)?, "inactive_file", &stat_path)?;
    Ok(CgroupUsage {
        cpu_ns: usec.saturating_mul(1000),
        memory_usage_bytes: usage,
        memory_working_set_bytes: working_set(usage, inactive),
    })
}

/// The value of `key` in a flat-keyed file (`key value` per line: memory.stat, cpu.stat).
pub fn flat_keyed(text: &str, key: &str, path: &Path) -> Result<u64, StatsError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        .ok_or_else(|| StatsError::Missing { path: path.to_path_buf(), field: key.to_string() })?;
    line.trim().parse().map_err(|_| StatsError::Malformed { path: path.to_path_buf(), value: line.trim().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fixture(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kubus-stats-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn v2_files() {
        let dir = fixture(&[
            ("cpu.stat", "usage_usec 2500123\nuser_usec 2000000\nsystem_usec 500123\nnr_periods 0\n"),
            ("memory.current", "10485760\n"),
            // `inactive_file` must not be confused with `active_file` or `inactive_anon`.
            ("memory.stat", "anon 4096\nfile 8192\nactive_file 100\ninactive_anon 7\ninactive_file 4194304\n"),
        ]);
        let u = read_v2(&dir).unwrap();
        assert_eq!(u.cpu_ns, 2_500_123_000);
        assert_eq!(u.memory_usage_bytes, 10_485_760);
        assert_eq!(u.memory_working_set_bytes, 10_485_760 - 4_194_304);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn v1_files() {
        let cpu = fixture(&[("cpuacct.usage", "123456789\n")]);
        let mem = fixture(&[
            ("memory.usage_in_bytes", "8388608\n"),
            ("memory.stat", "cache 100\ninactive_file 1\ntotal_inactive_file 2097152\ntotal_active_file 9\n"),
        ]);
        let u = read_v1(&cpu, &mem).unwrap();
        assert_eq!(
            u,
            CgroupUsage { cpu_ns: 123_456_789, memory_usage_bytes: 8_388_608, memory_working_set_bytes: 6_291_456 }
        );
        fs::remove_dir_all(&cpu).unwrap();
        fs::remove_dir_all(&mem).unwrap();
    }

    #[test]
    fn odd_and_missing_files_are_errors_not_panics() {
        let gone = std::env::temp_dir().join(format!("kubus-stats-gone-{}", uuid::Uuid::new_v4()));
        assert!(read_v2(&gone).unwrap_err().is_gone());
        let dir = fixture(&[("cpu.stat", "usage_usec lots\n"), ("memory.current", "max\n"), ("memory.stat", "")]);
        assert!(matches!(read_v2(&dir).unwrap_err(), StatsError::Malformed { .. }));
        fs::write(dir.join("cpu.stat"), "user_usec 1\n").unwrap();
        assert!(matches!(read_v2(&dir).unwrap_err(), StatsError::Missing { .. }));
        fs::write(dir.join("cpu.stat"), "usage_usec 1\n").unwrap();
        assert!(matches!(read_v2(&dir).unwrap_err(), StatsError::Malformed { .. }));
        fs::write(dir.join("memory.current"), "5\n").unwrap();
        assert!(matches!(read_v2(&dir).unwrap_err(), StatsError::Missing { .. }));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn working_set_never_negative() {
        assert_eq!(working_set(100, 40), 60);
        assert_eq!(working_set(100, 400), 0);
    }
}
