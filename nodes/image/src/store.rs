//! The store: image records, blobs, unpacked layers, locks and garbage collection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::{atomic_write, digest_hex, unique_name};
use crate::reference::{self, is_image_id};
use crate::registries::Registries;
use crate::unpack::unpack_layer;
use crate::{json_err, metrics, GcReport, ImageError, ImageInfo, IoContext, Layer};

/// The node's image store. Cheap to clone; safe to use from many threads and tasks.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub registries: Registries,
    meta: Mutex<Meta>,
    /// One pull per image reference at a time: concurrent ensure() of one image pulls once.
    pub image_locks: KeyedLocks<tokio::sync::Mutex<()>>,
    /// One download per blob at a time, across images sharing layers.
    pub blob_locks: KeyedLocks<tokio::sync::Mutex<()>>,
    /// One unpack per ChainID at a time (taken in blocking code).
    layer_locks: KeyedLocks<Mutex<()>>,
    /// Blobs and ChainIDs in use by an operation that has not recorded its image yet; GC spares them.
    pins: Mutex<HashMap<String, usize>>,
    pub clients: Mutex<HashMap<String, Arc<oci_client::Client>>>,
}

#[derive(Default)]
struct Meta {
    images: BTreeMap<String, ImageInfo>,
    /// (mtime ns, size, inode) of images.json when read, to notice writes by another process.
    stamp: Option<(i128, u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct MetaFile {
    images: Vec<ImageInfo>,
}

/// What `layers/<n>.json` records about an unpacked layer.
#[derive(Serialize, Deserialize)]
struct LayerMeta {
    chain_id: String,
    diff_id: String,
    bytes: u64,
}

/// Locks by key; entries vanish when nobody holds them.
pub(crate) struct KeyedLocks<M> {
    map: Mutex<HashMap<String, Weak<M>>>,
}

impl<M: Default> KeyedLocks<M> {
    fn new() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, key: &str) -> Arc<M> {
        let mut map = lock(&self.map);
        if let Some(m) = map.get(key).and_then(Weak::upgrade) {
            return m;
        }
        if map.len() > 64 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let m = Arc::new(M::default());
        map.insert(key.to_string(), Arc::downgrade(&m));
        m
    }
}

/// A poisoned lock only means another thread panicked; the data (plain maps) stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Releases pins on drop.
pub(crate) struct PinGuard {
    inner: Arc<Inner>,
    keys: Vec<String>,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = lock(&self.inner.pins);
        for k in &self.keys {
            if let Some(n) = pins.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(k);
                }
            }
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl ImageStore {
    /// Opens (creating) the store at `root`, e.g. `<state>/images`. Leftovers of interrupted
    /// writes are removed.
    pub fn open(root: PathBuf, registries: Registries) -> Result<Self, ImageError> {
        // reqwest is built with rustls without a default provider (no aws-lc C build): install
        // ring, which the workspace already uses for NATS. Another caller may have done it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for dir in [root.join("blobs/sha256"), root.join("layers"), root.join("tmp")] {
            fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let store = Self {
            inner: Arc::new(Inner {
                root,
                registries,
                meta: Mutex::new(Meta::default()),
                image_locks: KeyedLocks::new(),
                blob_locks: KeyedLocks::new(),
                layer_locks: KeyedLocks::new(),
                pins: Mutex::new(HashMap::new()),
                clients: Mutex::new(HashMap::new()),
            }),
        };
        store.clean_tmp()?;
        fs::create_dir_all(store.empty_layer_dir()).ctx(|| "creating the empty layer".into())?;
        {
            let mut meta = lock(&store.inner.meta);
            store.reload(&mut meta)?;
        }
        metrics::STORE_BYTES.set(store.store_bytes() as i64);
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The image a reference (`busybox`, `repo@sha256:..`) or an id (`sha256:..`) names.
    pub fn get(&self, image: &str) -> Option<ImageInfo> {
        let meta = self.read_meta();
        find(&meta.images, image).cloned()
    }

    /// Every image, for node.status.images.
    pub fn list(&self) -> Vec<ImageInfo> {
        self.read_meta().images.values().cloned().collect()
    }

    /// Removes an image with all its names (CRI RemoveImage), then the layers and blobs no other
    /// image uses and no mounted root file system reads.
    pub fn remove(&self, image: &str) -> Result<(), ImageError> {
        let id = self.update(|images| {
            let id =
                find(images, image).map(|i| i.id.clone()).ok_or_else(|| ImageError::NotFound(image.to_string()))?;
            images.remove(&id);
            Ok(id)
        })?;
        tracing::info!(image, %id, "image removed");
        self.prune()?;
        Ok(())
    }

    /// Kubelet's image GC: when the store holds more than `high_bytes`, removes images not in
    /// `in_use` (ids, names or repo digests), least recently used first, until it holds at most
    /// `low_bytes`; then removes unreferenced layers and blobs.
    #[tracing::instrument(skip(self, in_use), fields(in_use = in_use.len()))]
    pub fn gc(&self, in_use: &HashSet<String>, high_bytes: u64, low_bytes: u64) -> Result<GcReport, ImageError> {
        let bytes_before = self.store_bytes();
        let mut report = GcReport { bytes_before, ..Default::default() };
        if bytes_before > high_bytes {
            let mut candidates: Vec<ImageInfo> =
                self.list().into_iter().filter(|i| !in_use.iter().any(|k| matches_key(i, k))).collect();
            candidates.sort_by_key(|i| (i.last_used, i.id.clone()));
            for victim in candidates {
                let removed = self.update(|images| Ok(images.remove(&victim.id).is_some()))?;
                if removed {
                    tracing::info!(id = %victim.id, names = ?victim.names, "image garbage-collected");
                    report.images_removed.push(victim.id.clone());
                }
                let (l, b) = self.prune()?;
                report.layers_removed += l;
                report.blobs_removed += b;
                if self.store_bytes() <= low_bytes {
                    break;
                }
            }
        }
        let (l, b) = self.prune()?;
        report.layers_removed += l;
        report.blobs_removed += b;
        report.bytes_after = self.store_bytes();
        metrics::STORE_BYTES.set(report.bytes_after as i64);
        Ok(report)
    }

    /// Bytes held: blobs plus unpacked layers.
    pub fn store_bytes(&self) -> u64 {
        let blobs: u64 = read_dir_names(&self.inner.root.join("blobs/sha256"))
            .iter()
            .filter_map(|n| fs::symlink_metadata(self.inner.root.join("blobs/sha256").join(n)).ok())
            .map(|m| m.len())
            .sum();
        let layers: u64 = read_dir_names(&self.layers_dir())
            .iter()
            .filter(|n| n.ends_with(".json"))
            .filter_map(|n| fs::read(self.layers_dir().join(n)).ok())
            .filter_map(|b| serde_json::from_slice::<LayerMeta>(&b).ok())
            .map(|m| m.bytes)
            .sum();
        blobs + layers
    }

    // ---- paths ----

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::Invalid(format!("unsupported digest {digest:?}")))?;
        Ok(self.inner.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).ctx(|| format!("reading blob {digest}"))
    }

