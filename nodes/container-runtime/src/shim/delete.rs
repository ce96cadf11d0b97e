//! Deleting the container: by its live shim (`Delete`), or what a dead shim left (`shim cleanup`).

use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::server::{exit_code, Shim};
use super::{io_err, ShimError, ShimRecord};
use crate::cgroups::CgroupLayout;

impl Shim {
    /// Kills what is left, reaps it, removes the container (leaf cgroup, libcontainer state) and
    /// the shim directory.
    pub(super) fn delete(&mut self) -> Result<(), ShimError> {
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
            return remove_shim_dir(dir);
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
    remove_shim_dir(dir)
}

/// Removes the shim directory; one already gone is fine.
fn remove_shim_dir(dir: &Path) -> Result<(), ShimError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing shim dir")(e)),
        _ => Ok(()),
    }
}
