//! Helpers for the image store's tests: unique names, temp dirs that unmount what is below
//! them, a real registry (Debian's docker-registry), skopeo, and images built in the test.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

pub fn token() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

/// A directory named with a random token; on drop, everything mounted below it is unmounted
/// (so a failed assertion cannot leave overlays behind) and the tree removed.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!("kubus-image-{what}-{}", token()));
        fs::create_dir_all(&p).unwrap();
        Self(p.canonicalize().unwrap())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        for mp in mounts_below(&self.0).into_iter().rev() {
            let _ = nix::mount::umount2(mp.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Mount points below `dir` in this process's mount namespace.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = format!("{}/", dir.display());
    text.lines().filter_map(|l| l.split(' ').nth(4)).filter(|mp| mp.starts_with(&prefix)).map(PathBuf::from).collect()
}

/// Unmounts a container's rootfs on drop.
pub struct RootfsGuard(pub PathBuf);

impl Drop for RootfsGuard {
    fn drop(&mut self) {
        let _ = kubus_image::ImageStore::unmount_rootfs(&self.0);
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo").args(["--insecure-policy"]).args(args))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's docker-registry on a free loopback port with its own storage; killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Self {
        let dir = TempDir::new("registry");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed");
        let reg = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                if resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200") {
                    return reg;
                }
            }
            assert!(Instant::now() < deadline, "registry on port {port} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:DIR:TAG docker://HOST/REPO`, optionally as docker v2s2 or with all
    /// manifests of an index.
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str, extra: &[&str]) {
        let src = format!("oci:{}:{tag}", layout.display());
        let dst = format!("docker://{}/{repo_tag}", self.host());
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend([src.as_str(), dst.as_str()]);
        skopeo(&args);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Tar entries for test layers.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
}

pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::File(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Writes an image of gzipped `layers` into the OCI layout `dir` under `tag`; returns
/// (manifest digest, config digest).
pub fn write_oci_image(dir: &Path, tag: &str, layers: &[Vec<u8>], cmd: &[&str]) -> (String, String) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |b: &[u8]| -> String {
        let d = sha256(b);
        fs::write(blobs.join(&d[7..]), b).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(sha256(l));
        let gz = gzip(l);
        descs.push(
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&gz), "size": gz.len()}),
        );
    }
    let config = serde_json::to_vec(&json!({
        "architecture": go_arch(), "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/data"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    add_to_index(dir, tag, "application/vnd.oci.image.manifest.v1+json", &manifest_digest, manifest.len());
    (manifest_digest, config_digest)
}

/// Adds (or replaces) a tagged entry in the layout's index.json.
pub fn add_to_index(dir: &Path, tag: &str, media_type: &str, digest: &str, size: usize) {
    let path = dir.join("index.json");
    let mut index: serde_json::Value = fs::read(&path)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_else(|_| json!({"schemaVersion": 2, "manifests": []}));
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    manifests.push(json!({
        "mediaType": media_type, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The two-layer image whose second layer deletes `data/gone` and makes `opq/` opaque.
pub fn whiteout_layers() -> Vec<Vec<u8>> {
    let lower = layer_tar(&[
        Entry::Dir("data/"),
        Entry::File("data/keep", b"keep"),
        Entry::File("data/gone", b"gone"),
        Entry::Dir("opq/"),
        Entry::File("opq/old", b"old"),
    ]);
    let upper = layer_tar(&[
        Entry::File("data/.wh.gone", b""),
        Entry::Dir("opq/"),
        Entry::File("opq/.wh..wh..opq", b""),
        Entry::File("opq/new", b"new"),
    ]);
    vec![lower, upper]
}

/// Sum of the samples of `name` whose labels contain `label` (`k="v"`), from the text exposition.
pub fn metric_value(name: &str, label: Option<&str>) -> f64 {
    let text = prometheus::TextEncoder::new().encode_to_string(&prometheus::gather()).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter(|l| label.is_none_or(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