    /// Stores `bytes` as a blob after checking them against `digest`.
    pub(crate) fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let actual = crate::digest::digest_of(bytes);
        if actual != digest {
            return Err(ImageError::Digest { what: "blob".into(), expected: digest.into(), actual });
        }
        let p = self.blob_path(digest)?;
        if !p.exists() {
            atomic_write(&p, bytes).ctx(|| format!("writing blob {digest}"))?;
        }
        Ok(())
    }

    pub(crate) fn tmp_path(&self, prefix: &str) -> PathBuf {
        self.inner.root.join("tmp").join(unique_name(prefix))
    }

    fn layers_dir(&self) -> PathBuf {
        self.inner.root.join("layers")
    }

    fn empty_layer_dir(&self) -> PathBuf {
        self.layers_dir().join("empty")
    }

    fn layer_name(chain_id: &str) -> Result<String, ImageError> {
        let hex = digest_hex(chain_id).ok_or_else(|| ImageError::Invalid(format!("bad chain id {chain_id:?}")))?;
        Ok(hex[..12].to_string())
    }

    /// Directory of an unpacked layer (it exists only once the layer is complete).
    pub(crate) fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.layers_dir().join(Self::layer_name(chain_id)?))
    }

    /// Lower directories of an image for overlay, top layer first.
    pub(crate) fn lower_dirs(&self, image: &ImageInfo) -> Result<Vec<PathBuf>, ImageError> {
        if image.layers.is_empty() {
            return Ok(vec![self.empty_layer_dir()]);
        }
        let mut dirs = Vec::with_capacity(image.layers.len());
        for l in image.layers.iter().rev() {
            let d = self.layer_dir(&l.chain_id)?;
            if !d.is_dir() {
                return Err(ImageError::Invalid(format!(
                    "layer {} of image {} is not unpacked (removed by GC?)",
                    l.chain_id, image.id
                )));
            }
            dirs.push(d);
        }
        Ok(dirs)
    }

    // ---- layers ----

    /// Unpacks every layer not unpacked yet. Blocking: call from spawn_blocking in async code.
    pub(crate) fn ensure_layers(&self, layers: &[Layer]) -> Result<(), ImageError> {
        for layer in layers {
            self.ensure_layer(layer)?;
        }
        Ok(())
    }

    fn ensure_layer(&self, layer: &Layer) -> Result<(), ImageError> {
        let dir = self.layer_dir(&layer.chain_id)?;
        let meta_path = dir.with_extension("json");
        let check_existing = || -> Result<bool, ImageError> {
            if !dir.is_dir() {
                return Ok(false);
            }
            let meta: LayerMeta =
                serde_json::from_slice(&fs::read(&meta_path).ctx(|| format!("reading {}", meta_path.display()))?)
                    .map_err(json_err(meta_path.display().to_string()))?;
            if meta.chain_id != layer.chain_id {
                return Err(ImageError::Invalid(format!(
                    "layer directory {} belongs to {}, not {} (12-hex name collision)",
                    dir.display(),
                    meta.chain_id,
                    layer.chain_id
                )));
            }
            Ok(true)
        };
        if check_existing()? {
            return Ok(());
        }
        let lock = self.inner.layer_locks.get(&layer.chain_id);
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        if check_existing()? {
            return Ok(());
        }
        let span = tracing::info_span!("unpack_layer", chain_id = %layer.chain_id, digest = %layer.digest);
        let _e = span.enter();
        let tmp = self.tmp_path("layer");
        fs::create_dir(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        let result = (|| {
            let blob = self.blob_path(&layer.digest)?;
            let unpacked = unpack_layer(&blob, &tmp, &layer.diff_id)
                .map_err(|source| ImageError::Unpack { layer: layer.digest.clone(), source })?;
            // The rename below marks the layer complete, so its content must be on disk first.
            let d = File::open(&tmp).ctx(|| "opening the unpacked layer".into())?;
            // SAFETY: syncfs on a valid open descriptor.
            if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error()).ctx(|| "syncing the unpacked layer".into());
            }
            let meta =
                LayerMeta { chain_id: layer.chain_id.clone(), diff_id: layer.diff_id.clone(), bytes: unpacked.bytes };
            let json = serde_json::to_vec(&meta).map_err(json_err("layer meta"))?;
            atomic_write(&meta_path, &json).ctx(|| format!("writing {}", meta_path.display()))?;
            fs::rename(&tmp, &dir).ctx(|| format!("renaming the layer into {}", dir.display()))?;
            tracing::debug!(bytes = unpacked.bytes, dir = %dir.display(), "layer unpacked");
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    // ---- records ----

    /// Records an image under `names` and `repo_digests`, which move away from any other image
    /// (a tag names one image).
    pub(crate) fn record(
        &self,
        mut info: ImageInfo,
        names: &[String],
        repo_digests: &[String],
    ) -> Result<ImageInfo, ImageError> {
        let info = self.update(move |images| {
            for other in images.values_mut() {
                other.names.retain(|n| !names.contains(n));
                other.repo_digests.retain(|d| !repo_digests.contains(d));
            }
            if let Some(existing) = images.remove(&info.id) {
                for n in existing.names {
                    if !info.names.contains(&n) {
                        info.names.push(n);
                    }
                }
                for d in existing.repo_digests {
                    if !info.repo_digests.contains(&d) {
                        info.repo_digests.push(d);
                    }
                }
                if info.index_digest.is_none() {
                    info.index_digest = existing.index_digest;
                }
            }
            for n in names {
                if !info.names.contains(n) {
                    info.names.push(n.clone());
                }
            }
            for d in repo_digests {
                if !info.repo_digests.contains(d) {
                    info.repo_digests.push(d.clone());
                }
            }
            info.names.sort();
            info.repo_digests.sort();
            info.last_used = now_secs();
            images.insert(info.id.clone(), info.clone());
            Ok(info)
        })?;
        metrics::STORE_BYTES.set(self.store_bytes() as i64);
        Ok(info)
    }

    /// Marks an image used now (GC order). In memory only until the next write: a lost
    /// timestamp only changes which unused image GC takes first.
    pub(crate) fn touch(&self, id: &str) {
        if let Some(i) = lock(&self.inner.meta).images.get_mut(id) {
            i.last_used = now_secs();
        }
    }

    pub(crate) fn pin(&self, keys: impl IntoIterator<Item = String>) -> PinGuard {
        let keys: Vec<String> = keys.into_iter().collect();
        let mut pins = lock(&self.inner.pins);
        for k in &keys {
            *pins.entry(k.clone()).or_default() += 1;
        }
        PinGuard { inner: self.inner.clone(), keys }
    }

    fn meta_path(&self) -> PathBuf {
        self.inner.root.join("images.json")
    }

    fn read_meta(&self) -> MutexGuard<'_, Meta> {
        let mut meta = lock(&self.inner.meta);
        if let Err(e) = self.reload(&mut meta) {
            tracing::warn!(error = %e, "re-reading images.json");
        }
        meta
    }

    /// Re-reads images.json when another process changed it.
    fn reload(&self, meta: &mut Meta) -> Result<(), ImageError> {
        let path = self.meta_path();
        let stamp = match fs::metadata(&path) {
            Ok(m) => Some((m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128, m.len(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).ctx(|| format!("stat {}", path.display())),
        };
        if stamp == meta.stamp {
            return Ok(());
        }
        let mut images = BTreeMap::new();
        if stamp.is_some() {
            let bytes = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
            let file: MetaFile = serde_json::from_slice(&bytes).map_err(json_err(path.display().to_string()))?;
            for mut i in file.images {
                // Keep newer in-memory use times (touch() does not write the file).
                if let Some(old) = meta.images.get(&i.id) {
                    i.last_used = i.last_used.max(old.last_used);
                }
                images.insert(i.id.clone(), i);
            }
        }
        meta.images = images;
        meta.stamp = stamp;
        Ok(())
    }

    /// Read-modify-write of the records under the process lock and an flock (a CLI import may
    /// run beside the agent).
    fn update<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, ImageInfo>) -> Result<R, ImageError>,
    ) -> Result<R, ImageError> {
        let mut meta = lock(&self.inner.meta);
        let lock_path = self.inner.root.join("images.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("opening {}", lock_path.display()))?;
        let _flock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::Io {
            context: format!("locking {}", lock_path.display()),
            source: e.into(),
        })?;
        self.reload(&mut meta)?;
        let mut images = meta.images.clone();
        let r = f(&mut images)?;
        let file = MetaFile { images: images.values().cloned().collect() };
        let bytes = serde_json::to_vec_pretty(&file).map_err(json_err("images.json"))?;
        let path = self.meta_path();
        atomic_write(&path, &bytes).ctx(|| format!("writing {}", path.display()))?;
        meta.images = images;
        meta.stamp = None;
        // Take our own write's stamp so the next read does not parse it again.
        self.reload(&mut meta)?;
        Ok(r)
    }

    // ---- GC ----

    /// Removes layers and blobs no image references, unless pinned by a running operation or
    /// read by a mounted overlay. Returns (layers, blobs) removed.
    pub(crate) fn prune(&self) -> Result<(usize, usize), ImageError> {
        // Holding the pins lock across the scan: an operation that records its image after the
        // snapshot below cannot unpin before the scan ends.
        let pins = lock(&self.inner.pins);
        let images: Vec<ImageInfo> = self.read_meta().images.values().cloned().collect();
        let mut blobs: HashSet<String> = HashSet::new();
        let mut chains: HashSet<String> = HashSet::new();
        for i in &images {
            blobs.insert(i.id.clone());
            blobs.insert(i.manifest_digest.clone());
            blobs.extend(i.index_digest.clone());
            for l in &i.layers {
                blobs.insert(l.digest.clone());
                chains.insert(l.chain_id.clone());
            }
        }
        let mounted = mounted_lower_dirs();
        let mut layers_removed = 0;
        let layers_dir = self.layers_dir();
        for name in read_dir_names(&layers_dir) {
            if name == "empty" || name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let dir = layers_dir.join(&name);
            let meta_path = dir.with_extension("json");
            let chain = fs::read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<LayerMeta>(&b).ok())
                .map(|m| m.chain_id);
            let keep =
                chain.as_ref().is_some_and(|c| chains.contains(c) || pins.contains_key(c)) || mounted.contains(&dir);
            if !keep {
                fs::remove_dir_all(&dir).ctx(|| format!("removing layer {}", dir.display()))?;
                let _ = fs::remove_file(&meta_path);
                layers_removed += 1;
            }
        }
        // Metadata of layers whose directory is gone (GC interrupted, or failed unpack).
        for name in read_dir_names(&layers_dir) {
            if let Some(stem) = name.strip_suffix(".json") {
                if !layers_dir.join(stem).exists() {
                    let _ = fs::remove_file(layers_dir.join(&name));
                }
            }
        }
        let mut blobs_removed = 0;
        let blob_dir = self.inner.root.join("blobs/sha256");
        for name in read_dir_names(&blob_dir) {
            let digest = format!("sha256:{name}");
            if !blobs.contains(&digest) && !pins.contains_key(&digest) {
                fs::remove_file(blob_dir.join(&name)).ctx(|| format!("removing blob {digest}"))?;
                blobs_removed += 1;
            }
        }
        drop(pins);
        if layers_removed + blobs_removed > 0 {
            tracing::info!(layers_removed, blobs_removed, "pruned unreferenced content");
        }
        metrics::STORE_BYTES.set(self.store_bytes() as i64);
        Ok((layers_removed, blobs_removed))
    }

    /// Removes what crashed writers left in `tmp/`. Another process may share the store (the
    /// agent and `kubus image import`), so only entries untouched for an hour count as left over.
    fn clean_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.inner.root.join("tmp");
        for name in read_dir_names(&tmp) {
            let p = tmp.join(&name);
            let Ok(meta) = fs::metadata(&p) else { continue };
            let age = meta.modified().ok().and_then(|t| t.elapsed().ok());
            if age.is_none_or(|a| a < std::time::Duration::from_secs(3600)) {
                continue;
            }
            let r = if meta.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            r.ctx(|| format!("removing leftover {}", p.display()))?;
        }
        Ok(())
    }
}

