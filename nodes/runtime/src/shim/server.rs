//! The shim's container handling and its one-thread event loop (poll over the socket, the
//! container's output pipes, exec sessions and a signalfd for SIGCHLD).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::{Process, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{io_err, report_ready, sys_err, write_atomic, ShimError, ShimRecord, EXIT_FILE, SOCKET_FILE};
use crate::cgroups::CgroupLayout;
use crate::logs::{CriLogWriter, LogStream};
use crate::proto::{self, ExecRequest, Request, Response, ShimState, TerminalSize};
use crate::{ContainerState, ExitInfo, ExitReason};

/// The shim never moves its own oom_score_adj up again after libcontainer copied the
/// container's into it: the OOM killer must not pick the process that holds the exit code.
const SHIM_OOM_SCORE_ADJ: &str = "-998";
/// How long output may still arrive after a process exited (a background child can hold the pipe).
const INIT_DRAIN: Duration = Duration::from_secs(2);
const EXEC_DRAIN: Duration = Duration::from_secs(1);
/// Above this much unsent output to a client, the exec's output is not read (backpressure).
const HIGH_WATER: usize = 1 << 20;
/// Output queued for one attached client before it is considered gone.
const ATTACH_MAX_BACKLOG: usize = 16 << 20;
const READ_CHUNK: usize = 32 * 1024;

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Resets what the shim changed in its own signal state before the workload runs: Rust ignores
/// SIGPIPE and the shim blocks SIGCHLD/SIGTERM for its signalfd, and both would be inherited.
/// For an exec it also installs the container's seccomp filter: libcontainer 0.7 builds a
/// tenant's spec without `linux.seccomp`, so an exec would otherwise escape the filter that
/// confines the container (runc applies it to execs too).
#[derive(Clone, Default)]
struct ResetSignalsExecutor {
    tenant_seccomp: Option<libcontainer::oci_spec::runtime::LinuxSeccomp>,
}

impl Executor for ResetSignalsExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let dfl = SigAction::new(SigHandler::SigDfl, nix::sys::signal::SaFlags::empty(), SigSet::empty());
        for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
            // SAFETY: installing SIG_DFL runs no handler code; this is the container's single
            // thread, right before execve.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &dfl) };
        }
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        if let Some(profile) = &self.tenant_seccomp {
            install_seccomp(profile)?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

#[cfg(feature = "seccomp")]
fn install_seccomp(profile: &libcontainer::oci_spec::runtime::LinuxSeccomp) -> Result<(), ExecutorError> {
    libcontainer::seccomp::initialize_seccomp(profile)
        .map(|_| ())
        .map_err(|e| ExecutorError::Other(format!("installing the container's seccomp filter: {e}")))
}

/// Built without libseccomp, libcontainer ignores `linux.seccomp` for the container too.
#[cfg(not(feature = "seccomp"))]
fn install_seccomp(_: &libcontainer::oci_spec::runtime::LinuxSeccomp) -> Result<(), ExecutorError> {
    Ok(())
}

/// Puts our oom_score_adj back after libcontainer copied the container's into it. Below 0 needs
/// CAP_SYS_RESOURCE; without it (some sandboxes), 0 is the best we may do.
fn protect_from_oom_killer() {
    if std::fs::write("/proc/self/oom_score_adj", SHIM_OOM_SCORE_ADJ).is_err() {
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "0") {
            tracing::warn!(%e, "cannot lower the shim's oom_score_adj");
        }
    }
}

fn set_nonblocking(fd: &impl AsFd) -> Result<(), ShimError> {
    let raw = fd.as_fd().as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL).map_err(sys_err("F_GETFL"))?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(sys_err("F_SETFL"))?;
    Ok(())
}

fn pipe() -> Result<(File, OwnedFd), ShimError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    set_nonblocking(&r)?;
    Ok((File::from(r), w))
}

fn exit_code(status: WaitStatus) -> Option<(i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}

