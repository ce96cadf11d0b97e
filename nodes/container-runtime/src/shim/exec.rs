//! Exec: a process started in the running container (libcontainer's tenant), whose streams go
//! over the connection that asked for it, ending with its exit code.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Process;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

use super::conn::Mode;
use super::executor::ResetSignalsExecutor;
use super::server::{protect_from_oom_killer, Shim};
use super::stdio::{pump_stdin, read_some, resize, ProcessStdio, READ_CHUNK};
use super::{io_err, ShimError};
use crate::proto::{self, ExecRequest, TerminalSize};

/// How long output may still arrive after an exec's process exited.
pub(super) const EXEC_DRAIN: Duration = Duration::from_secs(1);

pub(super) struct ExecSession {
    pub(super) pid: Pid,
    pub(super) conn: Option<u64>,
    /// Write end of the process's stdin pipe (or the pty master's clone for a tty).
    pub(super) stdin: Option<File>,
    pub(super) stdin_buf: Vec<u8>,
    pub(super) stdin_close: bool,
    pub(super) stdout: Option<File>,
    pub(super) stderr: Option<File>,
    pub(super) tty: Option<File>,
    pub(super) exit: Option<(i32, Instant)>,
}

impl ExecSession {
    fn outputs_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some() || self.tty.is_some()
    }
}

impl Shim {
    pub(super) fn exec(&mut self, cid: u64, req: ExecRequest) -> Result<i32, ShimError> {
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
        let builder = ContainerBuilder::new(self.id.clone(), SyscallType::Linux)
            .with_root_path(&self.record.runc_root)?
            .with_executor(ResetSignalsExecutor { tenant_seccomp });
        let (builder, mut stdio) =
            ProcessStdio::wire(builder, &self.dir, &format!("tty-{eid}.sock"), req.tty, req.stdin)?;
        let pid = builder.as_tenant().with_process(Some(&process_json)).with_detach(true).build()?;
        // libcontainer wrote the process's oomScoreAdj into our own file again.
        protect_from_oom_killer();
        stdio.receive_terminal(req.stdin)?;
        let session = ExecSession {
            pid,
            conn: Some(cid),
            stdin: stdio.stdin,
            stdin_buf: Vec::new(),
            stdin_close: false,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            tty: stdio.tty,
            exit: None,
        };
        if let Some(c) = self.conns.get_mut(&cid) {
            c.mode = Mode::Exec(eid);
        }
        self.execs.insert(eid, session);
        tracing::info!(pid = pid.as_raw(), tty = req.tty, "exec started");
        Ok(pid.as_raw())
    }

    pub(super) fn stream_input(&mut self, eid: u64, channel: u8, data: Vec<u8>) {
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

    pub(super) fn write_exec_stdin(&mut self, eid: u64) {
        if let Some(e) = self.execs.get_mut(&eid) {
            pump_stdin(&mut e.stdin, &mut e.stdin_buf, e.stdin_close);
        }
    }

    pub(super) fn read_exec(&mut self, eid: u64, channel: u8) {
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
    pub(super) fn finish_execs(&mut self) {
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
                c.send_status(code);
            }
        }
    }
}