/// Whether `key` (id, digest, name, or a reference to normalise) denotes `image`.
fn matches_key(image: &ImageInfo, key: &str) -> bool {
    if image.id == key
        || image.manifest_digest == key
        || image.names.iter().any(|n| n == key)
        || image.repo_digests.iter().any(|d| d == key)
    {
        return true;
    }
    find(&BTreeMap::from([(image.id.clone(), image.clone())]), key).is_some()
}

/// Looks an image up by id, tagged name or `repo@digest`.
fn find<'a>(images: &'a BTreeMap<String, ImageInfo>, key: &str) -> Option<&'a ImageInfo> {
    if is_image_id(key) {
        return images.get(key);
    }
    let r = reference::parse(key).ok()?;
    if let Some(name) = reference::digest_name(&r) {
        let digest = r.digest().unwrap_or_default();
        return images
            .values()
            .find(|i| i.repo_digests.contains(&name) || i.manifest_digest == digest && same_repo(i, &r));
    }
    let name = reference::tagged_name(&r)?;
    images.values().find(|i| i.names.contains(&name))
}

fn same_repo(image: &ImageInfo, r: &oci_client::Reference) -> bool {
    let repo = reference::repository_of(r);
    image
        .names
        .iter()
        .chain(&image.repo_digests)
        .any(|n| n.starts_with(&repo) && matches!(n.as_bytes().get(repo.len()), Some(b':' | b'@')))
}

pub(crate) fn read_dir_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    names
}

/// Lower directories of the overlay mounts visible to this process.
fn mounted_lower_dirs() -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else { return out };
    for line in text.lines() {
        let Some((_, post)) = line.split_once(" - ") else { continue };
        let mut f = post.split(' ');
        if f.next() != Some("overlay") {
            continue;
        }
        let opts = f.nth(1).unwrap_or_default();
        for opt in opts.split(',') {
            if let Some(lower) = opt.strip_prefix("lowerdir=") {
                out.extend(lower.split(':').map(|p| PathBuf::from(crate::overlay::unescape_mountinfo(p))));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_locks_share_per_key_and_forget_unused() {
        let locks: KeyedLocks<Mutex<()>> = KeyedLocks::new();
        let a = locks.get("a");
        let a2 = locks.get("a");
        assert!(Arc::ptr_eq(&a, &a2));
        let b = locks.get("b");
        assert!(!Arc::ptr_eq(&a, &b));
        drop((a, a2));
        let a3 = locks.get("a");
        assert_eq!(Arc::strong_count(&a3), 1);
    }
}
