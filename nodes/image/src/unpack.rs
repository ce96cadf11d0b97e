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
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
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
                let target_rel =
                    sanitize(&raw, &shown_target)?.ok_or_else(|| UnpackError::Escape(shown_target.clone()))?;
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
                let (major, minor) = if kind == EntryType::Fifo {
                    (0, 0)
                } else {
                    (header.device_major().map_err(ctx)?.unwrap_or(0), header.device_minor().map_err(ctx)?.unwrap_or(0))
                };
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;
    use crate::digest::digest_of;

    /// A directory removed on drop, named with a random token.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let p =
                std::env::temp_dir().join(format!("kubus-unpack-t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
            fs::create_dir(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8], u32, u64),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Char(&'a str, u32, u32),
        Fifo(&'a str),
        Xattr(&'a str, &'a str, &'a [u8]),
    }

    fn tar_of(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match e {
                E::Dir(p, mode) => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                E::File(p, data, mode, uid) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_uid(*uid);
                    h.set_gid(*uid + 1);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                E::Link(p, target) => {
                    h.set_entry_type(EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    h.set_uid(7);
                    b.append_link(&mut h, p, target).unwrap();
                }
                E::Hard(p, target) => {
                    h.set_entry_type(EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                E::Char(p, major, minor) => {
                    h.set_entry_type(EntryType::Char);
                    h.set_mode(0o666);
                    h.set_device_major(*major).unwrap();
                    h.set_device_minor(*minor).unwrap();
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                E::Fifo(p) => {
                    h.set_entry_type(EntryType::Fifo);
                    h.set_mode(0o600);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                E::Xattr(p, name, value) => {
                    let key = format!("SCHILY.xattr.{name}");
                    b.append_pax_extensions([(key.as_str(), *value)]).unwrap();
                    h.set_entry_type(EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(1);
                    b.append_data(&mut h, p, &b"x"[..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn unpack_bytes(blob: &[u8], diff_id: &str) -> (TempDir, Result<Unpacked, UnpackError>) {
        let t = TempDir::new();
        let blob_path = t.0.join("blob");
        fs::write(&blob_path, blob).unwrap();
        let dest = t.0.join("root");
        fs::create_dir(&dest).unwrap();
        let r = unpack_layer(&blob_path, &dest, diff_id);
        (t, r)
    }

    #[test]
    fn keeps_owners_modes_links_devices_and_xattrs() {
        let tar = tar_of(&[
            E::Dir("./", 0o755),
            E::Dir("etc/", 0o750),
            E::File("etc/passwd", b"root:x:0:0\n", 0o644, 1000),
            E::File("bin/su", b"suid", 0o4755, 0),
            E::Link("bin/sh", "/bin/busybox"),
            E::Hard("etc/passwd-", "etc/passwd"),
            E::Char("dev/null", 1, 3),
            E::Fifo("run/fifo"),
            E::Xattr(
                "bin/ping",
                "security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
            E::Xattr("bin/tagged", "trusted.kubus", b"v"),
        ]);
        let (t, r) = unpack_bytes(&tar, &digest_of(&tar));
        let u = r.unwrap();
        assert_eq!(u.bytes, 11 + 4 + 1 + 1);
        let root = t.0.join("root");
        let passwd = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert_eq!((passwd.uid(), passwd.gid(), passwd.mode() & 0o7777), (1000, 1001, 0o644));
        assert_eq!(passwd.mtime(), 1_700_000_000);
        assert_eq!(fs::symlink_metadata(root.join("etc")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(
            fs::symlink_metadata(root.join("bin/su")).unwrap().mode() & 0o7777,
            0o4755,
            "set-id bits survive chown"
        );
        assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
        assert_eq!(fs::symlink_metadata(root.join("bin/sh")).unwrap().uid(), 7);
        assert_eq!(fs::symlink_metadata(root.join("etc/passwd-")).unwrap().ino(), passwd.ino());
        let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert_eq!(null.mode() & 0o777, 0o666);
        assert!(fs::symlink_metadata(root.join("run/fifo")).unwrap().file_type().is_fifo());
        assert_eq!(get_xattr(&root.join("bin/tagged"), "trusted.kubus").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(get_xattr(&root.join("bin/ping"), "security.capability").unwrap().is_some());
    }

    #[test]
    fn turns_oci_whiteouts_into_overlay_whiteouts() {
        let tar = tar_of(&[
            E::Dir("a/", 0o755),
            E::File("a/.wh.gone", b"", 0o644, 0),
            E::File("opaque/.wh..wh..opq", b"", 0o644, 0),
            E::File("opaque/new", b"n", 0o644, 0),
            E::File(".wh..wh.plnk", b"", 0o644, 0),
        ]);
        let (t, r) = unpack_bytes(&tar, &digest_of(&tar));
        r.unwrap();
        let root = t.0.join("root");
        let wh = fs::symlink_metadata(root.join("a/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), makedev(0, 0));
        assert!(!root.join("a/.wh.gone").exists());
        assert_eq!(get_xattr(&root.join("opaque"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
        assert!(!root.join("opaque/.wh..wh..opq").exists());
        assert_eq!(fs::read(root.join("opaque/new")).unwrap(), b"n");
        assert!(!root.join(".wh..wh.plnk").exists(), "aufs metadata is dropped");
    }

    #[test]
    fn refuses_escapes() {
        // tar::Builder refuses `..` itself, so the name is written into the header by hand.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let (t, r) = unpack_bytes(&tar, &digest_of(&tar));
        assert!(matches!(r, Err(UnpackError::Escape(_))), "{r:?}");
        assert!(!t.0.join("escape").exists());

        let tar = tar_of(&[E::Link("evil", "/"), E::File("evil/etc/x", b"x", 0o644, 0)]);
        let (_t, r) = unpack_bytes(&tar, &digest_of(&tar));
        assert!(matches!(r, Err(UnpackError::NotADirectory { .. })), "{r:?}");

        let tar = tar_of(&[E::Link("l", "/etc"), E::Hard("h", "l/passwd")]);
        let (_t, r) = unpack_bytes(&tar, &digest_of(&tar));
        assert!(matches!(r, Err(UnpackError::NotADirectory { .. })), "hard link through a symlink: {r:?}");
    }

    #[test]
    fn checks_the_diff_id() {
        let tar = tar_of(&[E::File("f", b"data", 0o644, 0)]);
        let (_t, r) = unpack_bytes(&tar, &digest_of(b"other"));
        assert!(matches!(r, Err(UnpackError::DiffId { .. })), "{r:?}");
    }

    #[test]
    fn reads_gzip_and_multi_frame_zstd() {
        let tar = tar_of(&[E::File("f", &[5u8; 100_000], 0o644, 0), E::File("g", b"g", 0o600, 0)]);
        let diff = digest_of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (t, r) = unpack_bytes(&gz.finish().unwrap(), &diff);
        r.unwrap();
        assert_eq!(fs::read(t.0.join("root/f")).unwrap().len(), 100_000);

        // Two data frames with a skippable frame between them.
        let (a, b) = tar.split_at(70_000);
        let level = ruzstd::encoding::CompressionLevel::Fastest;
        let mut zst = ruzstd::encoding::compress_to_vec(a, level);
        zst.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        zst.extend(ruzstd::encoding::compress_to_vec(b, level));
        let (t, r) = unpack_bytes(&zst, &diff);
        r.unwrap();
        assert_eq!(fs::read(t.0.join("root/g")).unwrap(), b"g");
    }
}
