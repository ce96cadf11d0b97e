//! The shim's one-thread event loop: poll over the socket, the container's output, exec
//! sessions and a signalfd for SIGCHLD, until the container is deleted.

use std::io;
use std::os::fd::AsFd;
use std::time::{Instant, SystemTime};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};

use super::conn::{Conn, Mode};
use super::exec::EXEC_DRAIN;
use super::init::INIT_DRAIN;
use super::server::{exit_code, Shim};
use super::ShimError;
use crate::logs::LogStream;
use crate::proto::{self, Request, Response};

/// Above this much unsent output to a client, the exec's output is not read (backpressure).
const HIGH_WATER: usize = 1 << 20;

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

impl Shim {
    pub(super) fn serve(mut self) -> Result<(), ShimError> {
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
                    self.conns.insert(self.next_id, Conn::new(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
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
}
