//! Overlay root file systems of containers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::{ImageError, ImageInfo, ImageStore};

/// Errors of mounting or unmounting a root file system.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("overlay options for {target} are {len} bytes; the kernel takes at most {max} (too many layers?)")]
    OptionsTooLong { target: PathBuf, len: usize, max: usize },
    #[error("path {0} contains a character overlay options cannot carry (',', ':' or whitespace)")]
    BadPath(PathBuf),
    #[error("mounting overlay on {target}: {source}")]
    Mount { target: PathBuf, source: nix::Error },
    #[error("unmounting {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// Mount options travel in one page.
const MAX_OPTIONS: usize = 4095;

fn io_err(context: String) -> impl FnOnce(io::Error) -> MountError {
    move |source| MountError::Io { context, source }
}

impl ImageStore {
    /// Mounts the image's layers as an overlay at `<container_dir>/rootfs` with
    /// `<container_dir>/upper` and `<container_dir>/work` (all on the container dir's file
    /// system, which must not itself be an overlay); returns the rootfs path. Mounting again
    /// returns the existing mount.
    pub fn mount_rootfs(&self, image: &ImageInfo, container_dir: &Path) -> Result<PathBuf, ImageError> {
        let span = tracing::debug_span!("mount_rootfs", image = %image.id, dir = %container_dir.display());
        let _e = span.enter();
        fs::create_dir_all(container_dir).map_err(io_err(format!("creating {}", container_dir.display())))?;
        let dir = container_dir.canonicalize().map_err(io_err(format!("resolving {}", container_dir.display())))?;
        let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
        if is_mount_point(&rootfs) {
            return Ok(rootfs);
        }
        self.ensure_layers(image.layers())?;
        let lowers = self.lower_dirs(image)?;
        for p in lowers.iter().chain([&upper, &work]) {
            let s = p.to_string_lossy();
            if s.contains([',', ':']) || s.chars().any(char::is_whitespace) {
                return Err(MountError::BadPath(p.clone()).into());
            }
        }
        for d in [&rootfs, &upper, &work] {
            fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let lower = lowers.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>().join(":");
        let opts = format!("lowerdir={lower},upperdir={},workdir={}", upper.display(), work.display());
        if opts.len() > MAX_OPTIONS {
            return Err(MountError::OptionsTooLong { target: rootfs, len: opts.len(), max: MAX_OPTIONS }.into());
        }
        mount(Some("overlay"), &rootfs, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
            .map_err(|source| MountError::Mount { target: rootfs.clone(), source })?;
        self.touch(&image.id);
        tracing::debug!(layers = lowers.len(), rootfs = %rootfs.display(), "rootfs mounted");
        Ok(rootfs)
    }

    /// Unmounts `<container_dir>/rootfs` if mounted and removes rootfs, upper and work (and the
    /// container dir when that leaves it empty). Repeating it is harmless.
    pub fn unmount_rootfs(container_dir: &Path) -> Result<(), ImageError> {
        if !container_dir.exists() {
            return Ok(());
        }
        let dir = container_dir.canonicalize().map_err(io_err(format!("resolving {}", container_dir.display())))?;
        let rootfs = dir.join("rootfs");
        // Stacked mounts (a mount repeated by a crashed agent) come off one by one.
        while is_mount_point(&rootfs) {
            match umount2(&rootfs, MntFlags::empty()) {
                Ok(()) => {}
                Err(nix::Error::EBUSY) => umount2(&rootfs, MntFlags::MNT_DETACH)
                    .map_err(|source| MountError::Unmount { target: rootfs.clone(), source })?,
                Err(source) => return Err(MountError::Unmount { target: rootfs.clone(), source }.into()),
            }
        }
        for d in ["rootfs", "upper", "work"] {
            let p = dir.join(d);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(MountError::Io { context: format!("removing {}", p.display()), source: e }.into()),
            }
        }
        let _ = fs::remove_dir(&dir);
        Ok(())
    }
}

/// Whether `path` (canonical) is a mount point in this process's mount namespace.
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    text.lines().any(|l| l.split(' ').nth(4).is_some_and(|mp| unescape_mountinfo(mp) == want))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/a\134b"), r"/a\b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }
}