/// Reads what is available; `Ok(None)` at end of file (EIO on a pty whose other side is closed).
fn read_some(f: &mut File, buf: &mut [u8]) -> Result<Option<usize>, io::Error> {
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// The console socket libcontainer's init sends the pty master over: listen before the build,
/// accept after it (the connection waits in the backlog meanwhile).
struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    fn new(dir: &Path, name: &str) -> Result<Self, ShimError> {
        Ok(Self { listener: bind_in(dir, name)?, path: dir.join(name) })
    }

    fn receive_master(self) -> Result<File, ShimError> {
        set_nonblocking(&self.listener)?;
        let fd = self.listener.as_fd();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let n = nix::poll::poll(&mut fds, PollTimeout::from(5000u16)).map_err(sys_err("poll console socket"))?;
        if n == 0 {
            return Err(ShimError::Other("no terminal received on the console socket".into()));
        }
        let (stream, _) = self.listener.accept().map_err(io_err("accepting the console socket"))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(sys_err("receiving the pty master"))?;
        for c in msg.cmsgs().map_err(sys_err("control message"))? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS just installed this descriptor in our table; we own it.
                    let master = unsafe { File::from_raw_fd(fd) };
                    for &extra in &fds[1..] {
                        let _ = nix::unistd::close(extra);
                    }
                    set_nonblocking(&master)?;
                    return Ok(master);
                }
            }
        }
        Err(ShimError::Other("console socket message carried no file descriptor".into()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `dir/name` through an O_PATH fd of `dir`: a unix socket path is limited to 108 bytes and
/// long container ids under a long state dir exceed that.
fn bind_in(dir: &Path, name: &str) -> Result<UnixListener, ShimError> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(dir.join(name));
    let dirfd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map_err(io_err(format!("opening {}", dir.display())))?;
    UnixListener::bind(format!("/proc/self/fd/{}/{name}", dirfd.as_raw_fd()))
        .map_err(io_err(format!("binding {}/{name}", dir.display())))
}

fn resize(pty: &File, size: TerminalSize) -> Result<(), ShimError> {
    let ws = libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    unsafe { set_winsize(pty.as_raw_fd(), &ws) }.map_err(sys_err("TIOCSWINSZ"))?;
    Ok(())
}

enum Mode {
    Requests,
    /// Switched to stream frames of this exec.
    Exec(u64),
    /// Attached to the init's streams (stdin forwarded when asked for).
    Attach {
        stdin: bool,
    },
}

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    mode: Mode,
    eof: bool,
    close_after_flush: bool,
    dead: bool,
}

impl Conn {
    fn send(&mut self, resp: &Response) {
        match proto::encode_frame(resp) {
            Ok(f) => self.outbuf.extend_from_slice(&f),
            Err(e) => tracing::error!(%e, "encoding a response"),
        }
    }

    fn flush(&mut self) {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.close_after_flush {
            self.dead = true;
        }
    }

    /// The next complete stream frame; a corrupt one ends the connection.
    fn take_stream_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        proto::take_stream_frame(&mut self.inbuf).unwrap_or_else(|_| {
            self.dead = true;
            None
        })
    }

    fn fill(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    self.dead = true;
                    return;
                }
            }
        }
    }
}

struct ExecSession {
    pid: Pid,
    conn: Option<u64>,
    /// Write end of the process's stdin pipe (or the pty master's clone for a tty).
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    stdout: Option<File>,
    stderr: Option<File>,
    tty: Option<File>,
    exit: Option<(i32, Instant)>,
}

impl ExecSession {
    fn outputs_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some() || self.tty.is_some()
    }
}

#[derive(Clone, Copy, Debug)]
enum Token {
    Signal,
    Listener,
    InitOut(LogStream),
    InitTty,
    Conn(u64),
    ExecOut(u64, u8),
    ExecIn(u64),
    InitIn,
}

struct Shim {
    id: String,
    dir: PathBuf,
    record: ShimRecord,
    container: Container,
    spec: Spec,
    cgroups_path: Option<String>,
    init_pid: Pid,
    started_at: Option<SystemTime>,
    /// The init's wait status and when it was seen, until its output is drained.
    init_exit: Option<(i32, Option<i32>, SystemTime, Instant)>,
    exit: Option<ExitInfo>,
    log: CriLogWriter,
    init_out: Option<File>,
    init_err: Option<File>,
    init_tty: Option<File>,
    /// Write end of the init's stdin (a pipe, or the pty master's clone for a terminal), kept
    /// for attach when the container has `stdin`.
    init_stdin: Option<File>,
    init_stdin_buf: Vec<u8>,
    init_stdin_close: bool,
    listener: UnixListener,
    signals: SignalFd,
    conns: BTreeMap<u64, Conn>,
    execs: BTreeMap<u64, ExecSession>,
    waiters: Vec<u64>,
    next_id: u64,
    deleted: bool,
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

