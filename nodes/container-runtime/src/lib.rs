//! Container runtime of a Kubus node.
//!
//! Every container is run by its own small shim process (`kubus shim create`) that calls youki's
//! `libcontainer`, keeps the container's exit code and CRI log, and serves a unix socket. The agent
//! (`Runtime`, async) only talks to shims: libcontainer is not thread-safe and `chdir()`s its caller,
//! and a shim outlives agent restarts. See docs/design/node-agent.md §1-§2.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cgroups;
mod client;
pub mod logs;
mod metrics;
pub mod proto;
mod shim;
mod timefmt;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use client::{Runtime, RuntimeConfig, RuntimeError};
/// The OCI runtime-spec types (oci-spec 0.10) libcontainer reads: build `CreateContainer::spec` with them.
pub use libcontainer::oci_spec;
pub use logs::{read_logs, LogOptions, LogStream, LogsError};
pub use shim::shim_main;

/// Label keys the kubelet stores with every container (kept in `shim.json`), so that a restarted
/// agent can map containers back to pods.
pub mod labels {
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
}

/// What the kubelet asks for: the bundle directory already holds the prepared root filesystem
/// (`spec.root.path`, relative to the bundle or absolute); `create` writes `config.json` beside it.
#[derive(Debug, Clone)]
pub struct CreateContainer {
    pub id: String,
    pub spec: libcontainer::oci_spec::runtime::Spec,
    pub bundle_dir: PathBuf,
    /// CRI-format log file the shim appends the container's stdout/stderr to.
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// Keep a stdin for the init that `attach` can write to (the container's `stdin`).
    pub stdin: bool,
    /// Close it when the first attach closes it (`stdinOnce`).
    pub stdin_once: bool,
}

/// Why a container's init ended, with kubelet's reason names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    Completed,
    Error,
    OOMKilled,
    /// The shim died without recording the exit (kubelet's `ContainerStatusUnknown`, code 137).
    ContainerStatusUnknown,
}

impl ExitReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::OOMKilled => "OOMKilled",
            ExitReason::ContainerStatusUnknown => "ContainerStatusUnknown",
        }
    }
}

/// How a container's init process ended (`exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Exit status, or 128 + signal number when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub reason: ExitReason,
    #[serde(with = "timefmt::rfc3339_opt")]
    pub started_at: Option<SystemTime>,
    #[serde(with = "timefmt::rfc3339")]
    pub finished_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Built (namespaces, cgroup, rootfs set up), the user process not yet started.
    Created,
    Running {
        pid: i32,
        #[serde(with = "timefmt::rfc3339")]
        started_at: SystemTime,
    },
    Exited(ExitInfo),
}

/// A container as `list()` rediscovers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// Pid of the init process on the host (stays known after exit, for the record).
    pub init_pid: Option<i32>,
    /// Pid of the shim; `None` when it is gone.
    pub shim_pid: Option<i32>,
    pub bundle_dir: PathBuf,
    pub log_path: PathBuf,
    pub created_at: SystemTime,
}

/// A process to run inside a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// `KEY=value` entries added to (overriding) the container's environment.
    pub env: Vec<String>,
    /// Absolute working directory; the container's when `None`.
    pub cwd: Option<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// The live streams of an exec, shaped like the kubelet's remotecommand channels.
/// With `tty` the terminal's output arrives on `stdout` only.
#[derive(Debug)]
pub struct ExecSession {
    pub pid: i32,
    /// Dropping it closes the process's stdin (with a tty: sends end-of-file, ^D).
    pub stdin: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    pub stdout: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    pub stderr: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    /// Terminal size as (width, height); ignored without a tty.
    pub resize: tokio::sync::mpsc::Sender<(u16, u16)>,
    /// The exit code (128 + signal for signals); an error when the shim went away first.
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

/// Error for an id libcontainer would refuse or that could escape a directory.
#[derive(Debug, thiserror::Error)]
#[error("invalid container id {0:?}: use 1-128 characters of [A-Za-z0-9_+.-], not . or ..")]
pub struct InvalidId(pub String);

/// Container ids are `[A-Za-z0-9_+.-]` (libcontainer's `validate_id`), and they name directories.
pub fn validate_id(id: &str) -> Result<(), InvalidId> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidId(id.to_string()))
    }
}

/// Whether this process runs as root: running containers needs it (namespaces, cgroups,
/// mounts), so `kubus up` runs a node agent only then, and the node benches refuse without it.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_read_from_this_process() {
        assert_eq!(is_root(), std::fs::read_to_string("/proc/self/status").unwrap().contains("Uid:\t0\t"));
    }

    #[test]
    fn ids() {
        for ok in ["a", "pod-1_c+2.3", "0123456789abcdef-nginx-0"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
