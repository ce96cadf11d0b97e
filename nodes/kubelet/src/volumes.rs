//! Pod volumes on the node, under `<pod dir>/volumes/<name>`: emptyDir (a directory, or tmpfs
//! for `medium: Memory`), configMap, secret (on tmpfs, never on disk), downwardAPI and projected
//! volumes written the way upstream's atomic writer does (files are symlinks into `..data`,
//! which is swapped in one rename, so a container never sees half an update), and hostPath.
//! `prepare` is repeated on every sync: content written before is refreshed when it changed.

use crate::env::{self, PodFacts};
use crate::objects::{ObjectSource, SourceKind, TokenSource};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Volume, VolumeProjection};
use kubus_apimachinery::{pod, ObjectExt};
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    #[error("volume \"{0}\": this volume type is not supported by this node")]
    Unsupported(String),
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType { path: String, expected: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where each of a pod's volumes is on the host.
pub type VolumePaths = BTreeMap<String, VolumeSource>;

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSource {
    pub host_path: PathBuf,
    /// Written by the kubelet (configMap, secret, ...): containers always mount it read-only.
    pub read_only: bool,
}

/// Files to write into a volume: relative path -> (content, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Makes every volume of `pod` ready under `pod_dir/volumes`.
pub async fn prepare(
    pod_dir: &Path,
    facts: &PodFacts<'_>,
    source: &dyn ObjectSource,
    token: &dyn TokenSource,
) -> Result<VolumePaths, VolumeError> {
    let mut out = VolumePaths::new();
    for vol in pod::spec(facts.pod).volumes.iter().flatten() {
        let entry = prepare_one(pod_dir, facts, vol, source, token).await?;
        out.insert(vol.name.clone(), entry);
    }
    Ok(out)
}

async fn prepare_one(
    pod_dir: &Path,
    facts: &PodFacts<'_>,
    vol: &Volume,
    source: &dyn ObjectSource,
    token: &dyn TokenSource,
) -> Result<VolumeSource, VolumeError> {
    let ns = facts.pod.namespace_or_default();
    let name = vol.name.clone();
    let dir = pod_dir.join("volumes").join(&name);
    let setup = |message: String| VolumeError::SetUp { volume: name.clone(), message };
    let written = |files: Files| -> Result<VolumeSource, VolumeError> {
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir, &files).map_err(|e| setup(e.to_string()))?;
        Ok(VolumeSource { host_path: dir.clone(), read_only: true })
    };
    if let Some(empty) = &vol.empty_dir {
        std::fs::create_dir_all(&dir)?;
        if empty.medium.as_deref() == Some("Memory") {
            let size = empty.size_limit.as_ref().and_then(|q| parse_bytes(&q.0));
            mount_tmpfs(&dir, size).map_err(|e| setup(e.to_string()))?;
        }
        // A pod's containers may run as any user: the directory is world-writable, as upstream.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        Ok(VolumeSource { host_path: dir, read_only: false })
    } else if let Some(hp) = &vol.host_path {
        host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))?;
        Ok(VolumeSource { host_path: PathBuf::from(&hp.path), read_only: false })
    } else if let Some(claim) = &vol.persistent_volume_claim {
        let path = source.claim_path(ns, &claim.claim_name).await.map_err(setup)?;
        // A provisioned directory exists; a volume an administrator made may not yet.
        std::fs::create_dir_all(&path)?;
        Ok(VolumeSource { host_path: PathBuf::from(path), read_only: claim.read_only.unwrap_or(false) })
    } else if let Some(from) = ObjectRef::of_volume(vol) {
        if from.kind == SourceKind::Secret {
            // Secrets on tmpfs, never on disk.
            std::fs::create_dir_all(&dir)?;
            mount_tmpfs(&dir, None).map_err(|e| setup(e.to_string()))?;
        }
        written(object_files(&from, ns, source).await.map_err(setup)?)
    } else if let Some(d) = &vol.downward_api {
        written(
            downward_files(facts, d.items.as_deref().unwrap_or(&[]), mode_or_default(d.default_mode)).map_err(setup)?,
        )
    } else if let Some(projected) = &vol.projected {
        std::fs::create_dir_all(&dir)?;
        mount_tmpfs(&dir, None).map_err(|e| setup(e.to_string()))?;
        let mode = mode_or_default(projected.default_mode);
        let mut files = Files::new();
        for src in projected.sources.iter().flatten() {
            if let Some(from) = ObjectRef::of_projection(src, mode) {
                files.extend(object_files(&from, ns, source).await.map_err(setup)?);
            } else if let Some(d) = &src.downward_api {
                files.extend(downward_files(facts, d.items.as_deref().unwrap_or(&[]), mode).map_err(setup)?);
            } else if let Some(t) = &src.service_account_token {
                let path = if t.path.is_empty() { "token".to_string() } else { t.path.clone() };
                let expiry = t.expiration_seconds.unwrap_or(3600);
                // Like upstream, a token is renewed once 80% of its lifetime has passed.
                let jwt = match std::fs::read_to_string(dir.join("..data").join(&path)) {
                    Ok(t) if token_fresh(&t, expiry) => t,
                    _ => token.token(facts.pod, t.audience.clone(), expiry).await.map_err(setup)?,
                };
                files.insert(path, (jwt.into_bytes(), mode));
            }
        }
        written(files)
    } else {
        Err(VolumeError::Unsupported(name))
    }
}

