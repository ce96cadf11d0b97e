//! Image archives: import of OCI archives (`oci-layout`, `index.json`, `blobs/sha256/`) and
//! docker-save tarballs (`manifest.json`), export as an OCI image layout directory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_client::client::current_platform_resolver;
use oci_client::manifest::{
    ImageIndexEntry, OciImageIndex, OciManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use serde::Deserialize;
use serde_json::json;

use crate::config::ConfigFile;
use crate::digest::{digest_hex, digest_of, HashingWriter};
use crate::pull::{layers_of, parse_manifest};
use crate::reference::{self, tagged_name};
use crate::store::PinGuard;
use crate::unpack::{open_layer, sniff, Compression};
use crate::{json_err, ImageError, ImageInfo, ImageStore, IoContext};

const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// index.json, manifest.json and friends are read into memory; anything larger is not metadata.
const MAX_METADATA: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What one pass over an archive found.
struct Scanned {
    /// Archive path -> stored blob digest.
    files: HashMap<String, String>,
    /// Archive path -> path it links to (docker save links repeated layers).
    links: HashMap<String, String>,
    metadata: HashMap<String, Vec<u8>>,
    _pins: Vec<PinGuard>,
}

impl Scanned {
    fn digest(&self, path: &str) -> Result<String, ImageError> {
        let mut p =
            clean(path).ok_or_else(|| ImageError::Invalid(format!("archive path {path:?} escapes the archive")))?;
        for _ in 0..16 {
            if let Some(d) = self.files.get(&p) {
                return Ok(d.clone());
            }
            match self.links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(ImageError::Invalid(format!("archive has no file {path:?}")))
    }
}

impl ImageStore {
    /// Imports every image of an OCI archive or a docker-save tarball (plain, gzip or zstd);
    /// returns the names imported (an image without a name is listed by its id).
    pub fn import(&self, file: &Path) -> Result<Vec<String>, ImageError> {
        let span = tracing::info_span!("import_images", file = %file.display());
        let _e = span.enter();
        let scanned = self.scan(file)?;
        let names = if scanned.metadata.contains_key("index.json") {
            self.import_oci(&scanned)?
        } else if scanned.metadata.contains_key("manifest.json") {
            self.import_docker(&scanned)?
        } else {
            return Err(ImageError::Invalid(format!(
                "{}: neither an OCI archive nor a docker-save tarball",
                file.display()
            )));
        };
        drop(scanned);
        // Files of the archive that are no image's content (docker's VERSION, json, ...).
        self.prune()?;
        tracing::info!(?names, "images imported");
        Ok(names)
    }

    /// Streams the archive once: every regular file goes to the blob store under its sha256.
    fn scan(&self, file: &Path) -> Result<Scanned, ImageError> {
        let reader = open_layer(file).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let mut archive = tar::Archive::new(reader);
        let mut out =
            Scanned { files: HashMap::new(), links: HashMap::new(), metadata: HashMap::new(), _pins: Vec::new() };
        let ctx = || format!("reading {}", file.display());
        for entry in archive.entries().ctx(ctx)? {
            let mut entry = entry.ctx(ctx)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = clean(&raw) else {
                return Err(ImageError::Invalid(format!("archive path {raw:?} escapes the archive")));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target =
                        entry.link_name().ctx(ctx)?.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let base = Path::new(&path).parent().unwrap_or(Path::new(""));
                        clean(&base.join(&target).to_string_lossy())
                    } else {
                        clean(&target)
                    };
                    if let Some(r) = resolved {
                        out.links.insert(path, r);
                    }
                    continue;
                }
                _ => continue,
            }
            if matches!(path.as_str(), "index.json" | "oci-layout" | "manifest.json" | "repositories") {
                let mut buf = Vec::new();
                (&mut entry).take(MAX_METADATA).read_to_end(&mut buf).ctx(ctx)?;
                out.metadata.insert(path, buf);
                continue;
            }
            let tmp = self.tmp_path("import");
            let stored = (|| {
                let mut w = HashingWriter::new(File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?);
                io::copy(&mut entry, &mut w).ctx(ctx)?;
                let (f, digest, _) = w.finish();
                f.sync_all().ctx(|| "syncing imported blob".into())?;
                if let Some(claimed) = path.strip_prefix("blobs/sha256/") {
                    if format!("sha256:{claimed}") != digest {
                        return Err(ImageError::Digest {
                            what: path.clone(),
                            expected: format!("sha256:{claimed}"),
                            actual: digest,
                        });
                    }
                }
                out._pins.push(self.pin([digest.clone()]));
                let dest = self.blob_path(&digest)?;
                if dest.exists() {
                    fs::remove_file(&tmp).ctx(|| "removing a duplicate blob".into())?;
                } else {
                    fs::rename(&tmp, &dest).ctx(|| format!("storing blob {digest}"))?;
                }
                Ok(digest)
            })();
            match stored {
                Ok(d) => {
                    out.files.insert(path, d);
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn import_oci(&self, s: &Scanned) -> Result<Vec<String>, ImageError> {
        let index: OciImageIndex = serde_json::from_slice(&s.metadata["index.json"]).map_err(json_err("index.json"))?;
        let mut names = Vec::new();
        for entry in &index.manifests {
            let name = entry_name(entry);
            let manifest_digest = match entry.media_type.as_str() {
                OCI_IMAGE_INDEX_MEDIA_TYPE | oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE => {
                    let nested: OciImageIndex =
                        serde_json::from_slice(&self.read_blob(&entry.digest)?).map_err(json_err("nested index"))?;
                    current_platform_resolver(&nested.manifests).ok_or_else(|| {
                        ImageError::Invalid(format!("no manifest for this platform in {}", entry.digest))
                    })?
                }
                _ => entry.digest.clone(),
            };
            let info = self.commit_manifest(&manifest_digest, name.as_slice(), &[])?;
            names.push(name.into_iter().next().unwrap_or(info.id));
        }
        Ok(names)
    }

    fn import_docker(&self, s: &Scanned) -> Result<Vec<String>, ImageError> {
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(&s.metadata["manifest.json"]).map_err(json_err("manifest.json"))?;
        let mut names = Vec::new();
        for e in entries {
            let config_digest = s.digest(&e.config)?;
            let layers = e.layers.iter().map(|l| s.digest(l)).collect::<Result<Vec<_>, _>>()?;
            let manifest = self.oci_manifest(&config_digest, &layers)?;
            let manifest_digest = digest_of(&manifest);
            let _pin = self.pin([manifest_digest.clone()]);
            self.write_blob(&manifest_digest, &manifest)?;
            let tags = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| reference::normalize(t))
                .collect::<Result<Vec<_>, _>>()?;
            let info = self.commit_manifest(&manifest_digest, &tags, &[])?;
            if tags.is_empty() {
                names.push(info.id);
            }
            names.extend(tags);
        }
        Ok(names)
    }

    /// An OCI manifest for stored config and layer blobs.
    fn oci_manifest(&self, config_digest: &str, layers: &[String]) -> Result<Vec<u8>, ImageError> {
        let config_size = fs::metadata(self.blob_path(config_digest)?).ctx(|| format!("blob {config_digest}"))?.len();
        let mut descs = Vec::new();
        for l in layers {
            let p = self.blob_path(l)?;
            let size = fs::metadata(&p).ctx(|| format!("blob {l}"))?.len();
            let mut r = BufReader::new(File::open(&p).ctx(|| format!("blob {l}"))?);
            let media_type = match sniff(r.fill_buf().ctx(|| format!("blob {l}"))?) {
                Compression::Gzip => IMAGE_LAYER_GZIP_MEDIA_TYPE,
                Compression::Zstd => ZSTD_LAYER,
                Compression::None => IMAGE_LAYER_MEDIA_TYPE,
            };
            descs.push(json!({"mediaType": media_type, "digest": l, "size": size}));
        }
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {"mediaType": IMAGE_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
            "layers": descs,
        }))
        .map_err(json_err("manifest"))
    }

    /// Records the image of a stored manifest whose config and layer blobs are stored too,
    /// unpacking its layers.
    pub(crate) fn commit_manifest(
        &self,
        manifest_digest: &str,
        names: &[String],
        repo_digests: &[String],
    ) -> Result<ImageInfo, ImageError> {
        let raw = self.read_blob(manifest_digest)?;
        let manifest = match parse_manifest(&raw)? {
            OciManifest::Image(m) => m,
            OciManifest::ImageIndex(_) => {
                return Err(ImageError::Invalid(format!("{manifest_digest} is an index, not a manifest")))
            }
        };
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config = ConfigFile::parse(&config_bytes)?;
        let layers = layers_of(&manifest, &config)?;
        for l in &layers {
            if !self.has_blob(&l.digest) {
                return Err(ImageError::Invalid(format!("layer blob {} is missing", l.digest)));
            }
        }
        let _pins = self.pin(layers.iter().map(|l| l.chain_id.clone()));
        self.ensure_layers(&layers)?;
        let info = ImageInfo {
            id: manifest.config.digest.clone(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            size: config_bytes.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>(),
            config: config.image_config(),
            manifest_digest: manifest_digest.to_string(),
            layers,
            index_digest: None,
            last_used: 0,
        };
        self.record(info, names, repo_digests)
    }

    /// Writes `image` into the OCI image layout `dir` (created or extended), tagged in
    /// index.json with the tag `image` names (or its first name's), as `skopeo copy oci:DIR:TAG`
    /// and containerd read it.
    pub fn export_oci_layout(&self, image: &str, dir: &Path) -> Result<(), ImageError> {
        let info = self.get(image).ok_or_else(|| ImageError::NotFound(image.to_string()))?;
        let name = reference::parse(image)
            .ok()
            .and_then(|r| tagged_name(&r))
            .filter(|n| info.names.contains(n))
            .or_else(|| info.names.first().cloned());
        let tag = name
            .as_deref()
            .and_then(|n| reference::parse(n).ok())
            .and_then(|r| r.tag().map(String::from))
            .unwrap_or_else(|| "latest".into());
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).ctx(|| "writing oci-layout".into())?;
        let raw = self.read_blob(&info.manifest_digest)?;
        let is_oci = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(|m| m == OCI_IMAGE_MEDIA_TYPE))
            .unwrap_or(false);
        let manifest = if is_oci {
            raw
        } else {
            let layers: Vec<String> = info.layers().iter().map(|l| l.digest.clone()).collect();
            self.oci_manifest(&info.id, &layers)?
        };
        let manifest_digest = digest_of(&manifest);
        let copy = |digest: &str| -> Result<(), ImageError> {
            let hex = digest_hex(digest).ok_or_else(|| ImageError::Invalid(format!("digest {digest}")))?;
            let dest = blobs.join(hex);
            if !dest.exists() {
                fs::copy(self.blob_path(digest)?, &dest).ctx(|| format!("copying blob {digest}"))?;
            }
            Ok(())
        };
        copy(&info.id)?;
        for l in info.layers() {
            copy(&l.digest)?;
        }
        let hex = digest_hex(&manifest_digest).expect("digest_of gives sha256");
        fs::write(blobs.join(hex), &manifest).ctx(|| "writing manifest".into())?;

        let index_path = dir.join("index.json");
        let mut index: OciImageIndex = match fs::read(&index_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(json_err(index_path.display().to_string()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => OciImageIndex {
                schema_version: 2,
                media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.into()),
                manifests: vec![],
                artifact_type: None,
                annotations: None,
            },
            Err(e) => return Err(e).ctx(|| format!("reading {}", index_path.display())),
        };
        index.manifests.retain(|m| m.annotations.as_ref().and_then(|a| a.get(REF_ANNOTATION)) != Some(&tag));
        let mut annotations = BTreeMap::from([(REF_ANNOTATION.to_string(), tag)]);
        if let Some(n) = name {
            annotations.insert(NAME_ANNOTATION.to_string(), n);
        }
        index.manifests.push(ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest: manifest_digest,
            size: manifest.len() as i64,
            platform: None,
            annotations: Some(annotations),
            artifact_type: None,
        });
        let bytes = serde_json::to_vec(&index).map_err(json_err("index.json"))?;
        crate::digest::atomic_write(&index_path, &bytes).ctx(|| format!("writing {}", index_path.display()))
    }
}

/// The image name an index entry carries: containerd's full name, else the OCI ref name when it
/// is a full reference (a bare tag like `1.0` names no repository).
fn entry_name(entry: &ImageIndexEntry) -> Option<String> {
    let a = entry.annotations.as_ref()?;
    if let Some(n) = a.get(NAME_ANNOTATION) {
        return reference::normalize(n).ok();
    }
    let r = a.get(REF_ANNOTATION)?;
    if r.contains('/') || r.contains(':') {
        reference::normalize(r).ok()
    } else {
        None
    }
}

/// A relative archive path without `.`/`..`; None when it climbs out.
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in PathBuf::from(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_archive_paths() {
        assert_eq!(clean("./blobs/sha256/ab").as_deref(), Some("blobs/sha256/ab"));
        assert_eq!(clean("abc/../def/layer.tar").as_deref(), Some("def/layer.tar"));
        assert_eq!(clean("../x"), None);
    }
}
