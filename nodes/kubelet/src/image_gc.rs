//! The node's images outside of pods: the store opened with the built-in busybox and the
//! imports of `<data-dir>/images/import/`, and upstream's image garbage collection.

use crate::config::KubeletConfig;
use crate::host::ContainerRuntime;
use crate::{KubeletError, LABEL_IMAGE};
use kubus_image::ImageStore;
use std::collections::HashSet;

/// Opens the image store; builds the busybox image when missing and imports the image files
/// of the import dir.
pub fn open_store(config: &KubeletConfig) -> Result<ImageStore, KubeletError> {
    let registries = match &config.registries {
        Some(p) => kubus_image::Registries::load(p)?,
        None => kubus_image::Registries::default(),
    };
    let images = ImageStore::open(config.state_dir.join("images"), registries)?;
    if let Some(bb) = config.busybox.as_ref().filter(|p| p.exists()) {
        if images.get("busybox").is_none() {
            let img = images.install_busybox(bb)?;
            tracing::info!(id = %img.id, "built the busybox image from {}", bb.display());
        }
    }
    if let Some(dir) = &config.import_dir {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tar") {
                match images.import(&p) {
                    Ok(names) => tracing::info!(file = %p.display(), ?names, "imported images"),
                    Err(err) => tracing::warn!(file = %p.display(), error = %err, "image import failed"),
                }
            }
        }
    }
    Ok(images)
}

/// Upstream's image GC policy: above 85% disk use, unused images go (least recently used
/// first) until use is back under 80%.
pub async fn image_gc(images: &ImageStore, runtime: &dyn ContainerRuntime) {
    let Ok(fs) = nix::sys::statvfs::statvfs(images.root()) else { return };
    let capacity = fs.blocks() * fs.fragment_size();
    let used = capacity.saturating_sub(fs.blocks_available() * fs.fragment_size());
    if capacity == 0 || used * 100 < capacity * 85 {
        return;
    }
    let store = images.store_bytes();
    let high = store.saturating_sub(used.saturating_sub(capacity * 85 / 100));
    let low = store.saturating_sub(used.saturating_sub(capacity * 80 / 100));
    let in_use: HashSet<String> = runtime
        .list_labels()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, labels)| labels.get(LABEL_IMAGE).and_then(|n| images.get(n)).map(|img| img.id))
        .collect();
    match images.gc(&in_use, high, low) {
        Ok(r) => tracing::info!(
            removed = r.images_removed.len(),
            bytes_before = r.bytes_before,
            bytes_after = r.bytes_after,
            "image garbage collection"
        ),
        Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
    }
}
