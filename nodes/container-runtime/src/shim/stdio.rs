//! The standard streams of the processes the shim starts (the init and execs): non-blocking
//! pipes, or a pty whose master arrives over a console socket; reading them, feeding their stdin
//! and resizing their terminal.

use std::fs::File;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{io_err, sys_err, ShimError};
use crate::proto::TerminalSize;

pub(super) const READ_CHUNK: usize = 32 * 1024;

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// The shim's ends of a new process's standard streams: pipes it reads (and writes the stdin
/// of), or with a terminal the pty master, which arrives on a console socket once it is built.
pub(super) struct ProcessStdio {
    console: Option<ConsoleSocket>,
    pub(super) stdout: Option<File>,
    pub(super) stderr: Option<File>,
    /// Write end of the process's stdin pipe, or the pty master's clone for a terminal.
    pub(super) stdin: Option<File>,
    pub(super) tty: Option<File>,
}

impl ProcessStdio {
    /// Wires the process `builder` makes to new pipes, or with `terminal` to the console socket
    /// `dir/console_name`; it gets a stdin only with `stdin`.
    pub(super) fn wire(
        mut builder: ContainerBuilder,
        dir: &Path,
        console_name: &str,
        terminal: bool,
        stdin: bool,
    ) -> Result<(ContainerBuilder, Self), ShimError> {
        let mut stdio = Self { console: None, stdout: None, stderr: None, stdin: None, tty: None };
        if terminal {
            let c = ConsoleSocket::new(dir, console_name)?;
            builder = builder.with_console_socket(Some(&c.path));
            stdio.console = Some(c);
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            builder = builder.with_stdout(out_w).with_stderr(err_w);
            stdio.stdout = Some(out_r);
            stdio.stderr = Some(err_r);
            if stdin {
                let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
                set_nonblocking(&in_w)?;
                builder = builder.with_stdin(in_r);
                stdio.stdin = Some(File::from(in_w));
            }
        }
        Ok((builder, stdio))
    }

    /// After the build, with a terminal: receives the pty master; its clone is the stdin when
    /// `stdin`.
    pub(super) fn receive_terminal(&mut self, stdin: bool) -> Result<(), ShimError> {
        let Some(console) = self.console.take() else { return Ok(()) };
        let master = console.receive_master()?;
        if stdin {
            self.stdin = Some(master.try_clone().map_err(io_err("dup pty"))?);
        }
        self.tty = Some(master);
        Ok(())
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

/// Reads what is available; `Ok(None)` at end of file (EIO on a pty whose other side is closed).
pub(super) fn read_some(f: &mut File, buf: &mut [u8]) -> Result<Option<usize>, io::Error> {
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

/// Writes what is buffered for a process's stdin without blocking (the rest waits for POLLOUT);
/// closes it once drained when the client closed its side, or when the reader is gone (EPIPE:
/// the input is dropped).
pub(super) fn pump_stdin(stdin: &mut Option<File>, buf: &mut Vec<u8>, close: bool) {
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

pub(super) fn resize(pty: &File, size: TerminalSize) -> Result<(), ShimError> {
    let ws = libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    unsafe { set_winsize(pty.as_raw_fd(), &ws) }.map_err(sys_err("TIOCSWINSZ"))?;
    Ok(())
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
pub(super) fn bind_in(dir: &Path, name: &str) -> Result<UnixListener, ShimError> {
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
