//! The built-in `busybox` image, made from the host's static busybox so a node without
//! registry access can still run pods. Byte-for-byte deterministic: same binary, same digest.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use flate2::write::GzEncoder;
use serde_json::json;

use crate::digest::digest_of;
use crate::{ImageError, ImageInfo, ImageStore};

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(String),
}

impl ImageStore {
    /// Builds the busybox image from `busybox` (Debian's busybox-static: `/bin/busybox`) and
    /// tags it `docker.io/library/busybox:latest` and `:<major.minor>` of the binary (1.35).
    pub fn install_busybox(&self, busybox: &Path) -> Result<ImageInfo, ImageError> {
        let span = tracing::info_span!("install_busybox", binary = %busybox.display());
        let _e = span.enter();
        let version = version(busybox)?;
        let tar = layer_tar(busybox)?;
        let diff_id = digest_of(&tar);
        let layer = gzip(&tar)?;
        let layer_digest = digest_of(&layer);
        let config = json!({
            "architecture": oci_client::config::Architecture::default().to_string(),
            "os": "linux",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": format!("kubus: busybox {version} from {}", busybox.display())}],
        });
        let config = serde_json::to_vec(&config).map_err(crate::json_err("busybox config"))?;
        let config_digest = digest_of(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
            "config": {"mediaType": oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE, "digest": layer_digest, "size": layer.len()}],
        });
        let manifest = serde_json::to_vec(&manifest).map_err(crate::json_err("busybox manifest"))?;
        let manifest_digest = digest_of(&manifest);
        let _pins = self.pin([layer_digest.clone(), config_digest.clone(), manifest_digest.clone()]);
        self.write_blob(&layer_digest, &layer)?;
        self.write_blob(&config_digest, &config)?;
        self.write_blob(&manifest_digest, &manifest)?;
        let names =
            vec!["docker.io/library/busybox:latest".to_string(), format!("docker.io/library/busybox:{version}")];
        let info = self.commit_manifest(&manifest_digest, &names, &[])?;
        tracing::info!(id = %info.id, %version, "built-in busybox installed");
        Ok(info)
    }
}

/// `major.minor` from the banner `BusyBox v1.35.0 (Debian ...) multi-call binary.`
fn version(busybox: &Path) -> Result<String, ImageError> {
    let out = Command::new(busybox)
        .arg("--help")
        .output()
        .map_err(|e| ImageError::Busybox(format!("running {}: {e}", busybox.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v').filter(|v| v.starts_with(|c: char| c.is_ascii_digit())))
        .ok_or_else(|| ImageError::Busybox(format!("no version in the banner of {}", busybox.display())))?;
    let mut parts = v.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => Ok(format!("{major}.{minor}")),
        _ => Err(ImageError::Busybox(format!("unexpected version {v:?}"))),
    }
}

/// The layer tar: sorted, owned by root, mtime 0.
fn layer_tar(busybox: &Path) -> Result<Vec<u8>, ImageError> {
    let binary =
        std::fs::read(busybox).map_err(|e| ImageError::Busybox(format!("reading {}: {e}", busybox.display())))?;
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| ImageError::Busybox(format!("running {} --list-full: {e}", busybox.display())))?;
    if !out.status.success() {
        return Err(ImageError::Busybox(format!("{} --list-full: {}", busybox.display(), out.status)));
    }
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
    ] {
        tree.insert(dir.into(), Node::Dir(mode));
    }
    tree.insert("bin/busybox".into(), Node::File(0o755, binary));
    tree.insert(
        "etc/passwd".into(),
        Node::File(0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n".to_vec()),
    );
    tree.insert("etc/group".into(), Node::File(0o644, b"root:x:0:\nnobody:x:65534:\n".to_vec()));
    for applet in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        // Only applets in the directories above (linuxrc is an initrd entry point).
        let Some((dir, _)) = applet.rsplit_once('/') else { continue };
        if matches!(tree.get(dir), Some(Node::Dir(_))) && !tree.contains_key(applet) && !applet.contains("..") {
            tree.insert(applet.to_string(), Node::Symlink("/bin/busybox".into()));
        }
    }
    if !tree.contains_key("bin/sh") {
        return Err(ImageError::Busybox("busybox has no sh applet".into()));
    }
    let mut builder = tar::Builder::new(Vec::new());
    let err = |e: std::io::Error| ImageError::Busybox(format!("building the layer: {e}"));
    for (path, node) in &tree {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match node {
            Node::Dir(mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                builder.append_data(&mut h, format!("{path}/"), std::io::empty()).map_err(err)?;
            }
            Node::File(mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, &data[..]).map_err(err)?;
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                builder.append_link(&mut h, path, target).map_err(err)?;
            }
        }
    }
    builder.into_inner().map_err(err)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, ImageError> {
    use std::io::Write;
    // GzEncoder writes mtime 0 and no file name: the output depends on the input only.
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).map_err(|e| ImageError::Busybox(format!("gzip: {e}")))?;
    enc.finish().map_err(|e| ImageError::Busybox(format!("gzip: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_layer_is_deterministic_and_sorted() {
        let bb = Path::new("/bin/busybox");
        assert!(bb.exists(), "busybox-static is installed on Kubus nodes");
        let a = layer_tar(bb).unwrap();
        let b = layer_tar(bb).unwrap();
        assert_eq!(digest_of(&a), digest_of(&b));
        assert_eq!(digest_of(&gzip(&a).unwrap()), digest_of(&gzip(&b).unwrap()));
        let mut archive = tar::Archive::new(&a[..]);
        let mut paths = Vec::new();
        let mut sh = None;
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 0));
            let p = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            if p == "bin/sh" {
                sh = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            }
            if p == "tmp" {
                assert_eq!(h.mode().unwrap(), 0o1777);
            }
            paths.push(p);
        }
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(sh.as_deref(), Some("/bin/busybox"));
        assert!(paths.len() > 200, "one symlink per applet: {}", paths.len());
        assert_eq!(version(bb).unwrap(), "1.35");
    }
}
