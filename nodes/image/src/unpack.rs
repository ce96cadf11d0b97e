//! Unpacks one layer tarball into its own directory, in the form overlayfs reads as a lower
//! layer: OCI whiteouts become overlay whiteouts (`.wh.x` -> char device 0:0 `x`,
//! `.wh..wh..opq` -> xattr `trusted.overlay.opaque=y` on the directory).

use std::ffi::{CString, OsStr};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use tar::EntryType;

use crate::digest::HashingReader;

/// Errors of unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer {blob}: {source}")]
    Read { blob: PathBuf, source: io::Error },
    #[error("layer entry {path:?}: {source}")]
    Entry { path: String, source: io::Error },
    #[error("layer entry {0:?} escapes the layer root")]
    Escape(String),
    #[error("layer entry {path:?} lies below {below:?}, which is not a directory")]
    NotADirectory { path: String, below: String },
    #[error("layer entry {0:?} hard-links to a missing file")]
    MissingLinkTarget(String),
    #[error("layer entry {path:?} has unsupported type {kind:?}")]
    Unsupported { path: String, kind: EntryType },
    #[error("zstd layer: {0}")]
    Zstd(String),
    #[error("layer content {actual} does not match the diffID {expected} of the image config")]
    DiffId { expected: String, actual: String },
}

/// What an unpacked layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Bytes of regular files (what the layer costs on disk, roughly).
    pub bytes: u64,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Compression of a layer blob, told by its first bytes (media types lie, magic does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

pub(crate) fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Opens a layer blob as the uncompressed tar stream.
pub(crate) fn open_layer(blob: &Path) -> Result<Box<dyn Read>, UnpackError> {
    let read_err = |source| UnpackError::Read { blob: blob.to_path_buf(), source };
    let mut r = BufReader::with_capacity(256 * 1024, File::open(blob).map_err(read_err)?);
    let head = r.fill_buf().map_err(read_err)?;
    Ok(match sniff(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(ZstdFrames::new(r)?),
        Compression::None => Box::new(r),
    })
}

/// Unpacks `blob` into the empty directory `dest` and checks the uncompressed stream against
/// `diff_id`. On error `dest` holds a partial tree: the caller unpacks into a temporary
/// directory and renames it into place only on success.
pub(crate) fn unpack_layer(blob: &Path, dest: &Path, diff_id: &str) -> Result<Unpacked, UnpackError> {
    let mut hashing = HashingReader::new(open_layer(blob)?);
    let bytes = unpack_tar(&mut hashing, dest)?;
    let (actual, _) = hashing.finish().map_err(|source| UnpackError::Read { blob: blob.to_path_buf(), source })?;
    if actual != diff_id {
        return Err(UnpackError::DiffId { expected: diff_id.to_string(), actual });
    }
    Ok(Unpacked { bytes })
}

/// Unpacks a tar stream into `dest`; returns the bytes of regular files.
pub(crate) fn unpack_tar(reader: &mut dyn Read, dest: &Path) -> Result<u64, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut bytes = 0u64;
    let entries = archive.entries().map_err(|source| UnpackError::Entry { path: String::new(), source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Entry { path: String::new(), source })?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let ctx = |source| UnpackError::Entry { path: shown.clone(), source };
        let rel = sanitize(&entry.path_bytes(), &shown)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink) {
            continue;
        }
        let meta = EntryMeta::read(&mut entry).map_err(ctx)?;
        let Some(rel) = rel else {
            // "./": the layer's root directory itself.
            meta.apply(dest, false).map_err(ctx)?;
            continue;
        };
        let name = rel.file_name().expect("sanitized paths end in a name").to_owned();
        let parent = ensure_parent(dest, &rel, &shown)?;
        let name_bytes = name.as_bytes();
        if name_bytes == b".wh..wh..opq" {
            set_xattr(&parent, "trusted.overlay.opaque", b"y").map_err(ctx)?;
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            // Other `.wh..wh.*` names are aufs bookkeeping with no meaning for overlay.
            if !hidden.starts_with(b".wh.") && !hidden.is_empty() {
                let target = parent.join(OsStr::from_bytes(hidden));
                clear(&target).map_err(ctx)?;
                mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| ctx(e.into()))?;
            }
            continue;
        }
        let dst = parent.join(&name);
        match kind {
            EntryType::Directory => {
                if !fs::symlink_metadata(&dst).map(|m| m.is_dir()).unwrap_or(false) {
                    clear(&dst).map_err(ctx)?;
                    fs::create_dir(&dst).map_err(ctx)?;
                }
                meta.apply(&dst, false).map_err(ctx)?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                clear(&dst).map_err(ctx)?;
                let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&dst).map_err(ctx)?;
                bytes += io::copy(&mut entry, &mut f).map_err(ctx)?;
                let t = UNIX_EPOCH + Duration::from_secs(meta.mtime);
                f.set_times(FileTimes::new().set_modified(t).set_accessed(t)).map_err(ctx)?;
                drop(f);
                meta.apply(&dst, false).map_err(ctx)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| ctx(io::Error::other("symlink without target")))?;
                clear(&dst).map_err(ctx)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dst).map_err(ctx)?;
                meta.apply(&dst, true).map_err(ctx)?;
            }
            EntryType::Link => {
                let raw = entry.link_name_bytes().ok_or_else(|| ctx(io::Error::other("hard link without target")))?;
                let shown_target = String::from_utf8_lossy(&raw).into_owned();
                let target_rel = sanitize(&raw, &shown_target)?.ok_or_else(|| UnpackError::Escape(shown_target.clone()))?;
                let target_parent = ensure_parent(dest, &target_rel, &shown_target)?;
                let target = target_parent.join(target_rel.file_name().expect("sanitized paths end in a name"));
                if fs::symlink_metadata(&target).is_err() {
                    return Err(UnpackError::MissingLinkTarget(shown));
                }
                if target != dst {
                    clear(&dst).map_err(ctx)?;
                    fs::hard_link(&target, &dst).map_err(ctx)?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let header = entry.header();
                let major = header.device_major().map_err(ctx)?.unwrap_or(0);
                let minor = header.device_minor().map_err(ctx)?.unwrap_or(0);
                clear(&dst).map_err(ctx)?;
                mknod(&dst, sflag, Mode::from_bits_truncate(0o600), makedev(major.into(), minor.into()))
                    .map_err(|e| ctx(e.into()))?;
                meta.apply(&dst, false).map_err(ctx)?;
            }
            other => return Err(UnpackError::Unsupported { path: shown, kind: other }),
        }
    }
    Ok(bytes)
}

