//! The shim: one small single-threaded process per container (`kubus shim ...`).
//!
//! `create --id ID --dir SHIMDIR` detaches (setsid, closes inherited fds, chdir /, forks once more
//! so it outlives the agent), builds the container with libcontainer and then serves `shim.sock`
//! until `Delete`. The process that the agent started exits 0 once the container is Created, or 1
//! with the error on stderr. `cleanup --id ID --dir SHIMDIR` removes what a dead shim left.
//!
//! The server: `server` (its state, the build, requests), `event_loop` (poll and signals), `conn`
//! (a client's frames), `init` (the container's init: start, kill, log, exit), `attach`, `exec`,
//! `delete`, `stdio` (pipes and pty), `executor` and `seccomp` (in the container before execve).

mod attach;
mod conn;
mod delete;
mod event_loop;
mod exec;
mod executor;
mod init;
mod seccomp;
mod server;
mod stdio;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::timefmt;

pub(crate) const RECORD_FILE: &str = "shim.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const SOCKET_FILE: &str = "shim.sock";
pub(crate) const SHIM_LOG_FILE: &str = "shim.log";

/// `shim.json`: written by the agent before spawning, completed by the shim once the container is
/// built and again when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShimRecord {
    pub id: String,
    pub bundle: PathBuf,
    pub log_path: PathBuf,
    pub runc_root: PathBuf,
    pub labels: BTreeMap<String, String>,
    #[serde(with = "timefmt::rfc3339")]
    pub created_at: SystemTime,
    #[serde(default)]
    pub shim_pid: Option<i32>,
    /// Start time of the shim (`/proc/<pid>/stat` field 22), so a reused pid is not mistaken for it.
    #[serde(default)]
    pub shim_start_time: Option<u64>,
    #[serde(default)]
    pub init_pid: Option<i32>,
    #[serde(default, with = "timefmt::rfc3339_opt")]
    pub started_at: Option<SystemTime>,
    /// The init reads a stdin the shim holds (for attach), as the container's `stdin: true`.
    #[serde(default)]
    pub stdin: bool,
    /// That stdin is closed when the first attached client closes it (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ShimError {
    #[error("usage: shim create|cleanup --id ID --dir SHIMDIR ({0})")]
    Usage(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{0}")]
    Libcontainer(#[from] libcontainer::error::LibcontainerError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Spec(#[from] libcontainer::oci_spec::OciSpecError),
    #[error("{0}")]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("{0}")]
    Proto(#[from] crate::proto::ProtoError),
    #[error("{0}")]
    Other(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Io { what, source }
}

pub(crate) fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Sys { what, source }
}

impl ShimRecord {
    pub(crate) fn load(dir: &Path) -> Result<Self, ShimError> {
        let path = dir.join(RECORD_FILE);
        let data = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
        Ok(serde_json::from_slice(&data)?)
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), ShimError> {
        write_atomic(&dir.join(RECORD_FILE), &serde_json::to_vec_pretty(self)?)
    }
}

/// Write to a temporary name and rename, so a reader never sees half a file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ShimError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    f.write_all(data).map_err(io_err(format!("writing {}", tmp.display())))?;
    f.sync_all().map_err(io_err(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot); `None` if gone.
pub(crate) fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parentheses: fields after the last ')' start at 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded as (pid, start time) still exists and is not a zombie.
pub(crate) fn process_alive(pid: i32, start_time: Option<u64>) -> bool {
    let Some(now) = proc_start_time(pid) else { return false };
    if start_time.is_some_and(|s| s != now) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("X");
    !matches!(state, "Z" | "X" | "x")
}

struct Args {
    cmd: String,
    id: String,
    dir: PathBuf,
}

fn parse_args(args: Vec<String>) -> Result<Args, ShimError> {
    let mut it = args.into_iter();
    let cmd = it.next().ok_or_else(|| ShimError::Usage("no command".into()))?;
    let (mut id, mut dir) = (None, None);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| ShimError::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--id" => id = Some(value),
            "--dir" => dir = Some(PathBuf::from(value)),
            other => return Err(ShimError::Usage(format!("unknown flag {other}"))),
        }
    }
    let id = id.ok_or_else(|| ShimError::Usage("--id missing".into()))?;
    let dir = dir.ok_or_else(|| ShimError::Usage("--dir missing".into()))?;
    crate::validate_id(&id).map_err(|e| ShimError::Usage(e.to_string()))?;
    // The directory is removed at the end: make sure it is this container's and absolute.
    if !dir.is_absolute() || dir.file_name().and_then(|n| n.to_str()) != Some(id.as_str()) {
        return Err(ShimError::Usage(format!("--dir must be an absolute path ending in /{id}")));
    }
    Ok(Args { cmd, id, dir })
}

/// Entry point of the hidden `kubus shim` subcommand; `args` are the words after `shim`.
/// Must run before any other thread exists (it forks).
pub fn shim_main(args: Vec<String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kubus shim: {e}");
            return ExitCode::from(2);
        }
    };
    match args.cmd.as_str() {
        "create" => create_main(args),
        "cleanup" => match delete::cleanup(&args.id, &args.dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kubus shim cleanup {}: {e}", args.id);
                ExitCode::FAILURE
            }
        },
        other => {
            eprintln!("kubus shim: unknown command {other:?} (create, cleanup)");
            ExitCode::from(2)
        }
    }
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok()))
        .unwrap_or(1)
}