        let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(&record.runc_root)?
            .with_executor(ResetSignalsExecutor::default());
        let (mut init_out, mut init_err, mut console, mut init_stdin) = (None, None, None, None);
        if terminal {
            let c = ConsoleSocket::new(dir, "console.sock")?;
            builder = builder.with_console_socket(Some(&c.path));
            console = Some(c);
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            builder = builder.with_stdout(out_w).with_stderr(err_w);
            init_out = Some(out_r);
            init_err = Some(err_r);
            if record.stdin {
                let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
                set_nonblocking(&in_w)?;
                builder = builder.with_stdin(in_r);
                init_stdin = Some(File::from(in_w));
            }
        }
        let container = builder.as_init(&record.bundle).with_systemd(false).with_detach(true).build()?;
        let init_tty = console.map(ConsoleSocket::receive_master).transpose()?;
        if let (Some(tty), true) = (&init_tty, record.stdin) {
            init_stdin = Some(tty.try_clone().map_err(io_err("dup pty"))?);
        }
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
            init_out,
            init_err,
            init_tty,
            init_stdin,
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

    fn serve(mut self) -> Result<(), ShimError> {
        loop {
            self.poll_once()?;
            self.finish_init_if_drained();
            self.finish_execs();
            self.conns.retain(|_, c| !c.dead);
            if self.deleted && self.conns.values().all(|c| c.outbuf.is_empty()) {
                return Ok(());
            }
        }
    }

