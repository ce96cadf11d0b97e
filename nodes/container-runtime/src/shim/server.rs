//! The shim's server: the state it keeps for its one container (the init, its output and stdin,
//! execs, clients), building the container, and answering requests. `event_loop.rs` drives it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::conn::Conn;
use super::exec::ExecSession;
use super::executor::ResetSignalsExecutor;
use super::stdio::{bind_in, resize, ProcessStdio};
use super::{io_err, report_ready, sys_err, ShimError, ShimRecord, SOCKET_FILE};
use crate::logs::CriLogWriter;
use crate::proto::{self, Request, Response, ShimState, TerminalSize};
use crate::ExitInfo;

/// The shim never moves its own oom_score_adj up again after libcontainer copied the
/// container's into it: the OOM killer must not pick the process that holds the exit code.
const SHIM_OOM_SCORE_ADJ: &str = "-998";

pub(super) struct Shim {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) record: ShimRecord,
    pub(super) container: Container,
    pub(super) spec: Spec,
    pub(super) cgroups_path: Option<String>,
    pub(super) init_pid: Pid,
    pub(super) started_at: Option<SystemTime>,
    /// The init's wait status and when it was seen, until its output is drained.
    pub(super) init_exit: Option<(i32, Option<i32>, SystemTime, Instant)>,
    pub(super) exit: Option<ExitInfo>,
    pub(super) log: CriLogWriter,
    pub(super) init_out: Option<File>,
    pub(super) init_err: Option<File>,
    pub(super) init_tty: Option<File>,
    /// Write end of the init's stdin (a pipe, or the pty master's clone for a terminal), kept
    /// for attach when the container has `stdin`.
    pub(super) init_stdin: Option<File>,
    pub(super) init_stdin_buf: Vec<u8>,
    pub(super) init_stdin_close: bool,
    pub(super) listener: UnixListener,
    pub(super) signals: SignalFd,
    pub(super) conns: BTreeMap<u64, Conn>,
    pub(super) execs: BTreeMap<u64, ExecSession>,
    pub(super) waiters: Vec<u64>,
    pub(super) next_id: u64,
    pub(super) deleted: bool,
}

/// Builds the container, reports to the waiting parent, and serves until `Delete`.
pub(super) fn run(id: &str, dir: &Path, ready: OwnedFd) -> Result<(), ShimError> {
    let span = tracing::info_span!("shim", id);
    let _enter = span.enter();
    let shim = match Shim::create(id, dir) {
        Ok(s) => {
            report_ready(ready, &Ok(()));
            s
        }
        Err(e) => {
            tracing::error!(%e, "create failed");
            let res = Err(e);
            report_ready(ready, &res);
            return res;
        }
    };
    shim.serve()
}

impl Shim {
    fn create(id: &str, dir: &Path) -> Result<Self, ShimError> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(sys_err("sigprocmask"))?;
        let signals =
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(sys_err("signalfd"))?;

        let mut record = ShimRecord::load(dir)?;
        if record.id != id {
            return Err(ShimError::Other(format!("{} belongs to {}", dir.display(), record.id)));
        }
        let listener = bind_in(dir, SOCKET_FILE)?;
        listener.set_nonblocking(true).map_err(io_err("listener"))?;
        let log =
            CriLogWriter::open(&record.log_path).map_err(io_err(format!("opening {}", record.log_path.display())))?;

        let spec = Spec::load(record.bundle.join("config.json"))?;
        let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let cgroups_path =
            spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()).map(|p| p.to_string_lossy().into_owned());

        let builder = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(&record.runc_root)?
            .with_executor(ResetSignalsExecutor::default());
        let (builder, mut stdio) = ProcessStdio::wire(builder, dir, "console.sock", terminal, record.stdin)?;
        let container = builder.as_init(&record.bundle).with_systemd(false).with_detach(true).build()?;
        stdio.receive_terminal(record.stdin)?;
        protect_from_oom_killer();
        let init_pid = container.pid().ok_or_else(|| ShimError::Other("container has no init pid".into()))?;

        let me = std::process::id() as i32;
        record.shim_pid = Some(me);
        record.shim_start_time = super::proc_start_time(me);
        record.init_pid = Some(init_pid.as_raw());
        record.save(dir)?;
        tracing::info!(pid = init_pid.as_raw(), "container created");

        Ok(Self {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            record,
            container,
            spec,
            cgroups_path,
            init_pid,
            started_at: None,
            init_exit: None,
            exit: None,
            log,
            init_out: stdio.stdout,
            init_err: stdio.stderr,
            init_tty: stdio.tty,
            init_stdin: stdio.stdin,
            init_stdin_buf: Vec::new(),
            init_stdin_close: false,
            listener,
            signals,
            conns: BTreeMap::new(),
            execs: BTreeMap::new(),
            waiters: Vec::new(),
            next_id: 0,
            deleted: false,
        })
    }

    /// The answer to one request; `None` when it comes later (`Wait`).
    pub(super) fn request(&mut self, cid: u64, req: Request) -> Option<Response> {
        let span = tracing::debug_span!("request", ?req);
        let _enter = span.enter();
        let resp = match req {
            Request::Hello { proto } => {
                if proto != proto::PROTO_VERSION {
                    Response::Error {
                        message: format!("protocol {proto} unsupported, shim speaks {}", proto::PROTO_VERSION),
                    }
                } else {
                    Response::Hello { proto: proto::PROTO_VERSION, shim_pid: std::process::id() as i32 }
                }
            }
            Request::State => Response::State(ShimState {
                id: self.id.clone(),
                init_pid: self.init_pid.as_raw(),
                state: self.state(),
            }),
            Request::Start => self.start(),
            Request::Kill { signal, all } => self.kill(signal, all),
            Request::Wait => match &self.exit {
                Some(exit) => Response::Exit(exit.clone()),
                None => {
                    self.waiters.push(cid);
                    return None;
                }
            },
            Request::Exec(req) => match self.exec(cid, req) {
                Ok(pid) => Response::ExecStarted { pid },
                Err(e) => Response::Error { message: e.to_string() },
            },
            Request::Attach { stdin } => self.attach(cid, stdin),
            Request::Resize { width, height } => match &self.init_tty {
                Some(tty) => match resize(tty, TerminalSize { width, height }) {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error { message: e.to_string() },
                },
                None => Response::Error { message: "the container has no terminal".into() },
            },
            Request::Delete => match self.delete() {
                Ok(()) => {
                    self.deleted = true;
                    Response::Ok
                }
                Err(e) => Response::Error { message: format!("delete: {e}") },
            },
        };
        Some(resp)
    }
}

/// Puts our oom_score_adj back after libcontainer copied the container's into it. Below 0 needs
/// CAP_SYS_RESOURCE; without it (some sandboxes), 0 is the best we may do.
pub(super) fn protect_from_oom_killer() {
    if std::fs::write("/proc/self/oom_score_adj", SHIM_OOM_SCORE_ADJ).is_err() {
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "0") {
            tracing::warn!(%e, "cannot lower the shim's oom_score_adj");
        }
    }
}

/// Exit code (128 + signal for a signal) and signal of an ended child.
pub(super) fn exit_code(status: WaitStatus) -> Option<(i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}