fn create_main(args: Args) -> ExitCode {
    if thread_count() > 1 {
        // fork() would copy only this thread, with whatever locks the others held.
        eprintln!("kubus shim: must be started single-threaded (dispatch `shim` before starting a runtime)");
        return ExitCode::from(2);
    }
    // Own session: the agent's process group signals and terminal hangups do not reach us.
    let _ = nix::unistd::setsid();
    close_inherited_fds();
    if let Err(e) = nix::unistd::chdir("/") {
        eprintln!("kubus shim: chdir /: {e}");
        return ExitCode::FAILURE;
    }
    let (ready_r, ready_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kubus shim: pipe: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: this process is single-threaded (checked above), so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("kubus shim: fork: {e}");
            ExitCode::FAILURE
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            // The agent reaps us; our child is re-parented and outlives it. Relay its verdict.
            drop(ready_w);
            match read_ready(std::fs::File::from(ready_r)) {
                Some(msg) if msg == "ok" => ExitCode::SUCCESS,
                Some(msg) => {
                    eprintln!("{msg}");
                    ExitCode::FAILURE
                }
                None => {
                    eprintln!("kubus shim: the shim died while creating the container (see {SHIM_LOG_FILE})");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ready_r);
            redirect_stdio(&args.dir);
            let code = match server::run(&args.id, &args.dir, ready_w) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("kubus shim {}: {e}", args.id);
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

/// Reports the outcome of creation to the waiting parent: a length-prefixed message, because the
/// container's init holds a copy of the pipe until it execs, so EOF cannot mark the end.
pub(crate) fn report_ready(fd: OwnedFd, result: &Result<(), ShimError>) {
    let msg = match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("creating the container: {e}"),
    };
    let mut frame = (msg.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(msg.as_bytes());
    let _ = std::fs::File::from(fd).write_all(&frame);
}

fn read_ready(mut f: std::fs::File) -> Option<String> {
    let mut len = [0u8; 4];
    f.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; u32::from_be_bytes(len).min(1 << 20) as usize];
    f.read_exact(&mut msg).ok()?;
    Some(String::from_utf8_lossy(&msg).into_owned())
}

/// Close every fd >= 3 we inherited: a copy of the agent's lock file or of a pipe someone reads to
/// EOF would otherwise live as long as the container.
fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; nothing in this process uses fds >= 3 yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    // Older kernels: walk /proc/self/fd (collect first, the directory's own fd is among them).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd >= 3) {
        let _ = nix::unistd::close(fd);
    }
}

/// stdin/stdout to /dev/null, stderr (our diagnostics) to `SHIMDIR/shim.log`, so that nothing of
/// the agent's (its pipes) stays open in the shim.
fn redirect_stdio(dir: &Path) {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(SHIM_LOG_FILE));
        let target = log.as_ref().map(|f| f.as_raw_fd()).unwrap_or(null.as_raw_fd());
        let _ = nix::unistd::dup2(target, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let a = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()).collect());
        let ok = a(&["create", "--id", "c1", "--dir", "/run/x/shims/c1"]).unwrap();
        assert_eq!((ok.cmd.as_str(), ok.id.as_str()), ("create", "c1"));
        assert!(a(&["create", "--id", "c1", "--dir", "/run/x/shims/c2"]).is_err());
        assert!(a(&["create", "--id", "c1", "--dir", "shims/c1"]).is_err());
        assert!(a(&["create", "--id", "../c1", "--dir", "/x/../c1"]).is_err());
        assert!(a(&["create", "--id"]).is_err());
        assert!(a(&["create", "--dir", "/a/c1"]).is_err());
    }

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        let st = proc_start_time(me).unwrap();
        assert!(process_alive(me, Some(st)));
        assert!(!process_alive(me, Some(st + 1)));
        assert!(!process_alive(i32::MAX, None));
    }
}
