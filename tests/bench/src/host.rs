//! What the benches read of and do to the host: privileges, memory and CPU time of processes,
//! random names, stopping and killing processes.

use std::process::Command;
use std::time::Duration;

/// Whether this process runs as root (the node and proxy benches change the host).
pub(crate) use kubus_container_runtime::is_root;

/// VmRSS of a process, in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
}

/// A random token naming what a bench creates on the host (bridges, tables, dirs).
pub(crate) fn token() -> anyhow::Result<String> {
    let mut b = [0u8; 3];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Stops a child `kubus` with SIGTERM (it cleans up), SIGKILL after 10 s.
pub(crate) fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    for _ in 0..100 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `kubus node-reset` of a bench's node (`exe` is the kubus binary): removes what the agent
/// made on the host. Cleanup: a failure is printed, not returned.
pub(crate) fn node_reset(exe: &std::path::Path, node_dir: &std::path::Path, bridge: &str, cgroup_root: &str) {
    match Command::new(exe)
        .args(["node-reset", "--data-dir"])
        .arg(node_dir)
        .args(["--bridge", bridge, "--cgroup-root", cgroup_root])
        .env("KUBUS_LOG", "warn")
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("cleanup: node-reset failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => eprintln!("cleanup: node-reset: {e}"),
    }
}

/// Kills the nats-server of `kubus up`'s data dir `dir`: a kubus killed outright leaves it behind.
pub(crate) fn kill_nats_server(dir: &std::path::Path) {
    if let Ok(pid) = std::fs::read_to_string(dir.join("nats-server.pid")) {
        let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).stderr(std::process::Stdio::null()).status();
    }
}

/// Proportional set size: shared pages (the kubus binary's text) split among their users.
pub(crate) fn pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("Pss:")?.split_whitespace().next()?.parse().ok())
}

/// utime + stime + cutime + cstime of a process, in clock ticks (`/proc/<pid>/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    fields.get(11..15)?.iter().map(|f| f.parse::<u64>().ok()).sum()
}

/// utime + stime of a process (all its threads, not its children), in clock ticks.
pub(crate) fn own_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    fields.get(11..13)?.iter().map(|f| f.parse::<u64>().ok()).sum()
}

/// CPU ticks of a process per thread name (components name their threads: see `kubus up`).
pub(crate) fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // utime and stime are fields 14 and 15, counted after the ")" that ends comm.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(comm).or_insert(0) += ticks;
    }
    out
}

/// (busy, total) clock ticks of all cores from /proc/stat; idle and iowait count as not busy.
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// Clock ticks per second of `/proc/<pid>/stat` and `/proc/stat` (USER_HZ).
pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// SIGKILLs every process whose command line mentions `needle` (a path carrying this run's
/// token), e.g. shims left by a failed phase.
pub(crate) fn kill_processes_mentioning(needle: &str) {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            let _ = Command::new("kill").args(["-KILL", &name]).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn reads_this_process() {
        assert!(vm_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        let t = token().unwrap();
        assert!(t.len() == 6 && t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
    }

    #[test]
    fn cpu_ticks_grow_with_work() {
        let me = std::process::id();
        let (a0, (b0, t0)) = (cpu_ticks(me).unwrap(), machine_ticks().unwrap());
        let hz = clock_ticks_per_second();
        // Spin until this process has used 0.1 s of CPU, however busy the machine is (a
        // loaded machine gives a spinning thread less than its wall time).
        let start = Instant::now();
        let mut x = 0u64;
        while ((cpu_ticks(me).unwrap() - a0) as f64) < 0.1 * hz && start.elapsed() < Duration::from_secs(30) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let (a1, (b1, t1)) = (cpu_ticks(me).unwrap(), machine_ticks().unwrap());
        assert!((a1 - a0) as f64 / hz >= 0.1, "process ticks {a0} -> {a1} at {hz} Hz");
        assert!(b1 - b0 >= a1 - a0 && t1 - t0 >= b1 - b0, "machine busy {b0}->{b1}, total {t0}->{t1}");
    }
}
