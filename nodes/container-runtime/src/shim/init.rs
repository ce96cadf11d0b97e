//! The container's init process: starting and signalling it, its output into the CRI log (and to
//! attached clients), and its exit, recorded in `exit.json` once the output is drained.

use std::io;
use std::time::{Duration, SystemTime};

use super::server::Shim;
use super::stdio::read_some;
use super::{write_atomic, EXIT_FILE};
use crate::cgroups::CgroupLayout;
use crate::logs::LogStream;
use crate::proto::{self, Response};
use crate::{ContainerState, ExitInfo, ExitReason};

/// How long output may still arrive after the init exited (a background child can hold the pipe).
pub(super) const INIT_DRAIN: Duration = Duration::from_secs(2);

impl Shim {
    pub(super) fn start(&mut self) -> Response {
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

    pub(super) fn kill(&mut self, signal: i32, all: bool) -> Response {
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

    pub(super) fn state(&self) -> ContainerState {
        if let Some(exit) = &self.exit {
            return ContainerState::Exited(exit.clone());
        }
        match self.started_at {
            // Exited but not yet drained still counts as running: the exit is not final yet.
            Some(started_at) => ContainerState::Running { pid: self.init_pid.as_raw(), started_at },
            None => ContainerState::Created,
        }
    }

    pub(super) fn read_init(&mut self, stream: LogStream) {
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

    pub(super) fn read_init_tty(&mut self) {
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

    pub(super) fn finish_init_if_drained(&mut self) {
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
        self.end_attached(code);
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
}