fn mode_or_default(mode: Option<i32>) -> u32 {
    mode.map(|m| m as u32).unwrap_or(0o644)
}

/// Whether a JWT still has more than a fifth of `lifetime` seconds to live.
fn token_fresh(jwt: &str, lifetime: i64) -> bool {
    use base64::Engine as _;
    let exp = jwt
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| c["exp"].as_i64());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    exp.is_some_and(|exp| exp - now > lifetime / 5)
}

/// A ConfigMap or Secret a volume projects, with the keys it picks.
struct ObjectRef<'a> {
    kind: SourceKind,
    name: &'a str,
    optional: bool,
    items: Option<&'a [KeyToPath]>,
    mode: u32,
}

impl<'a> ObjectRef<'a> {
    fn new(
        kind: SourceKind,
        name: &'a str,
        optional: Option<bool>,
        items: &'a Option<Vec<KeyToPath>>,
        mode: u32,
    ) -> Self {
        ObjectRef { kind, name, optional: optional.unwrap_or(false), items: items.as_deref(), mode }
    }

    /// The Secret or ConfigMap a secret or configMap volume projects; None for other volumes.
    fn of_volume(vol: &'a Volume) -> Option<Self> {
        if let Some(s) = &vol.secret {
            let name = s.secret_name.as_deref().unwrap_or("");
            return Some(Self::new(SourceKind::Secret, name, s.optional, &s.items, mode_or_default(s.default_mode)));
        }
        let cm = vol.config_map.as_ref()?;
        Some(Self::new(SourceKind::ConfigMap, &cm.name, cm.optional, &cm.items, mode_or_default(cm.default_mode)))
    }

    /// The ConfigMap or Secret a source of a projected volume names; None for other sources.
    fn of_projection(src: &'a VolumeProjection, mode: u32) -> Option<Self> {
        if let Some(cm) = &src.config_map {
            return Some(Self::new(SourceKind::ConfigMap, &cm.name, cm.optional, &cm.items, mode));
        }
        let s = src.secret.as_ref()?;
        Some(Self::new(SourceKind::Secret, &s.name, s.optional, &s.items, mode))
    }
}

async fn object_files(from: &ObjectRef<'_>, ns: &str, source: &dyn ObjectSource) -> Result<Files, String> {
    let (kind, name) = (from.kind.name(), from.name);
    let data = match source.get(from.kind, ns, name).await? {
        Some(o) => o.files(),
        None if from.optional => return Ok(Files::new()),
        None => return Err(format!("{kind} \"{name}\" not found")),
    };
    let mut files = Files::new();
    match from.items.filter(|i| !i.is_empty()) {
        Some(items) => {
            for item in items {
                let path = if item.path.is_empty() { item.key.clone() } else { item.path.clone() };
                let m = item.mode.map(|m| m as u32).unwrap_or(from.mode);
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(path, (v.clone(), m));
                    }
                    None if from.optional => {}
                    None => return Err(format!("configmap references non-existent config key: {}", item.key)),
                }
            }
        }
        None => files.extend(data.into_iter().map(|(k, v)| (k, (v, from.mode)))),
    }
    Ok(files)
}