    fn timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let mut deadlines: Vec<Instant> = self.execs.values().filter_map(|e| Some(e.exit?.1 + EXEC_DRAIN)).collect();
        if let Some((.., seen)) = self.init_exit {
            if self.exit.is_none() {
                deadlines.push(seen + INIT_DRAIN);
            }
        }
        match deadlines.into_iter().min() {
            None => PollTimeout::NONE,
            Some(d) => {
                let ms = d.saturating_duration_since(now).as_millis().min(60_000) as u16;
                PollTimeout::from(ms.max(1))
            }
        }
    }

    fn poll_once(&mut self) -> Result<(), ShimError> {
        let timeout = self.timeout();
        let mut tokens = Vec::new();
        let ready: Vec<(Token, PollFlags)> = {
            let mut fds: Vec<PollFd> = Vec::new();
            // Tokens and fds are pushed in step; the fds borrow `self` until poll returns.
            macro_rules! add {
                ($fd:expr, $flags:expr, $token:expr, &mut fds) => {{
                    tokens.push($token);
                    fds.push(PollFd::new($fd, $flags));
                }};
            }
            add!(self.signals.as_fd(), PollFlags::POLLIN, Token::Signal, &mut fds);
            add!(self.listener.as_fd(), PollFlags::POLLIN, Token::Listener, &mut fds);
            if let Some(f) = &self.init_out {
                add!(f.as_fd(), PollFlags::POLLIN, Token::InitOut(LogStream::Stdout), &mut fds);
            }
            if let Some(f) = &self.init_err {
                add!(f.as_fd(), PollFlags::POLLIN, Token::InitOut(LogStream::Stderr), &mut fds);
            }
            if let Some(f) = &self.init_tty {
                add!(f.as_fd(), PollFlags::POLLIN, Token::InitTty, &mut fds);
            }
            if let (Some(f), false) = (&self.init_stdin, self.init_stdin_buf.is_empty()) {
                add!(f.as_fd(), PollFlags::POLLOUT, Token::InitIn, &mut fds);
            }
            for (&cid, c) in &self.conns {
                let mut flags = PollFlags::empty();
                if !c.eof && !self.deleted {
                    let stdin_full = match c.mode {
                        Mode::Exec(eid) => self.execs.get(&eid).is_some_and(|e| e.stdin_buf.len() > HIGH_WATER),
                        Mode::Attach { .. } => self.init_stdin_buf.len() > HIGH_WATER,
                        Mode::Requests => false,
                    };
                    if !stdin_full {
                        flags |= PollFlags::POLLIN;
                    }
                }
                if !c.outbuf.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                if !flags.is_empty() {
                    add!(c.stream.as_fd(), flags, Token::Conn(cid), &mut fds);
                }
            }
            for (&eid, e) in &self.execs {
                let congested = e.conn.and_then(|c| self.conns.get(&c)).is_some_and(|c| c.outbuf.len() > HIGH_WATER);
                if !congested {
                    if let Some(f) = &e.stdout {
                        add!(f.as_fd(), PollFlags::POLLIN, Token::ExecOut(eid, proto::CHANNEL_STDOUT), &mut fds);
                    }
                    if let Some(f) = &e.stderr {
                        add!(f.as_fd(), PollFlags::POLLIN, Token::ExecOut(eid, proto::CHANNEL_STDERR), &mut fds);
                    }
                    if let Some(f) = &e.tty {
                        add!(f.as_fd(), PollFlags::POLLIN, Token::ExecOut(eid, proto::CHANNEL_STDOUT), &mut fds);
                    }
                }
                if let (Some(f), false) = (&e.stdin, e.stdin_buf.is_empty()) {
                    add!(f.as_fd(), PollFlags::POLLOUT, Token::ExecIn(eid), &mut fds);
                }
            }
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(()),
                Err(e) => return Err(ShimError::Sys { what: "poll".into(), source: e }),
            }
            fds.iter()
                .zip(tokens.iter())
                .filter_map(|(p, t)| Some((*t, p.revents()?)))
                .filter(|(_, r)| !r.is_empty())
                .collect()
        };
        for (token, revents) in ready {
            self.handle(token, revents)?;
        }
        Ok(())
    }

    fn handle(&mut self, token: Token, revents: PollFlags) -> Result<(), ShimError> {
        match token {
            Token::Signal => self.on_signals(),
            Token::Listener => self.accept(),
            Token::InitOut(stream) => self.read_init(stream),
            Token::InitTty => self.read_init_tty(),
            Token::Conn(cid) => {
                if revents.intersects(PollFlags::POLLOUT | PollFlags::POLLERR | PollFlags::POLLHUP) {
                    if let Some(c) = self.conns.get_mut(&cid) {
                        c.flush();
                    }
                }
                if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    if let Some(c) = self.conns.get_mut(&cid) {
                        c.fill();
                    }
                    self.process_conn(cid)?;
                }
            }
            Token::ExecOut(eid, channel) => self.read_exec(eid, channel),
            Token::ExecIn(eid) => self.write_exec_stdin(eid),
            Token::InitIn => self.write_init_stdin(),
        }
        Ok(())
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            if info.ssi_signo as i32 != libc::SIGCHLD {
                // The shim stops only on Delete; a stray SIGTERM must not lose the exit code.
                tracing::info!(signal = info.ssi_signo, "ignoring signal");
            }
        }
        // Signals coalesce: look at every child we know.
        if self.init_exit.is_none() {
            if let Ok(status) = waitpid(self.init_pid, Some(WaitPidFlag::WNOHANG)) {
                if let Some((code, signal)) = exit_code(status) {
                    tracing::info!(code, "container init exited");
                    self.init_exit = Some((code, signal, SystemTime::now(), Instant::now()));
                }
            }
        }
        for e in self.execs.values_mut().filter(|e| e.exit.is_none()) {
            match waitpid(e.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(status) => {
                    if let Some((code, _)) = exit_code(status) {
                        e.exit = Some((code, Instant::now()));
                    }
                }
                Err(Errno::ECHILD) => e.exit = Some((128 + libc::SIGKILL, Instant::now())),
                Err(_) => {}
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.next_id += 1;
                    self.conns.insert(
                        self.next_id,
                        Conn {
                            stream,
                            inbuf: Vec::new(),
                            outbuf: Vec::new(),
                            mode: Mode::Requests,
                            eof: false,
                            close_after_flush: false,
                            dead: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn read_init(&mut self, stream: LogStream) {
        let slot = match stream {
            LogStream::Stdout => &mut self.init_out,
            LogStream::Stderr => &mut self.init_err,
        };
        let Some(f) = slot.as_mut() else { return };
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded per wakeup so one chatty stream cannot starve the socket.
        for _ in 0..16 {
            match read_some(f, &mut buf) {
                Ok(Some(n)) => {
                    if let Err(e) = self.log.write(stream, &buf[..n]) {
                        tracing::error!(%e, "writing the container log");
                    }
                    let channel = match stream {
                        LogStream::Stdout => proto::CHANNEL_STDOUT,
                        LogStream::Stderr => proto::CHANNEL_STDERR,
                    };
                    Self::to_attached(&mut self.conns, channel, &buf[..n]);
                }
                Ok(None) => {
                    *slot = None;
                    let _ = self.log.finish(stream);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::error!(%e, "reading container output");
                    *slot = None;
                    let _ = self.log.finish(stream);
                    return;
                }
            }
        }
    }

    fn read_init_tty(&mut self) {
        let Some(f) = self.init_tty.as_mut() else { return };
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..16 {
            match read_some(f, &mut buf) {
                Ok(Some(n)) => {
                    let _ = self.log.write(LogStream::Stdout, &buf[..n]);
                    Self::to_attached(&mut self.conns, proto::CHANNEL_STDOUT, &buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Ok(None) | Err(_) => {
                    // Keep the master until the init is gone: closing it would hang up the terminal.
                    if self.init_exit.is_some() {
                        self.init_tty = None;
                        let _ = self.log.finish(LogStream::Stdout);
                    }
                    return;
                }
            }
        }
    }

    fn finish_init_if_drained(&mut self) {
        let Some((code, signal, finished_at, seen)) = self.init_exit else { return };
        if self.exit.is_some() {
            return;
        }
        let open = self.init_out.is_some() || self.init_err.is_some() || self.init_tty.is_some();
        if open && seen.elapsed() < INIT_DRAIN {
            return;
        }
        // Whatever is still buffered in the pipes goes to the log; writers left behind are cut off.
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            self.read_init(stream);
            let _ = self.log.finish(stream);
        }
        if self.init_tty.is_some() {
            self.read_init_tty();
            self.init_tty = None;
            let _ = self.log.finish(LogStream::Stdout);
        }
        self.init_out = None;
        self.init_err = None;
        let oom_killed = self.oom_killed();
        let reason = if oom_killed {
            ExitReason::OOMKilled
        } else if code == 0 {
            ExitReason::Completed
        } else {
            ExitReason::Error
        };
        let info = ExitInfo { code, signal, oom_killed, reason, started_at: self.started_at, finished_at };
        match serde_json::to_vec_pretty(&info) {
            Ok(data) => {
                if let Err(e) = write_atomic(&self.dir.join(EXIT_FILE), &data) {
                    tracing::error!(%e, "writing exit.json");
                }
            }
            Err(e) => tracing::error!(%e, "encoding exit.json"),
        }
        tracing::info!(code, oom_killed, "container exit recorded");
        self.exit = Some(info.clone());
        self.init_stdin = None;
        for c in self.conns.values_mut().filter(|c| matches!(c.mode, Mode::Attach { .. })) {
            c.outbuf.extend(proto::stream_frame(proto::CHANNEL_STATUS, &code.to_be_bytes()));
            c.close_after_flush = true;
            c.flush();
        }
        for cid in std::mem::take(&mut self.waiters) {
            if let Some(c) = self.conns.get_mut(&cid) {
                c.send(&Response::Exit(info.clone()));
                c.flush();
            }
        }
    }

    fn oom_killed(&self) -> bool {
        let Some(path) = &self.cgroups_path else { return false };
        match CgroupLayout::detect().and_then(|l| l.oom_kill_count(path)) {
            Ok(n) => n.unwrap_or(0) > 0,
            Err(e) => {
                tracing::warn!(%e, "reading the OOM kill count");
                false
            }
        }
    }

    fn state(&self) -> ContainerState {
        if let Some(exit) = &self.exit {
            return ContainerState::Exited(exit.clone());
        }
        match self.started_at {
            // Exited but not yet drained still counts as running: the exit is not final yet.
            Some(started_at) => ContainerState::Running { pid: self.init_pid.as_raw(), started_at },
            None => ContainerState::Created,
        }
    }

    fn process_conn(&mut self, cid: u64) -> Result<(), ShimError> {
        loop {
            let Some(c) = self.conns.get_mut(&cid) else { return Ok(()) };
            match c.mode {
                Mode::Requests => {
                    let frame = match proto::take_frame(&mut c.inbuf) {
                        Ok(Some(f)) => f,
                        Ok(None) => {
                            if c.eof {
                                c.dead = true;
                                self.waiters.retain(|&w| w != cid);
                            }
                            return Ok(());
                        }
                        Err(e) => {
                            tracing::warn!(%e, "bad frame");
                            c.dead = true;
                            return Ok(());
                        }
                    };
                    let resp = match proto::decode::<Request>(&frame) {
                        Ok(req) => self.request(cid, req),
                        Err(e) => Some(Response::Error { message: format!("bad request: {e}") }),
                    };
                    if let Some(resp) = resp {
                        if let Some(c) = self.conns.get_mut(&cid) {
                            c.send(&resp);
                            c.flush();
                        }
                    }
                    if self.deleted {
                        return Ok(());
                    }
                }
                Mode::Exec(eid) => {
                    let Some((channel, data)) = c.take_stream_frame() else {
                        if c.eof || c.dead {
                            // The client is gone: nobody will read the output, stop the process.
                            c.dead = true;
                            if let Some(e) = self.execs.get_mut(&eid) {
                                e.conn = None;
                                if e.exit.is_none() {
                                    let _ = nix::sys::signal::kill(e.pid, Signal::SIGKILL);
                                }
                            }
                        }
                        return Ok(());
                    };
                    self.stream_input(eid, channel, data);
                }
                Mode::Attach { stdin } => {
                    let Some((channel, data)) = c.take_stream_frame() else {
                        if c.eof || c.dead {
                            // Detached: the container runs on; a stdinOnce stdin ends with it.
                            c.dead = true;
                            if stdin && self.record.stdin_once {
                                self.close_init_stdin();
                            }
                        }
                        return Ok(());
                    };
                    self.attach_input(stdin, channel, data);
                }
            }
        }
    }

    /// Output of the init to every attached client. A client that stops reading is cut off
    /// rather than let the shim's memory grow: the log keeps everything anyway.
    fn to_attached(conns: &mut BTreeMap<u64, Conn>, channel: u8, data: &[u8]) {
        for c in conns.values_mut().filter(|c| matches!(c.mode, Mode::Attach { .. }) && !c.dead) {
            if c.outbuf.len() > ATTACH_MAX_BACKLOG {
                tracing::warn!("attached client too slow; detaching it");
                c.dead = true;
                continue;
            }
            c.outbuf.extend(proto::stream_frame(channel, data));
            c.flush();
        }
    }

    fn attach_input(&mut self, stdin: bool, channel: u8, data: Vec<u8>) {
        match channel {
            proto::CHANNEL_STDIN if stdin && self.init_stdin.is_some() && !self.init_stdin_close => {
                self.init_stdin_buf.extend_from_slice(&data);
                self.write_init_stdin();
            }
            proto::CHANNEL_RESIZE => {
                if let (Some(tty), Ok(size)) = (&self.init_tty, serde_json::from_slice::<TerminalSize>(&data)) {
                    if let Err(err) = resize(tty, size) {
                        tracing::warn!(%err, "resizing the container's terminal");
                    }
                }
            }
            // Without stdinOnce the stdin stays open for the next attach.
            proto::CHANNEL_CLOSE if stdin && self.record.stdin_once && data.first() == Some(&proto::CHANNEL_STDIN) => {
                self.close_init_stdin();
            }
            _ => {}
        }
    }

    fn close_init_stdin(&mut self) {
        if self.init_stdin.is_none() || self.init_stdin_close {
            return;
        }
        self.init_stdin_close = true;
        if self.init_tty.is_some() {
            // A terminal has no half-close: end-of-file is ^D at the start of a line.
            self.init_stdin_buf.push(0x04);
        }
        self.write_init_stdin();
    }

    fn write_init_stdin(&mut self) {
        pump_stdin(&mut self.init_stdin, &mut self.init_stdin_buf, self.init_stdin_close);
    }

    fn attach(&mut self, cid: u64, stdin: bool) -> Response {
        if self.started_at.is_none() || self.init_exit.is_some() {
            return Response::Error { message: "container is not running".into() };
        }
        if let Some(c) = self.conns.get_mut(&cid) {
            c.mode = Mode::Attach { stdin: stdin && self.init_stdin.is_some() };
        }
        tracing::info!(stdin, "client attached");
        Response::Ok
    }

    fn stream_input(&mut self, eid: u64, channel: u8, data: Vec<u8>) {
        let Some(e) = self.execs.get_mut(&eid) else { return };
        match channel {
            proto::CHANNEL_STDIN if e.stdin.is_some() && !e.stdin_close => e.stdin_buf.extend_from_slice(&data),
            proto::CHANNEL_RESIZE => {
                if let (Some(tty), Ok(size)) = (&e.tty, serde_json::from_slice::<TerminalSize>(&data)) {
                    if let Err(err) = resize(tty, size) {
                        tracing::warn!(%err, "resizing an exec terminal");
                    }
                }
            }
            proto::CHANNEL_CLOSE if data.first() == Some(&proto::CHANNEL_STDIN) => {
                e.stdin_close = true;
                if e.tty.is_some() {
                    // A terminal has no half-close: end-of-file is ^D at the start of a line.
                    e.stdin_buf.push(0x04);
                }
            }
            _ => {}
        }
        self.write_exec_stdin(eid);
    }

    fn write_exec_stdin(&mut self, eid: u64) {
        if let Some(e) = self.execs.get_mut(&eid) {
            pump_stdin(&mut e.stdin, &mut e.stdin_buf, e.stdin_close);
        }
    }

    fn read_exec(&mut self, eid: u64, channel: u8) {
        let Some(e) = self.execs.get_mut(&eid) else { return };
        let slot = if e.tty.is_some() {
            &mut e.tty
        } else if channel == proto::CHANNEL_STDOUT {
            &mut e.stdout
        } else {
            &mut e.stderr
        };
        let Some(f) = slot.as_mut() else { return };
        let mut buf = vec![0u8; READ_CHUNK];
        let mut frames = Vec::new();
        for _ in 0..8 {
            match read_some(f, &mut buf) {
                Ok(Some(n)) => frames.extend(proto::stream_frame(channel, &buf[..n])),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Ok(None) | Err(_) => {
                    *slot = None;
                    if e.tty.is_none() && e.stdin.is_some() && e.stdout.is_none() && e.stderr.is_none() {
                        // Nothing reads the tty's input any more either.
                        e.stdin = None;
                    }
                    break;
                }
            }
        }
        if let Some(c) = e.conn.and_then(|cid| self.conns.get_mut(&cid)) {
            c.outbuf.extend(frames);
            c.flush();
        }
    }

    /// Sends the exit status of execs whose process ended and output drained, and forgets them.
    fn finish_execs(&mut self) {
        let done: Vec<u64> = self
            .execs
            .iter()
            .filter(|(_, e)| e.exit.is_some_and(|(_, at)| !e.outputs_open() || at.elapsed() >= EXEC_DRAIN))
            .map(|(&id, _)| id)
            .collect();
        for eid in done {
            // Drain what is buffered before the status goes out.
            for ch in [proto::CHANNEL_STDOUT, proto::CHANNEL_STDERR] {
                self.read_exec(eid, ch);
            }
            let Some(e) = self.execs.remove(&eid) else { continue };
            let code = e.exit.map_or(-1, |(c, _)| c);
            if let Some(c) = e.conn.and_then(|cid| self.conns.get_mut(&cid)) {
                c.outbuf.extend(proto::stream_frame(proto::CHANNEL_STATUS, &code.to_be_bytes()));
                c.close_after_flush = true;
                c.flush();
            }
        }
    }

    fn request(&mut self, cid: u64, req: Request) -> Option<Response> {
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

    fn start(&mut self) -> Response {
        if self.started_at.is_some() || self.init_exit.is_some() {
            return Response::Error { message: "container is not in the Created state".into() };
        }
        if let Err(e) = self.container.start() {
            return Response::Error { message: format!("start: {e}") };
        }
        // libcontainer made us non-dumpable for the build; /proc/<shim>/ must be readable again.
        if let Err(e) = nix::sys::prctl::set_dumpable(true) {
            tracing::warn!(%e, "set_dumpable");
        }
        let now = SystemTime::now();
        self.started_at = Some(now);
        self.record.started_at = Some(now);
        if let Err(e) = self.record.save(&self.dir) {
            tracing::warn!(%e, "saving shim.json");
        }
        tracing::info!("container started");
        Response::Ok
    }

    fn kill(&mut self, signal: i32, all: bool) -> Response {
        let sig = match libcontainer::signal::Signal::try_from(signal) {
            Ok(s) => s,
            Err(e) => return Response::Error { message: e.to_string() },
        };
        if self.init_exit.is_some() && !all {
            // The pid may be reused by now; the container is dead anyway.
            return Response::Ok;
        }
        match self.container.kill(sig, all) {
            Ok(()) => Response::Ok,
            Err(e) => Response::Error { message: format!("kill: {e}") },
        }
    }

    fn exec(&mut self, cid: u64, req: ExecRequest) -> Result<i32, ShimError> {
        if self.started_at.is_none() || self.init_exit.is_some() {
            return Err(ShimError::Other("container is not running".into()));
        }
        if req.args.is_empty() {
            return Err(ShimError::Other("exec needs a command".into()));
        }
        self.next_id += 1;
        let eid = self.next_id;
        // The exec's process: the container's (user, capabilities, rlimits...) with its own args,
        // environment, working directory and terminal, handed over as process.json.
        let mut process: Process = self.spec.process().clone().unwrap_or_default();
        process.set_args(Some(req.args.clone()));
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        for kv in &req.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        process.set_env(Some(env));
        if let Some(cwd) = &req.cwd {
            process.set_cwd(PathBuf::from(cwd));
        }
        process.set_terminal(Some(req.tty));
        process.set_console_size(None);
        let mut user = process.user().clone();
        if let Some(uid) = req.uid {
            user.set_uid(uid);
        }
        if let Some(gid) = req.gid {
            user.set_gid(gid);
        }
        process.set_user(user);
        let process_json = self.dir.join(format!("exec-{eid}.json"));
        std::fs::write(&process_json, serde_json::to_vec(&process)?).map_err(io_err("writing process.json"))?;
        struct Rm(PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _rm = Rm(process_json.clone());

        let tenant_seccomp = self.spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let mut builder = ContainerBuilder::new(self.id.clone(), SyscallType::Linux)
            .with_root_path(&self.record.runc_root)?
            .with_executor(ResetSignalsExecutor { tenant_seccomp });
        let mut session = ExecSession {
            pid: Pid::from_raw(0),
            conn: Some(cid),
            stdin: None,
            stdin_buf: Vec::new(),
            stdin_close: false,
            stdout: None,
            stderr: None,
            tty: None,
            exit: None,
        };
        let mut console = None;
        if req.tty {
            let c = ConsoleSocket::new(&self.dir, &format!("tty-{eid}.sock"))?;
            builder = builder.with_console_socket(Some(&c.path));
            console = Some(c);
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            builder = builder.with_stdout(out_w).with_stderr(err_w);
            session.stdout = Some(out_r);
            session.stderr = Some(err_r);
            if req.stdin {
                let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
                set_nonblocking(&in_w)?;
                builder = builder.with_stdin(in_r);
                session.stdin = Some(File::from(in_w));
            }
        }
        let pid = builder.as_tenant().with_process(Some(&process_json)).with_detach(true).build()?;
        session.pid = pid;
        // libcontainer wrote the process's oomScoreAdj into our own file again.
        protect_from_oom_killer();
        if let Some(c) = console {
            let master = c.receive_master()?;
            if req.stdin {
                session.stdin = Some(master.try_clone().map_err(io_err("dup pty"))?);
            }
            session.tty = Some(master);
        }
        if let Some(c) = self.conns.get_mut(&cid) {
            c.mode = Mode::Exec(eid);
        }
        self.execs.insert(eid, session);
        tracing::info!(pid = pid.as_raw(), tty = req.tty, "exec started");
        Ok(pid.as_raw())
    }

    /// Kills what is left, reaps it, removes the container (leaf cgroup, libcontainer state) and
    /// the shim directory.
    fn delete(&mut self) -> Result<(), ShimError> {
        if self.init_exit.is_none() {
            let _ = self.container.kill(libcontainer::signal::Signal::from(Signal::SIGKILL), true);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.init_exit.is_none() && Instant::now() < deadline {
                match waitpid(self.init_pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(2)),
                    Ok(status) => {
                        if let Some((code, signal)) = exit_code(status) {
                            self.init_exit = Some((code, signal, SystemTime::now(), Instant::now()));
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        for e in self.execs.values() {
            let _ = nix::sys::signal::kill(e.pid, Signal::SIGKILL);
            let _ = waitpid(e.pid, None);
        }
        self.execs.clear();
        remove_container(&self.id, &self.record)?;
        std::fs::remove_dir_all(&self.dir).map_err(io_err(format!("removing {}", self.dir.display())))?;
        tracing::info!("container deleted");
        Ok(())
    }
}

/// Writes what is buffered for a process's stdin without blocking (the rest waits for POLLOUT);
/// closes it once drained when the client closed its side, or when the reader is gone (EPIPE:
/// the input is dropped).
fn pump_stdin(stdin: &mut Option<File>, buf: &mut Vec<u8>, close: bool) {
    let Some(f) = stdin.as_mut() else {
        buf.clear();
        return;
    };
    while !buf.is_empty() {
        match f.write(buf) {
            Ok(n) => {
                buf.drain(..n);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                buf.clear();
                *stdin = None;
                return;
            }
        }
    }
    if close {
        *stdin = None;
    }
}

/// libcontainer's delete (SIGKILL everything, leaf cgroup, state dir); when its state is gone or
/// broken, the leaf cgroup by hand so nothing stays behind.
fn remove_container(id: &str, record: &ShimRecord) -> Result<(), ShimError> {
    let state_dir = record.runc_root.join(id);
    if state_dir.exists() {
        match Container::load(state_dir.clone()).and_then(|mut c| c.delete(true)) {
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!(%e, "libcontainer delete failed, removing by hand"),
        }
    }
    let spec = Spec::load(record.bundle.join("config.json")).ok();
    if let Some(path) = spec.as_ref().and_then(|s| s.linux().as_ref()?.cgroups_path().clone()) {
        let path = path.to_string_lossy().into_owned();
        if path.starts_with('/') {
            CgroupLayout::detect()?.remove(&path)?;
        }
    }
    match std::fs::remove_dir_all(&state_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ShimError::Io { what: format!("removing {}", state_dir.display()), source: e }),
    }
}

/// `shim cleanup`: what a dead shim left (container, leaf cgroup, shim dir).
pub(super) fn cleanup(id: &str, dir: &Path) -> Result<(), ShimError> {
    let record = match ShimRecord::load(dir) {
        Ok(r) => r,
        Err(ShimError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            // Nothing recorded (never created, or already cleaned): just the directory.
            return match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing shim dir")(e)),
                _ => Ok(()),
            };
        }
        Err(e) => return Err(e),
    };
    if record.id != id {
        return Err(ShimError::Other(format!("{} belongs to {}", dir.display(), record.id)));
    }
    if let (Some(pid), start) = (record.shim_pid, record.shim_start_time) {
        if super::process_alive(pid, start) {
            // A hung shim: it holds the init as its child; end it first.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    remove_container(id, &record)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing shim dir")(e)),
        _ => Ok(()),
    }
}
