//! The container's seccomp filter for execs (libcontainer installs the init's itself).

use libcontainer::workload::ExecutorError;

#[cfg(feature = "seccomp")]
pub(super) fn install_seccomp(profile: &libcontainer::oci_spec::runtime::LinuxSeccomp) -> Result<(), ExecutorError> {
    libcontainer::seccomp::initialize_seccomp(profile)
        .map(|_| ())
        .map_err(|e| ExecutorError::Other(format!("installing the container's seccomp filter: {e}")))
}

/// Built without libseccomp, libcontainer ignores `linux.seccomp` for the container too.
#[cfg(not(feature = "seccomp"))]
pub(super) fn install_seccomp(_: &libcontainer::oci_spec::runtime::LinuxSeccomp) -> Result<(), ExecutorError> {
    Ok(())
}
