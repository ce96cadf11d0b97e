//! Namespaces pinned to files by bind mounts, so a pod's network, IPC and UTS namespaces live
//! without any process in them (no pause container) and survive agent restarts.

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("failed to prepare namespace file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run unshare: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("unshare failed to pin namespaces ({status}): {stderr}")]
    Unshare { status: String, stderr: String },
    #[error("failed to unmount namespace file {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// The namespace files of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsFiles {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

impl NsFiles {
    pub fn in_dir(dir: &Path) -> Self {
        NsFiles { net: dir.join("net"), ipc: dir.join("ipc"), uts: dir.join("uts") }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.net, &self.ipc, &self.uts]
    }
}

/// What to create: the IPC namespace always, network and UTS unless the pod uses the node's.
#[derive(Clone, Copy, Debug)]
pub struct NsSpec<'a> {
    pub net: bool,
    /// The hostname to set in a new UTS namespace; None keeps the node's UTS namespace.
    pub uts_hostname: Option<&'a str>,
}

/// Creates new namespaces and bind-mounts them onto `files` with util-linux `unshare`
/// (`--net=FILE` pins the namespace it creates), then sets the hostname inside the new UTS
/// namespace by running `hostname` in it. The process exits at once; the mounts keep the
/// namespaces alive.
pub async fn pin(files: &NsFiles, spec: NsSpec<'_>) -> Result<(), NsError> {
    let mut cmd = Command::new("unshare");
    let mut touch = vec![&files.ipc];
    cmd.arg(format!("--ipc={}", files.ipc.display()));
    if spec.net {
        cmd.arg(format!("--net={}", files.net.display()));
        touch.push(&files.net);
    }
    match spec.uts_hostname {
        Some(hostname) => {
            cmd.arg(format!("--uts={}", files.uts.display())).arg("hostname").arg(hostname);
            touch.push(&files.uts);
        }
        None => {
            cmd.arg("true");
        }
    }
    // unshare bind-mounts onto existing files only.
    for path in touch {
        std::fs::File::create(path).map_err(|source| NsError::File { path: path.clone(), source })?;
    }
    let out = cmd.stdin(Stdio::null()).output().await.map_err(NsError::Spawn)?;
    if !out.status.success() {
        return Err(NsError::Unshare {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Whether `path` is a pinned namespace (an nsfs mount), as opposed to a plain or missing file.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Unmounts and removes the namespace files; missing files and plain files are fine, so this can
/// run on a half-created sandbox. The namespaces die once no process uses them.
pub fn unpin(files: &NsFiles) -> Result<(), NsError> {
    for path in files.all() {
        // A file pinned twice (a crash between two attempts) holds two stacked mounts.
        while is_pinned(path) {
            match umount2(path, MntFlags::MNT_DETACH) {
                Ok(()) => {}
                Err(Errno::EINVAL | Errno::ENOENT) => break,
                Err(source) => return Err(NsError::Unmount { path: path.to_path_buf(), source }),
            }
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(NsError::File { path: path.to_path_buf(), source }),
        }
    }
    Ok(())
}