/// Owner, mode, mtime and xattrs of an entry, read before its data.
struct EntryMeta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Self> {
        let h = entry.header();
        let (uid, gid, mode, mtime) = (h.uid()? as u32, h.gid()? as u32, h.mode()? & 0o7777, h.mtime()?);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if let Ok(key) = ext.key() {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Self { uid, gid, mode, mtime, xattrs })
    }

    /// Owner first: chown clears set-id bits, so the mode comes after it.
    fn apply(&self, path: &Path, symlink: bool) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(self.mode))?;
        }
        for (name, value) in &self.xattrs {
            set_xattr(path, name, value)?;
        }
        Ok(())
    }
}

/// The entry's path relative to the layer root; `None` for the root itself. `..` is refused
/// rather than skipped: a layer that tries to escape is corrupt or hostile.
fn sanitize(raw: &[u8], shown: &str) -> Result<Option<PathBuf>, UnpackError> {
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(UnpackError::Escape(shown.to_string())),
            Component::Normal(p) => out.push(p),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates the missing parents of `rel` under `root` and returns the parent. A symlink on the
/// way is refused: following it could write outside the layer, and tars of real file systems
/// never put entries below a symlink.
fn ensure_parent(root: &Path, rel: &Path, shown: &str) -> Result<PathBuf, UnpackError> {
    let mut cur = root.to_path_buf();
    let mut walked = PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            walked.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(UnpackError::NotADirectory {
                        path: shown.to_string(),
                        below: walked.display().to_string(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(|source| UnpackError::Entry { path: shown.to_string(), source })?
                }
                Err(source) => return Err(UnpackError::Entry { path: shown.to_string(), source }),
            }
        }
    }
    Ok(cur)
}

/// Removes whatever an earlier entry of the same layer left at `path`.
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `lsetxattr`: never follows a symlink.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated and live across the call; value/len describe a slice.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `lgetxattr`, for tests.
#[cfg(test)]
pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: the buffer outlives the call and its length is passed.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) { Ok(None) } else { Err(e) };
    }
    buf.truncate(rc as usize);
    Ok(Some(buf))
}

/// A zstd stream of one or more frames (skippable frames skipped); ruzstd's own streaming
/// decoder reads a single frame.
struct ZstdFrames<R: BufRead> {
    source: R,
    frame: FrameDecoder,
    active: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Result<Self, UnpackError> {
        let mut me = Self { source, frame: FrameDecoder::new(), active: false };
        if !me.next_frame().map_err(|e| UnpackError::Zstd(e.to_string()))? {
            return Err(UnpackError::Zstd("no frame".into()));
        }
        Ok(me)
    }

    /// Reads the next data frame's header; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.frame.reset(&mut self.source) {
                Ok(()) => {
                    self.active = true;
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                }
                Err(e) => return Err(io::Error::other(format!("zstd: {e}"))),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.active && !self.next_frame()? {
                return Ok(0);
            }
            while self.frame.can_collect() < buf.len() && !self.frame.is_finished() {
                let want = buf.len() - self.frame.can_collect();
                self.frame
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(want))
                    .map_err(|e| io::Error::other(format!("zstd: {e}")))?;
            }
            let n = self.frame.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.frame.is_finished() {
                self.active = false;
            }
        }
    }
}
