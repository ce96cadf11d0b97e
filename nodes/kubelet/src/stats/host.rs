//! The node's own totals and a pod's network counters, from /proc: what the kubelet's summary
//! takes from the root cgroup, read the same way on cgroup v1 and v2 (the v2 root has no
//! `memory.current`).

use super::StatsError;
use std::path::Path;

/// Nanoseconds per clock tick of /proc/stat: the kernel reports in USER_HZ, fixed at 100 on
/// every architecture Linux exports it for.
const NS_PER_TICK: u64 = 10_000_000;

/// CPU time the node spent doing work (user, nice, system, irq, softirq, steal; guest time is
/// already in user), nanoseconds, from the `cpu` line of /proc/stat.
pub fn parse_proc_stat(text: &str, path: &Path) -> Result<u64, StatsError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| StatsError::Missing { path: path.to_path_buf(), field: "cpu".into() })?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    if fields.len() < 8 {
        return Err(StatsError::Malformed { path: path.to_path_buf(), value: line.to_string() });
    }
    // user nice system idle iowait irq softirq steal
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7];
    Ok(busy.saturating_mul(NS_PER_TICK))
}

/// (usage, working set) of the node's memory in bytes from /proc/meminfo: usage is what is not
/// free, as the root cgroup counts it; the working set leaves out inactive file pages.
pub fn parse_meminfo(text: &str, path: &Path) -> Result<(u64, u64), StatsError> {
    let field = |key: &str| -> Result<u64, StatsError> {
        let rest = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .ok_or_else(|| StatsError::Missing { path: path.to_path_buf(), field: key.to_string() })?;
        let kib = rest.trim().trim_end_matches("kB").trim();
        kib.parse::<u64>()
            .map(|k| k * 1024)
            .map_err(|_| StatsError::Malformed { path: path.to_path_buf(), value: rest.trim().to_string() })
    };
    let usage = field("MemTotal")?.saturating_sub(field("MemFree")?);
    Ok((usage, super::cgroup::working_set(usage, field("Inactive(file)")?)))
}

/// Bytes (received, transmitted) by a network namespace's interfaces other than `lo`, from
/// `/proc/<pid>/net/dev` of a process inside it (as cAdvisor reads a pod's network).
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let Some((iface, counters)) = line.split_once(':') else { continue };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if f.len() >= 9 {
            rx = rx.saturating_add(f[0]);
            tx = tx.saturating_add(f[8]);
        }
    }
    (rx, tx)
}

pub fn node_cpu_ns() -> Result<u64, StatsError> {
    let path = Path::new("/proc/stat");
    parse_proc_stat(&super::read_file(path)?, path)
}

pub fn node_memory() -> Result<(u64, u64), StatsError> {
    let path = Path::new("/proc/meminfo");
    parse_meminfo(&super::read_file(path)?, path)
}

/// The network counters of the namespace `pid` lives in.
pub fn net_of_pid(pid: i32) -> Result<(u64, u64), StatsError> {
    Ok(parse_net_dev(&super::read_file(Path::new(&format!("/proc/{pid}/net/dev")))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        let text = "cpu  100 5 50 9000 7 3 2 1 0 0\ncpu0 50 2 25 4500 3 1 1 0 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat(text, Path::new("x")).unwrap(), (100 + 5 + 50 + 3 + 2 + 1) * NS_PER_TICK);
        assert!(parse_proc_stat("cpu 1 2\n", Path::new("x")).is_err());
        assert!(parse_proc_stat("", Path::new("x")).is_err());
    }

    #[test]
    fn meminfo() {
        let text =
            "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    500 kB\nInactive(file):  300 kB\n";
        assert_eq!(parse_meminfo(text, Path::new("x")).unwrap(), (800 * 1024, 500 * 1024));
        assert!(parse_meminfo("MemTotal: 1 kB\n", Path::new("x")).is_err());
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
eth0:    5000      20    0    0    0     0          0         0     7000      30    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (5000, 7000));
        assert_eq!(parse_net_dev("garbage"), (0, 0));
    }
}
