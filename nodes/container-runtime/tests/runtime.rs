//! Real containers through real shims (root): lifecycle, logs, signals, OOM, exec (pipes and tty),
//! attach, agent restart, shim death, deletion leaving nothing behind, latency.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{pid_alive, status_field, Fixture};
use futures::StreamExt;
use kubus_container_runtime::logs::parse_record;
use kubus_container_runtime::{read_logs, ContainerState, ExecSpec, ExitReason, LogOptions, LogStream, RuntimeError};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(T, f).await.unwrap_or_else(|_| panic!("{what} timed out"))
}

/// After delete: no shim dir, no libcontainer state, no leaf cgroup, no shim process.
fn assert_gone(f: &Fixture, id: &str, shim_pid: Option<i32>) {
    assert!(!f.root.join("state/shims").join(id).exists(), "shim dir left");
    assert!(!f.root.join("runc").join(id).exists(), "libcontainer state left");
    assert_eq!(f.cgroup_dirs(&f.container_cgroup(id)), Vec::<std::path::PathBuf>::new(), "cgroup left");
    if let Some(pid) = shim_pid {
        assert!(!pid_alive(pid), "shim {pid} still running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_exit_code_and_cri_logs() {
    let f = Fixture::new();
    let req = f.create_request("life", &["sh", "-c", "echo hello; echo oops >&2; printf tail; exit 3"], None);
    let (id, log_path) = (req.id.clone(), req.log_path.clone());
    let info = within("create", f.rt().create(req)).await.unwrap();
    assert_eq!(info.state, ContainerState::Created);
    assert_eq!(info.labels.get("io.kubernetes.container.name").map(String::as_str), Some("life"));
    let init = info.init_pid.unwrap();
    // The leaf cgroup exists below the pod's in every hierarchy, with the init in it.
    let leaves = f.cgroup_dirs(&f.container_cgroup(&id));
    assert!(!leaves.is_empty());
    let procs = std::fs::read_to_string(leaves[0].join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p.trim() == init.to_string()), "init {init} not in {procs}");

    within("start", f.rt().start(&id)).await.unwrap();
    let exit = within("wait", f.rt().wait(&id)).await.unwrap();
    assert_eq!((exit.code, exit.signal, exit.oom_killed, exit.reason), (3, None, false, ExitReason::Error));
    assert!(exit.started_at.unwrap() <= exit.finished_at);
    assert!(matches!(f.rt().state(&id).await.unwrap(), ContainerState::Exited(e) if e.code == 3));

    let raw = std::fs::read_to_string(&log_path).unwrap();
    let recs: Vec<_> =
        raw.lines().map(|l| parse_record(l.as_bytes()).unwrap_or_else(|| panic!("bad line {l:?}"))).collect();
    let view: Vec<(LogStream, bool, String)> =
        recs.iter().map(|r| (r.stream, r.partial, String::from_utf8_lossy(&r.text).into_owned())).collect();
    assert!(view.contains(&(LogStream::Stdout, false, "hello".into())), "{raw}");
    assert!(view.contains(&(LogStream::Stderr, false, "oops".into())), "{raw}");
    assert!(view.contains(&(LogStream::Stdout, true, "tail".into())), "{raw}");
    for l in raw.lines() {
        let ts = l.split(' ').next().unwrap();
        assert!(ts.ends_with('Z') && ts.len() >= 20, "{l}");
    }
    let (_tx, rx) = watch::channel(true);
    let text: Vec<Bytes> = read_logs(&log_path, LogOptions::default(), rx).await.unwrap().collect().await;
    let text = String::from_utf8(text.concat()).unwrap();
    // stdout and stderr are two pipes: their relative order in the log is not fixed, only each
    // stream's own order is.
    let (hello, tail) = (text.find("hello\n"), text.find("tail"));
    assert!(text.contains("oops\n") && hello.is_some() && tail.is_some() && hello < tail, "{text:?}");

    let shim_pid = f.rt().list().await.unwrap()[0].shim_pid;
    within("delete", f.rt().delete(&id)).await.unwrap();
    assert_gone(&f, &id, shim_pid);
    // Idempotent.
    f.rt().delete(&id).await.unwrap();
    assert!(matches!(f.rt().state(&id).await, Err(RuntimeError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_gives_137() {
    let f = Fixture::new();
    let req = f.create_request("kill", &["sleep", "1000"], None);
    let id = req.id.clone();
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    let ContainerState::Running { pid, .. } = f.rt().state(&id).await.unwrap() else { panic!("not running") };
    assert!(pid_alive(pid));
    // A waiter registered before the kill gets the exit too.
    let rt2 = f.runtime();
    let id2 = id.clone();
    let waiter = tokio::spawn(async move { rt2.wait(&id2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.rt().kill(&id, 9, false).await.unwrap();
    let exit = within("wait", waiter).await.unwrap().unwrap();
    assert_eq!((exit.code, exit.signal, exit.reason), (137, Some(9), ExitReason::Error));
    // Killing an exited container is not an error.
    f.rt().kill(&id, 15, false).await.unwrap();
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed() {
    let f = Fixture::new();
    // Doubles a shell string until the 16 MiB limit is hit (no swap here, so the OOM killer acts).
    let req = f.create_request("oom", &["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"], Some(16 << 20));
    let id = req.id.clone();
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    let exit = within("wait", f.rt().wait(&id)).await.unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!((exit.code, exit.reason), (137, ExitReason::OOMKilled));
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_pipes_and_exit_codes() {
    let f = Fixture::new();
    let req = f.create_request("exec", &["sleep", "1000"], None);
    let id = req.id.clone();
    f.rt().create(req).await.unwrap();
    // Not running yet: exec is refused.
    assert!(f.rt().exec_sync(&id, vec!["true".into()], T).await.is_err());
    f.rt().start(&id).await.unwrap();

    let mut s = f
        .rt()
        .exec(
            &id,
            ExecSpec {
                args: vec!["sh".into(), "-c".into(), "echo out $FOO; echo err >&2; pwd; exit 7".into()],
                env: vec!["FOO=bar".into()],
                cwd: Some("/tmp".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(s.pid > 0);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut o, mut e) = (true, true);
    while o || e {
        tokio::select! {
            d = s.stdout.recv(), if o => match d { Some(d) => out.extend_from_slice(&d), None => o = false },
            d = s.stderr.recv(), if e => match d { Some(d) => err.extend_from_slice(&d), None => e = false },
        }
    }
    assert_eq!(String::from_utf8(out).unwrap(), "out bar\n/tmp\n");
    assert_eq!(String::from_utf8(err).unwrap(), "err\n");
    assert_eq!(within("exit", s.exit).await.unwrap(), 7);

    // stdin: cat echoes what it reads and ends when stdin is closed.
    let mut s =
        f.rt().exec(&id, ExecSpec { args: vec!["cat".into()], stdin: true, ..Default::default() }).await.unwrap();
    let stdin = s.stdin.take().unwrap();
    stdin.send(Bytes::from_static(b"ping\n")).await.unwrap();
    stdin.send(Bytes::from(vec![b'z'; 100_000])).await.unwrap();
    drop(stdin);
    let mut got = Vec::new();
    while let Some(d) = within("cat output", s.stdout.recv()).await {
        got.extend_from_slice(&d);
    }
    assert_eq!(got.len(), 5 + 100_000);
    assert!(got.starts_with(b"ping\nzzz"));
    assert_eq!(within("exit", s.exit).await.unwrap(), 0);

    // exec_sync: output and code; a timeout kills the process.
    let (code, output) =
        f.rt().exec_sync(&id, vec!["sh".into(), "-c".into(), "echo probe; exit 2".into()], T).await.unwrap();
    assert_eq!((code, output.as_slice()), (2, &b"probe\n"[..]));
    let started = Instant::now();
    let r = f.rt().exec_sync(&id, vec!["sleep".into(), "77".into()], Duration::from_millis(300)).await;
    assert!(matches!(r, Err(RuntimeError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut left = String::new();
    for _ in 0..100 {
        left = String::from_utf8(f.rt().exec_sync(&id, vec!["ps".into()], T).await.unwrap().1).unwrap();
        if !left.contains("sleep 77") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!left.contains("sleep 77"), "timed-out exec still running:\n{left}");
    // An unknown command is the exec's error, the container goes on.
    assert!(f.rt().exec_sync(&id, vec!["/nonexistent".into()], T).await.is_err());
    assert!(matches!(f.rt().state(&id).await.unwrap(), ContainerState::Running { .. }));
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_tty_and_resize() {
    let f = Fixture::new();
    let req = f.create_request("tty", &["sleep", "1000"], None);
    let id = req.id.clone();
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    let mut s = f
        .rt()
        .exec(&id, ExecSpec { args: vec!["sh".into()], tty: true, stdin: true, ..Default::default() })
        .await
        .unwrap();
    s.resize.send((123, 45)).await.unwrap();
    // Give the resize a head start on the same connection (frames are ordered anyway).
    let stdin = s.stdin.take().unwrap();
    stdin.send(Bytes::from_static(b"tty; stty size; exit 5\n")).await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = within("tty output", s.stdout.recv()).await {
        got.extend_from_slice(&d);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("45 123"), "{text:?}");
    assert_eq!(within("exit", s.exit).await.unwrap(), 5);
    assert!(s.stderr.recv().await.is_none(), "a tty has no separate stderr");
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shim_outlives_agent_and_is_adopted_then_lost() {
    let mut f = Fixture::new();
    let mut req = f.create_request("adopt", &["sleep", "1000"], None);
    req.spec.process_mut().as_mut().unwrap().set_oom_score_adj(Some(500));
    let id = req.id.clone();
    // A descriptor without O_CLOEXEC, as a lock file opened through libc would be: the shim
    // must not keep it open.
    let marker = f.root.join("inherited-marker");
    let file = std::fs::File::create(&marker).unwrap();
    let leaked = nix::unistd::dup(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap();
    let created = f.rt().create(req).await;
    nix::unistd::close(leaked).unwrap();
    created.unwrap();
    f.rt().start(&id).await.unwrap();
    let before = f.rt().list().await.unwrap();
    assert_eq!(before.len(), 1);
    let ContainerState::Running { pid, started_at } = before[0].state.clone() else { panic!("not running") };
    let shim = before[0].shim_pid.unwrap();
    // Detached: its parent (the process we started) has exited, it is in a session of its own, and
    // its oom_score_adj was put back after libcontainer copied the container's (500) into it:
    // -998, or 0 where the sandbox lacks CAP_SYS_RESOURCE.
    let me = std::process::id().to_string();
    assert_ne!(status_field(shim, "PPid").unwrap(), me);
    let sid = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let sid: i32 = sid.rsplit(')').next().unwrap().split_whitespace().nth(3).unwrap().parse().unwrap();
    // The session was made by the process we started (it exited); ours is another one.
    let my_sid = nix::unistd::getsid(None).unwrap().as_raw();
    assert_ne!(sid, my_sid);
    assert!(!pid_alive(sid), "the session leader (the process the agent started) has exited");
    let cap_sys_resource = u64::from_str_radix(&status_field(shim, "CapEff").unwrap(), 16).unwrap() & (1 << 24) != 0;
    let adj = std::fs::read_to_string(format!("/proc/{shim}/oom_score_adj")).unwrap();
    assert_eq!(adj.trim(), if cap_sys_resource { "-998" } else { "0" });
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim(), "500");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{shim}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok().map(|p| p.display().to_string()))
        .collect();
    assert!(!fds.iter().any(|p| p.contains("inherited-marker")), "{fds:?}");
    assert!(fds.iter().any(|p| p.ends_with("shim.log")), "{fds:?}");

    // Agent restart: a new Runtime finds the same container, pid and start time.
    f.rt = None;
    let rt = f.runtime();
    let after = rt.list().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].state, ContainerState::Running { pid, started_at });
    assert_eq!(after[0].labels, before[0].labels);
    assert_eq!(rt.exec_sync(&id, vec!["echo".into(), "still here".into()], T).await.unwrap().1, b"still here\n");

    // The shim dies: the container is reported lost (kubelet's ContainerStatusUnknown, 137),
    // and delete cleans up through a `shim cleanup` child, container processes included.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::Signal::SIGKILL).unwrap();
    for _ in 0..200 {
        if !pid_alive(shim) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = rt.list().await.unwrap();
    let ContainerState::Exited(e) = &lost[0].state else { panic!("{:?}", lost[0].state) };
    assert_eq!((e.code, e.reason), (137, ExitReason::ContainerStatusUnknown));
    assert_eq!(lost[0].shim_pid, None);
    assert!(pid_alive(pid), "the container outlives its shim until cleanup");
    rt.delete(&id).await.unwrap();
    for _ in 0..200 {
        if !pid_alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pid_alive(pid), "container init {pid} survived cleanup");
    assert_gone(&f, &id, Some(shim));
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_reports_and_leaves_nothing() {
    let f = Fixture::new();
    let req = f.create_request("bad", &["/no/such/binary"], None);
    let id = req.id.clone();
    let err = f.rt().create(req).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RuntimeError::ShimStart { .. }), "{msg}");
    assert!(msg.contains("/no/such/binary") || msg.contains("not found"), "{msg}");
    assert_gone(&f, &id, None);
    // Same id again after the failure, and a duplicate is refused.
    let req = f.create_request("bad", &["true"], None);
    f.rt().create(req).await.unwrap();
    let dup = f.create_request("bad", &["true"], None);
    assert!(matches!(f.rt().create(dup).await, Err(RuntimeError::AlreadyExists(_))));
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_and_latency() {
    let f = Fixture::new();
    // A kubelet-style id `<pod uid>-<container name>-<restart>` pushes socket paths past 108 bytes.
    let long = format!("0123e4567-e89b-12d3-a456-426614174000-{}-0", "c".repeat(50));
    let req = f.create_request(&long, &["echo", "long"], None);
    let id = req.id.clone();
    assert!(f.root.join("state/shims").join(&id).join("shim.sock").as_os_str().len() > 108);
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    assert_eq!(f.rt().wait(&id).await.unwrap().code, 0);
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);

    // create + start + exit + delete of `true`, 20 times one after another.
    let mut times = Vec::new();
    for i in 0..20 {
        let req = f.create_request(&format!("lat{i}"), &["true"], None);
        let id = req.id.clone();
        let t0 = Instant::now();
        f.rt().create(req).await.unwrap();
        f.rt().start(&id).await.unwrap();
        let exit = f.rt().wait(&id).await.unwrap();
        f.rt().delete(&id).await.unwrap();
        times.push(t0.elapsed());
        assert_eq!(exit.code, 0);
        assert_gone(&f, &id, None);
    }
    times.sort();
    println!("create+start+exit+delete over 20 runs: p50 {:?}, min {:?}, max {:?}", times[10], times[0], times[19]);
    // Mean per operation from the runtime's own histogram (the whole test binary's operations).
    for mf in prometheus::gather().iter().filter(|m| m.name() == "kubelet_runtime_operations_duration_seconds") {
        for m in mf.get_metric() {
            let h = m.get_histogram();
            let op = m.get_label().iter().find(|l| l.name() == "operation_type").map(|l| l.value().to_string());
            let mean_ms = h.get_sample_sum() / h.get_sample_count().max(1) as f64 * 1000.0;
            println!("  {}: {} ops, mean {mean_ms:.1} ms", op.unwrap_or_default(), h.get_sample_count());
        }
    }
    let ok = prometheus::gather()
        .iter()
        .filter(|m| m.name() == "kubelet_runtime_operations_total")
        .flat_map(|m| m.get_metric().to_vec())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "create"))
        .map(|m| m.get_counter().get_value())
        .sum::<f64>();
    assert!(ok >= 21.0, "create counter {ok}");

    // Shims are independent processes: concurrent lifecycles need no lock.
    let rt = std::sync::Arc::new(f.runtime());
    let mut tasks = Vec::new();
    for i in 0..6 {
        let req = f.create_request(&format!("par{i}"), &["sh", "-c", &format!("echo {i}; exit {i}")], None);
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let id = req.id.clone();
            rt.create(req).await?;
            rt.start(&id).await?;
            let code = rt.wait(&id).await?.code;
            rt.delete(&id).await?;
            Ok::<_, RuntimeError>(code)
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(within("parallel", t).await.unwrap().unwrap(), i as i32);
    }
    assert!(f.rt().list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_logs_until_exit() {
    let f = Fixture::new();
    let req = f.create_request("follow", &["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done"], None);
    let (id, log_path) = (req.id.clone(), req.log_path.clone());
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    let (tx, rx) = watch::channel(false);
    let opts = LogOptions { follow: true, timestamps: true, ..Default::default() };
    let stream = read_logs(&log_path, opts, rx).await.unwrap();
    let reader = tokio::spawn(async move { stream.collect::<Vec<Bytes>>().await });
    let exit = f.rt().wait(&id).await.unwrap();
    assert_eq!(exit.code, 0);
    tx.send(true).unwrap();
    let text = String::from_utf8(within("follow", reader).await.unwrap().concat()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    for (i, l) in lines.iter().enumerate() {
        let (ts, rest) = l.split_once(' ').unwrap();
        assert!(ts.ends_with('Z'));
        assert_eq!(rest, format!("line {}", i + 1));
    }
    f.rt().delete(&id).await.unwrap();
}

#[test]
fn pod_cgroup_limits_and_removal() {
    let f = Fixture::new();
    let dirs = f.cgroup_dirs(&f.pod_cgroup);
    assert!(dirs.len() >= 3, "{dirs:?}");
    let read = |ctrl: &str, file: &str| {
        let d = dirs.iter().find(|d| d.to_string_lossy().contains(&format!("/{ctrl}/"))).unwrap();
        std::fs::read_to_string(d.join(file)).unwrap().trim().to_string()
    };
    if f.layout.version == kubus_container_runtime::cgroups::CgroupVersion::V1 {
        assert_eq!(read("memory", "memory.limit_in_bytes"), (256u64 << 20).to_string());
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "150000");
        assert_eq!(read("pids", "pids.max"), "512");
        assert!(!read("cpuset", "cpuset.cpus").is_empty());
    }
    // A process left in the pod cgroup is killed by remove, which is idempotent.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Child(std::process::Command::new("/bin/busybox").args(["sleep", "1000"]).spawn().unwrap());
    for d in &dirs {
        std::fs::write(d.join("cgroup.procs"), child.0.id().to_string()).unwrap();
    }
    assert_eq!(f.layout.pids(&f.pod_cgroup).unwrap(), vec![child.0.id() as i32]);
    f.layout.remove(&f.pod_cgroup).unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    assert!(!f.layout.exists(&f.pod_cgroup).unwrap());
    f.layout.remove(&f.pod_cgroup).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_terminal_logs_its_output() {
    let f = Fixture::new();
    // Waits for the resize before printing, so the size it reports is the one we set.
    let script = "while [ \"$(stty size)\" != \"33 111\" ]; do sleep 0.05; done; tty; stty size";
    let mut req = f.create_request("ttyinit", &["sh", "-c", script], None);
    req.spec.process_mut().as_mut().unwrap().set_terminal(Some(true));
    let (id, log_path) = (req.id.clone(), req.log_path.clone());
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    f.rt().resize(&id, 111, 33).await.unwrap();
    let exit = within("wait", f.rt().wait(&id)).await.unwrap();
    assert_eq!(exit.code, 0);
    let (_tx, rx) = watch::channel(true);
    let text: Vec<Bytes> = read_logs(&log_path, LogOptions::default(), rx).await.unwrap().collect().await;
    let text = String::from_utf8(text.concat()).unwrap();
    // A terminal turns \n into \r\n; the log keeps what the terminal produced.
    assert!(text.contains("/dev/pts/") && text.contains("33 111"), "{text:?}");
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
    // Without a terminal, resize is refused.
    let req = f.create_request("notty", &["sleep", "1000"], None);
    let id = req.id.clone();
    f.rt().create(req).await.unwrap();
    assert!(matches!(f.rt().resize(&id, 80, 24).await, Err(RuntimeError::Shim { .. })));
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

/// Reads an attach or exec session's stdout until it holds `want`.
async fn read_until(s: &mut kubus_container_runtime::ExecSession, got: &mut Vec<u8>, want: &str) {
    while !String::from_utf8_lossy(got).contains(want) {
        let d = within(want, s.stdout.recv()).await.unwrap_or_else(|| panic!("output ended before {want:?}"));
        got.extend_from_slice(&d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_with_stdin_once() {
    let f = Fixture::new();
    let mut req = f.create_request("attach", &["sh", "-c", "read l; echo got:$l; cat; echo end"], None);
    (req.stdin, req.stdin_once) = (true, true);
    let id = req.id.clone();
    f.rt().create(req).await.unwrap();
    // Only a running container takes clients.
    assert!(matches!(f.rt().attach(&id, true).await, Err(RuntimeError::Shim { .. })));
    f.rt().start(&id).await.unwrap();
    let mut writer = within("attach", f.rt().attach(&id, true)).await.unwrap();
    let mut watcher = within("attach", f.rt().attach(&id, false)).await.unwrap();
    assert!(watcher.stdin.is_none());
    let stdin = writer.stdin.take().unwrap();
    stdin.send(Bytes::from_static(b"hello\n")).await.unwrap();
    let (mut w_out, mut v_out) = (Vec::new(), Vec::new());
    read_until(&mut writer, &mut w_out, "got:hello\n").await;
    read_until(&mut watcher, &mut v_out, "got:hello\n").await;
    stdin.send(Bytes::from_static(b"more\n")).await.unwrap();
    // stdinOnce: closing the client's stdin closes the container's, so cat ends and the init.
    drop(stdin);
    for (s, out) in [(&mut writer, &mut w_out), (&mut watcher, &mut v_out)] {
        while let Some(d) = within("attached output", s.stdout.recv()).await {
            out.extend_from_slice(&d);
        }
        assert_eq!(String::from_utf8_lossy(out), "got:hello\nmore\nend\n");
    }
    assert_eq!(within("exit", writer.exit).await.unwrap(), 0);
    assert_eq!(within("exit", watcher.exit).await.unwrap(), 0);
    assert_eq!(within("wait", f.rt().wait(&id)).await.unwrap().code, 0);
    f.rt().delete(&id).await.unwrap();
    assert_gone(&f, &id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_keeps_stdin_across_clients() {
    let f = Fixture::new();
    let mut req = f.create_request("reattach", &["sh", "-c", "while read l; do echo got:$l; done"], None);
    req.stdin = true;
    let (id, log_path) = (req.id.clone(), req.log_path.clone());
    f.rt().create(req).await.unwrap();
    f.rt().start(&id).await.unwrap();
    for word in ["one", "two"] {
        let mut s = within("attach", f.rt().attach(&id, true)).await.unwrap();
        let stdin = s.stdin.take().unwrap();
        stdin.send(Bytes::from(format!("{word}\n"))).await.unwrap();
        read_until(&mut s, &mut Vec::new(), &format!("got:{word}\n")).await;
        // Without stdinOnce, a client closing its stdin leaves the container's open.
        drop(stdin);
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(f.rt().state(&id).await.unwrap(), ContainerState::Running { .. }));
    f.rt().delete(&id).await.unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_gone(&f, &id, None);
    assert!(log.contains("got:one") && log.contains("got:two"), "{log}");
}
