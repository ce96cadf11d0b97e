//! `Runtime`: the agent's side. Async (tokio), and it never calls libcontainer: every container
//! operation is a request to the container's shim over `shims/<id>/shim.sock`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::metrics::{timed, SHIM_EVENTS};
use crate::proto::{self, ExecRequest, ProtoError, Request, Response, ShimState, TerminalSize};
use crate::shim::{process_alive, ShimRecord, EXIT_FILE, RECORD_FILE, SOCKET_FILE};
use crate::{
    validate_id, ContainerInfo, ContainerState, CreateContainer, ExecSession, ExecSpec, ExitInfo, ExitReason, InvalidId,
};

/// Where the runtime keeps its state and how it starts shims.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The program and leading arguments that run the shim: `[kubus, "shim"]`, or a test binary.
    pub shim_command: Vec<OsString>,
    /// `shims/<id>/` (shim.json, shim.sock, exit.json, shim.log) live here.
    pub state_dir: PathBuf,
    /// libcontainer's state root (one per node, so tests never collide).
    pub runc_root: PathBuf,
    /// Parent cgroup of all pods, e.g. `/kubus`.
    pub cgroup_root: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("invalid runtime configuration: {0}")]
    InvalidConfig(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("starting the shim of {id}: {message}")]
    ShimStart { id: String, message: String },
    #[error("container {id}: {message}")]
    Shim { id: String, message: String },
    #[error("shim of {id} is not reachable: {source}")]
    ShimGone { id: String, source: io::Error },
    #[error("shim of {id} answered unexpectedly: {response}")]
    Unexpected { id: String, response: String },
    #[error("shim protocol: {0}")]
    Proto(#[from] ProtoError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} timed out")]
    Timeout(String),
    #[error("cleaning up {id}: {message}")]
    Cleanup { id: String, message: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}

/// How long a request may take to connect; requests themselves (Wait) may block much longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Environment variables a shim keeps (it starts with a clean environment).
const SHIM_ENV: &[&str] = &["PATH", "KUBUS_LOG", "RUST_LOG"];

/// The container runtime of a node, as the kubelet uses it.
#[derive(Debug)]
pub struct Runtime {
    cfg: RuntimeConfig,
    shims_dir: PathBuf,
}

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Result<Self, RuntimeError> {
        if cfg.shim_command.is_empty() {
            return Err(RuntimeError::InvalidConfig("shim_command is empty".into()));
        }
        for (name, p) in [("state_dir", &cfg.state_dir), ("runc_root", &cfg.runc_root)] {
            if !p.is_absolute() {
                return Err(RuntimeError::InvalidConfig(format!("{name} must be absolute: {}", p.display())));
            }
        }
        if !cfg.cgroup_root.starts_with('/') {
            return Err(RuntimeError::InvalidConfig(format!("cgroup_root must be absolute: {}", cfg.cgroup_root)));
        }
        let shims_dir = cfg.state_dir.join("shims");
        std::fs::create_dir_all(&shims_dir).map_err(io_err(format!("creating {}", shims_dir.display())))?;
        std::fs::create_dir_all(&cfg.runc_root).map_err(io_err(format!("creating {}", cfg.runc_root.display())))?;
        Ok(Self { cfg, shims_dir })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    fn shim_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        validate_id(id)?;
        Ok(self.shims_dir.join(id))
    }

    /// Writes the bundle's config.json, starts the container's shim and returns once the container
    /// is Created (or the shim's error).
    pub async fn create(&self, c: CreateContainer) -> Result<ContainerInfo, RuntimeError> {
        let span = tracing::info_span!("runtime.create", id = %c.id);
        timed("create", span, self.do_create(c)).await
    }

    async fn do_create(&self, c: CreateContainer) -> Result<ContainerInfo, RuntimeError> {
        let dir = self.shim_dir(&c.id)?;
        if !c.bundle_dir.is_absolute() || !c.log_path.is_absolute() {
            return Err(RuntimeError::InvalidConfig("bundle_dir and log_path must be absolute".into()));
        }
        match tokio::fs::create_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(RuntimeError::AlreadyExists(c.id)),
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
        let result = self.spawn_shim(&c, &dir).await;
        if result.is_err() {
            // The shim removed the container itself (libcontainer cleans a failed build).
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        result?;
        SHIM_EVENTS.with_label_values(&["spawned"]).inc();
        self.info(&c.id).await
    }

    async fn spawn_shim(&self, c: &CreateContainer, dir: &Path) -> Result<(), RuntimeError> {
        tokio::fs::create_dir_all(&c.bundle_dir).await.map_err(io_err("creating the bundle dir"))?;
        let config = serde_json::to_vec_pretty(&c.spec)?;
        tokio::fs::write(c.bundle_dir.join("config.json"), config).await.map_err(io_err("writing config.json"))?;
        let record = ShimRecord {
            id: c.id.clone(),
            bundle: c.bundle_dir.clone(),
            log_path: c.log_path.clone(),
            runc_root: self.cfg.runc_root.clone(),
            labels: c.labels.clone(),
            created_at: SystemTime::now(),
            shim_pid: None,
            shim_start_time: None,
            init_pid: None,
            started_at: None,
            stdin: c.stdin,
            stdin_once: c.stdin_once,
        };
        tokio::fs::write(dir.join(RECORD_FILE), serde_json::to_vec_pretty(&record)?)
            .await
            .map_err(io_err("writing shim.json"))?;
        // The process exits as soon as the container is built; its detached child stays.
        let out = self
            .shim_command("create", &c.id, dir)
            .output()
            .await
            .map_err(|e| RuntimeError::ShimStart { id: c.id.clone(), message: e.to_string() })?;
        if !out.status.success() {
            let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let message = if message.is_empty() { format!("shim exited with {}", out.status) } else { message };
            return Err(RuntimeError::ShimStart { id: c.id.clone(), message });
        }
        Ok(())
    }

    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        timed("start", tracing::info_span!("runtime.start", id), self.expect_ok(id, Request::Start)).await
    }

    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let span = tracing::info_span!("runtime.kill", id, signal, all);
        timed("kill", span, self.expect_ok(id, Request::Kill { signal, all })).await
    }

    /// Resizes the terminal of a container whose `process.terminal` is set (attach).
    pub async fn resize(&self, id: &str, width: u16, height: u16) -> Result<(), RuntimeError> {
        let span = tracing::debug_span!("runtime.resize", id, width, height);
        timed("resize", span, self.expect_ok(id, Request::Resize { width, height })).await
    }

    pub async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        timed("state", tracing::debug_span!("runtime.state", id), async {
            let dir = self.shim_dir(id)?;
            match self.call(id, &Request::State).await {
                Ok(Response::State(s)) => Ok(s.state),
                Ok(other) => Err(unexpected(id, other)),
                Err(RuntimeError::ShimGone { .. }) => self.dead_state(&dir).await,
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Resolves when the container's init has exited (and its output is in the log).
    pub async fn wait(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        timed("wait", tracing::debug_span!("runtime.wait", id), async {
            let dir = self.shim_dir(id)?;
            match self.call(id, &Request::Wait).await {
                Ok(Response::Exit(e)) => Ok(e),
                Ok(other) => Err(unexpected(id, other)),
                Err(RuntimeError::ShimGone { .. }) | Err(RuntimeError::Proto(ProtoError::Closed)) => {
                    match self.dead_state(&dir).await? {
                        ContainerState::Exited(e) => Ok(e),
                        _ => Err(RuntimeError::Shim { id: id.to_string(), message: "shim lost".into() }),
                    }
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Removes the container, its leaf cgroup and shim directory; idempotent. A dead shim's leftovers
    /// are removed by a `shim cleanup` child process (libcontainer stays out of the agent).
    pub async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        timed("delete", tracing::info_span!("runtime.delete", id), self.do_delete(id)).await
    }

    async fn do_delete(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.shim_dir(id)?;
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Ok(());
        }
        let record = read_record(&dir).await.ok();
        match self.call(id, &Request::Delete).await {
            Ok(Response::Ok) => {
                // The shim exits right after its reply; make "deleted" mean "no shim process".
                if let Some(r) = &record {
                    wait_gone(r.shim_pid, r.shim_start_time, Duration::from_secs(10)).await;
                }
                match tokio::fs::remove_dir_all(&dir).await {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing the shim dir")(e)),
                    _ => Ok(()),
                }
            }
            Ok(Response::Error { message }) => Err(RuntimeError::Shim { id: id.to_string(), message }),
            Ok(other) => Err(unexpected(id, other)),
            Err(RuntimeError::ShimGone { .. }) | Err(RuntimeError::Proto(ProtoError::Closed)) => {
                self.cleanup_dead(id, &dir).await
            }
            Err(e) => Err(e),
        }
    }

    /// `kubus shim <verb> --id ID --dir DIR` with a clean environment; its stderr is the error.
    fn shim_command(&self, verb: &str, id: &str, dir: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.cfg.shim_command[0]);
        cmd.args(&self.cfg.shim_command[1..])
            .arg(verb)
            .arg("--id")
            .arg(id)
            .arg("--dir")
            .arg(dir)
            .env_clear()
            .envs(SHIM_ENV.iter().filter_map(|k| Some((k, std::env::var_os(k)?))))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    async fn cleanup_dead(&self, id: &str, dir: &Path) -> Result<(), RuntimeError> {
        let out = self
            .shim_command("cleanup", id, dir)
            .output()
            .await
            .map_err(|e| RuntimeError::Cleanup { id: id.to_string(), message: e.to_string() })?;
        if !out.status.success() {
            return Err(RuntimeError::Cleanup {
                id: id.to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        SHIM_EVENTS.with_label_values(&["cleaned"]).inc();
        Ok(())
    }

    /// Every container with a shim directory and its labels, from the records alone (no shim is
    /// asked): what periodic sweeps need.
    pub async fn list_labels(&self) -> Result<Vec<(String, BTreeMap<String, String>)>, RuntimeError> {
        let mut out = Vec::new();
        for id in self.shim_ids().await? {
            if let Ok(record) = read_record(&self.shims_dir.join(&id)).await {
                out.push((id, record.labels));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every container with a shim directory, with its labels and live state (after an agent
    /// restart: what to adopt). A dead shim's container is `Exited` (its `exit.json`, or
    /// `ContainerStatusUnknown` with 137 as kubelet reports it).
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        timed("list", tracing::info_span!("runtime.list"), async {
            let mut out = Vec::new();
            for id in self.shim_ids().await? {
                match self.info(&id).await {
                    Ok(info) => out.push(info),
                    Err(e) => tracing::warn!(id, %e, "skipping an unreadable shim dir"),
                }
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
        .await
    }

    /// The ids of the containers with a shim directory.
    async fn shim_ids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut rd = tokio::fs::read_dir(&self.shims_dir).await.map_err(io_err("reading the shims dir"))?;
        let mut ids = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(io_err("reading the shims dir"))? {
            if let Some(id) = entry.file_name().to_str().filter(|id| validate_id(id).is_ok()) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    async fn info(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let dir = self.shim_dir(id)?;
        let record = read_record(&dir).await?;
        let (state, shim_pid) = match self.call(id, &Request::State).await {
            Ok(Response::State(ShimState { state, .. })) => {
                SHIM_EVENTS.with_label_values(&["adopted"]).inc();
                (state, record.shim_pid)
            }
            Ok(other) => return Err(unexpected(id, other)),
            Err(RuntimeError::ShimGone { .. }) | Err(RuntimeError::Proto(ProtoError::Closed)) => {
                SHIM_EVENTS.with_label_values(&["lost"]).inc();
                (self.dead_state(&dir).await?, None)
            }
            Err(e) => return Err(e),
        };
        Ok(ContainerInfo {
            id: id.to_string(),
            labels: record.labels,
            state,
            init_pid: record.init_pid,
            shim_pid,
            bundle_dir: record.bundle,
            log_path: record.log_path,
            created_at: record.created_at,
        })
    }

    /// The state of a container whose shim does not answer.
    async fn dead_state(&self, dir: &Path) -> Result<ContainerState, RuntimeError> {
        let id = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
            return Err(RuntimeError::NotFound(id));
        }
        if let Ok(data) = tokio::fs::read(dir.join(EXIT_FILE)).await {
            if let Ok(exit) = serde_json::from_slice::<ExitInfo>(&data) {
                return Ok(ContainerState::Exited(exit));
            }
        }
        let started_at = read_record(dir).await.ok().and_then(|r| r.started_at);
        Ok(ContainerState::Exited(ExitInfo {
            code: 137,
            signal: None,
            oom_killed: false,
            reason: ExitReason::ContainerStatusUnknown,
            started_at,
            finished_at: SystemTime::now(),
        }))
    }

    /// Runs a process in the running container; the session's channels carry its streams.
    /// Dropping the session (all of its receivers) kills the process.
    pub async fn exec(&self, id: &str, e: ExecSpec) -> Result<ExecSession, RuntimeError> {
        timed("exec", tracing::info_span!("runtime.exec", id), self.do_exec(id, e)).await
    }

    async fn do_exec(&self, id: &str, e: ExecSpec) -> Result<ExecSession, RuntimeError> {
        let mut stream = self.connect(id).await?;
        let req = Request::Exec(ExecRequest {
            args: e.args,
            env: e.env,
            cwd: e.cwd,
            uid: None,
            gid: None,
            tty: e.tty,
            stdin: e.stdin,
        });
        let pid = match roundtrip(&mut stream, &req).await? {
            Response::ExecStarted { pid } => pid,
            Response::Error { message } => return Err(RuntimeError::Shim { id: id.to_string(), message }),
            other => return Err(unexpected(id, other)),
        };
        Ok(stream_session(id, stream, pid, e.stdin))
    }

    /// Attaches to the running container's init: its output from now on, its stdin when
    /// `stdin` (and the container keeps one); the session ends with the container. Dropping it
    /// detaches; the container runs on.
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<ExecSession, RuntimeError> {
        timed("attach", tracing::info_span!("runtime.attach", id), async {
            let mut stream = self.connect(id).await?;
            match roundtrip(&mut stream, &Request::Attach { stdin }).await? {
                Response::Ok => {}
                Response::Error { message } => return Err(RuntimeError::Shim { id: id.to_string(), message }),
                other => return Err(unexpected(id, other)),
            }
            Ok(stream_session(id, stream, 0, stdin))
        })
        .await
    }

    /// Runs a command to completion (exec probes): exit code and stdout+stderr as they arrived.
    /// On timeout the process is killed.
    pub async fn exec_sync(
        &self,
        id: &str,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), RuntimeError> {
        timed("exec_sync", tracing::debug_span!("runtime.exec_sync", id), async {
            let run = async {
                let mut s = self.exec(id, ExecSpec { args, ..Default::default() }).await?;
                let mut output = Vec::new();
                let (mut out_open, mut err_open) = (true, true);
                while out_open || err_open {
                    tokio::select! {
                        d = s.stdout.recv(), if out_open => match d {
                            Some(d) => output.extend_from_slice(&d),
                            None => out_open = false,
                        },
                        d = s.stderr.recv(), if err_open => match d {
                            Some(d) => output.extend_from_slice(&d),
                            None => err_open = false,
                        },
                    }
                }
                let code = s.exit.await.map_err(|_| RuntimeError::Shim {
                    id: id.to_string(),
                    message: "exec ended without a status".into(),
                })?;
                Ok((code, output))
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(RuntimeError::Timeout(format!("exec in {id}"))),
            }
        })
        .await
    }

    async fn expect_ok(&self, id: &str, req: Request) -> Result<(), RuntimeError> {
        match self.call(id, &req).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(RuntimeError::Shim { id: id.to_string(), message }),
            other => Err(unexpected(id, other)),
        }
    }

    async fn connect(&self, id: &str) -> Result<UnixStream, RuntimeError> {
        let dir = self.shim_dir(id)?;
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let gone = |source| RuntimeError::ShimGone { id: id.to_string(), source };
        // Through an O_PATH fd of the directory: a unix socket path is limited to 108 bytes and
        // long ids under a long state dir exceed that.
        let dirfd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&dir)
            .map_err(gone)?;
        let path = format!("/proc/self/fd/{}/{SOCKET_FILE}", dirfd.as_raw_fd());
        let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&path)).await {
            Ok(r) => r.map_err(gone)?,
            Err(_) => return Err(gone(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))),
        };
        drop(dirfd);
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            roundtrip(&mut stream, &Request::Hello { proto: proto::PROTO_VERSION }),
        )
        .await
        {
            Ok(Ok(Response::Hello { .. })) => Ok(stream),
            Ok(Ok(Response::Error { message })) => Err(RuntimeError::Shim { id: id.to_string(), message }),
            Ok(Ok(other)) => Err(unexpected(id, other)),
            Ok(Err(RuntimeError::Proto(ProtoError::Closed))) => {
                Err(gone(io::Error::new(io::ErrorKind::ConnectionReset, "closed during hello")))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(gone(io::Error::new(io::ErrorKind::TimedOut, "hello timed out"))),
        }
    }

    /// One request on a fresh connection (shims serve many; connections are cheap).
    async fn call(&self, id: &str, req: &Request) -> Result<Response, RuntimeError> {
        let mut stream = self.connect(id).await?;
        roundtrip(&mut stream, req).await
    }
}

/// The stream half of an exec or attach once the shim accepted it: frames to channels.
fn stream_session(id: &str, stream: UnixStream, pid: i32, stdin: bool) -> ExecSession {
    let (mut rd, mut wr) = stream.into_split();
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(64);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(64);
    let (exit_tx, exit_rx) = oneshot::channel::<i32>();
    let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(8);
    let (stdin_tx, mut stdin_rx) = if stdin {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (done_tx, mut done_rx) = watch::channel(false);

    // Reader: stream frames to the channels until the status frame; stops (closing its half)
    // when the session's exit receiver is dropped.
    let span = tracing::debug_span!("exec.stream", id, pid);
    tokio::spawn(
        async move {
            let mut exit_tx = Some(exit_tx);
            loop {
                let frame = tokio::select! {
                    f = read_stream_frame(&mut rd) => f,
                    _ = async { exit_tx.as_mut().expect("set until the end").closed().await } => break,
                };
                let Ok((channel, data)) = frame else { break };
                match channel {
                    proto::CHANNEL_STDOUT => {
                        let _ = stdout_tx.send(data).await;
                    }
                    proto::CHANNEL_STDERR => {
                        let _ = stderr_tx.send(data).await;
                    }
                    proto::CHANNEL_STATUS if data.len() == 4 => {
                        let code = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                        if let Some(tx) = exit_tx.take() {
                            let _ = tx.send(code);
                        }
                        break;
                    }
                    _ => {}
                }
            }
            let _ = done_tx.send(true);
        }
        .instrument(span),
    );
    // Writer: stdin and resizes to the shim; closing the stdin sender sends close{stdin}.
    tokio::spawn(async move {
        let mut stdin_open = stdin_rx.is_some();
        loop {
            let frame = tokio::select! {
                _ = done_rx.changed() => break,
                d = async { stdin_rx.as_mut().expect("checked").recv().await }, if stdin_open => match d {
                    Some(data) => proto::stream_frame(proto::CHANNEL_STDIN, &data),
                    None => {
                        stdin_open = false;
                        proto::stream_frame(proto::CHANNEL_CLOSE, &[proto::CHANNEL_STDIN])
                    }
                },
                r = resize_rx.recv() => match r {
                    Some((width, height)) => match serde_json::to_vec(&TerminalSize { width, height }) {
                        Ok(json) => proto::stream_frame(proto::CHANNEL_RESIZE, &json),
                        Err(_) => continue,
                    },
                    // Nobody can resize any more; keep serving stdin until the end.
                    None => {
                        if !stdin_open {
                            let _ = done_rx.changed().await;
                            break;
                        }
                        match stdin_rx.as_mut().expect("checked").recv().await {
                            Some(data) => proto::stream_frame(proto::CHANNEL_STDIN, &data),
                            None => {
                                stdin_open = false;
                                proto::stream_frame(proto::CHANNEL_CLOSE, &[proto::CHANNEL_STDIN])
                            }
                        }
                    }
                },
            };
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    ExecSession { pid, stdin: stdin_tx, stdout: stdout_rx, stderr: stderr_rx, resize: resize_tx, exit: exit_rx }
}

fn unexpected(id: &str, r: Response) -> RuntimeError {
    match r {
        Response::Error { message } => RuntimeError::Shim { id: id.to_string(), message },
        other => RuntimeError::Unexpected { id: id.to_string(), response: format!("{other:?}") },
    }
}

async fn read_record(dir: &Path) -> Result<ShimRecord, RuntimeError> {
    let data = tokio::fs::read(dir.join(RECORD_FILE)).await.map_err(io_err(format!("reading {RECORD_FILE}")))?;
    Ok(serde_json::from_slice(&data)?)
}

async fn roundtrip(stream: &mut UnixStream, req: &Request) -> Result<Response, RuntimeError> {
    stream.write_all(&proto::encode_frame(req)?).await.map_err(ProtoError::Io)?;
    let len = match stream.read_u32().await {
        Ok(n) => n as usize,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ProtoError::Closed.into()),
        Err(e) => return Err(ProtoError::Io(e).into()),
    };
    if len > proto::MAX_FRAME {
        return Err(ProtoError::TooLarge(len).into());
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtoError::Closed,
        _ => ProtoError::Io(e),
    })?;
    Ok(proto::decode(&body)?)
}

async fn read_stream_frame(rd: &mut tokio::net::unix::OwnedReadHalf) -> Result<(u8, Bytes), ProtoError> {
    let mut head = [0u8; 5];
    rd.read_exact(&mut head).await.map_err(|_| ProtoError::Closed)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > proto::MAX_FRAME {
        return Err(ProtoError::TooLarge(len));
    }
    let mut data = vec![0u8; len];
    rd.read_exact(&mut data).await.map_err(|_| ProtoError::Closed)?;
    Ok((head[0], Bytes::from(data)))
}

/// Waits until the process (pid + start time) is gone.
async fn wait_gone(pid: Option<i32>, start_time: Option<u64>, limit: Duration) {
    let Some(pid) = pid else { return };
    let deadline = tokio::time::Instant::now() + limit;
    while process_alive(pid, start_time) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
