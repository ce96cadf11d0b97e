//! The executor libcontainer calls in the container's process, right before `execve`.

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use super::seccomp::install_seccomp;

/// Resets what the shim changed in its own signal state before the workload runs: Rust ignores
/// SIGPIPE and the shim blocks SIGCHLD/SIGTERM for its signalfd, and both would be inherited.
/// For an exec it also installs the container's seccomp filter: libcontainer 0.7 builds a
/// tenant's spec without `linux.seccomp`, so an exec would otherwise escape the filter that
/// confines the container (runc applies it to execs too).
#[derive(Clone, Default)]
pub(super) struct ResetSignalsExecutor {
    pub(super) tenant_seccomp: Option<libcontainer::oci_spec::runtime::LinuxSeccomp>,
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