fn downward_files(facts: &PodFacts<'_>, items: &[DownwardAPIVolumeFile], mode: u32) -> Result<Files, String> {
    let mut files = Files::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::field_value(facts, &f.field_path).map_err(|e| e.to_string())?
        } else if let Some(r) = &item.resource_field_ref {
            let c = pod::spec(facts.pod).containers.first().cloned().unwrap_or_default();
            env::resource_value(facts, &c, r).map_err(|e| e.to_string())?
        } else {
            continue;
        };
        files.insert(item.path.clone(), (value.into_bytes(), item.mode.map(|m| m as u32).unwrap_or(mode)));
    }
    Ok(files)
}

/// Writes `files` into `dir` atomically: a new timestamped directory, `..data` swapped to it
/// in one rename, user-visible names as symlinks through `..data`. Unchanged content is left
/// alone, so a sync that finds nothing new writes nothing.
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> std::io::Result<()> {
    for rel in files.keys() {
        if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|p| p == ".." || p.starts_with("..")) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("invalid path {rel}")));
        }
    }
    let data = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data) {
        let cur = dir.join(&current);
        let same = files.iter().all(|(rel, (content, mode))| {
            std::fs::read(cur.join(rel)).is_ok_and(|c| &c == content)
                && std::fs::metadata(cur.join(rel)).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        }) && count_files(&cur) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    );
    let new = dir.join(&stamp);
    std::fs::create_dir_all(&new)?;
    for (rel, (content, mode)) in files {
        let p = new.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, &data)?;
    // Top-level names point through ..data; names no longer present are removed.
    let tops: std::collections::BTreeSet<String> =
        files.keys().map(|k| k.split('/').next().unwrap_or(k).to_string()).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            if name != "..data" && name != stamp {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        } else if !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += count_files(&e.path()),
            Ok(_) => n += 1,
            Err(_) => {}
        }
    }
    n
}

fn host_path(path: &str, kind: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    let bad = |expected: &str| VolumeError::HostPathType { path: path.to_string(), expected: expected.to_string() };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(p)?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        }
        "Directory" => meta.ok().filter(|m| m.is_dir()).map(|_| ()).ok_or_else(|| bad("directory")),
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new().create(true).append(true).open(p)?;
            }
            Ok(())
        }
        "File" => meta.ok().filter(|m| m.is_file()).map(|_| ()).ok_or_else(|| bad("file")),
        "Socket" | "CharDevice" | "BlockDevice" => {
            use std::os::unix::fs::FileTypeExt;
            let ok = meta.is_ok_and(|m| match kind {
                "Socket" => m.file_type().is_socket(),
                "CharDevice" => m.file_type().is_char_device(),
                _ => m.file_type().is_block_device(),
            });
            if ok {
                Ok(())
            } else {
                Err(bad(kind))
            }
        }
        other => Err(bad(other)),
    }
}

fn parse_bytes(q: &str) -> Option<u64> {
    kubus_apimachinery::quantity::parse_quantity(q).ok().map(|q| q.value().max(0) as u64)
}

/// tmpfs on `dir`, unless one is already there.
fn mount_tmpfs(dir: &Path, size: Option<u64>) -> std::io::Result<()> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let opts = match size {
        Some(s) => format!("mode=0755,size={s}"),
        None => "mode=0755".to_string(),
    };
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
        .map_err(std::io::Error::from)
}

pub fn is_mount_point(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else { return false };
    let target = canon.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(target.as_str()))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The mount points at or below `dir`, deepest first (the order they come off in); a path
/// mounted twice is listed twice.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(canon) = dir.canonicalize() else { return vec![] };
    let prefix = canon.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.into_iter().map(PathBuf::from).collect()
}

/// Unmounts everything at or below `dir` (deepest first) and removes it.
pub fn teardown(dir: &Path) -> std::io::Result<()> {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_and_prunes() {
        let dir = std::env::temp_dir().join(format!("kubus-vol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".to_string(), (b"2".to_vec(), 0o600));
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.join("sub/b")).unwrap(), b"2");
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first, "unchanged content is not rewritten");
        files.remove("sub/b");
        files.insert("a".to_string(), (b"3".to_vec(), 0o644));
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err(), "removed keys disappear");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "..data, one timestamped dir and a");
        assert!(write_atomic(&dir, &BTreeMap::from([("../x".to_string(), (vec![], 0o644))])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
