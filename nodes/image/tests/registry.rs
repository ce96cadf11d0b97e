//! Pulls from a real registry (Debian's docker-registry on loopback, images pushed with skopeo).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use kubus_image::{ImageStore, PullPolicy, Registries};

fn store(dir: &TempDir, registries: Registries) -> ImageStore {
    ImageStore::open(dir.path().join("images"), registries).unwrap()
}

/// Busybox (built by the store) and the two-layer whiteout image in one OCI layout, tags
/// `bb` and `wh`.
fn layout(t: &TempDir) -> (std::path::PathBuf, kubus_image::ImageInfo) {
    let s = store(t, Registries::default());
    let bb = s.install_busybox(Path::new("/bin/busybox")).unwrap();
    let dir = t.path().join("layout");
    s.export_oci_layout("busybox", &dir).unwrap();
    let index = fs::read_to_string(dir.join("index.json")).unwrap();
    fs::write(
        dir.join("index.json"),
        index.replace(
            "\"org.opencontainers.image.ref.name\":\"latest\"",
            "\"org.opencontainers.image.ref.name\":\"bb\"",
        ),
    )
    .unwrap();
    write_oci_image(&dir, "wh", &whiteout_layers(), &["sh"]);
    (dir, bb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_name_and_digest_oci_and_docker_v2() {
    let reg = Registry::start();
    let t = TempDir::new("pull");
    let (layout, bb) = layout(&t);
    reg.push(&layout, "bb", "kubus/busybox:1", &[]);
    reg.push(&layout, "bb", "kubus/busybox-v2:1", &["--format", "v2s2"]);

    let d = TempDir::new("pull-dst");
    let s = store(&d, Registries::default());
    let successes = metric_value("kubus_image_pulls_total", Some("result=\"success\""));
    let name = format!("{}/kubus/busybox:1", reg.host());
    let p = s.ensure(&name, PullPolicy::IfNotPresent).await.unwrap();
    assert!(p.pulled);
    assert_eq!(p.image.id, bb.id);
    assert_eq!(p.image.names, std::slice::from_ref(&name));
    assert_eq!(p.image.config.cmd, ["sh"]);
    assert_eq!(p.downloaded_bytes, bb.size, "config and layer downloaded once");
    let repo_digest = format!("{}/kubus/busybox@{}", reg.host(), p.image.manifest_digest);
    assert_eq!(p.image.repo_digests, std::slice::from_ref(&repo_digest));
    assert!(metric_value("kubus_image_pulls_total", Some("result=\"success\"")) > successes);
    assert!(metric_value("kubus_image_pull_seconds_count", None) >= 1.0);

    // IfNotPresent: served locally.
    let again = s.ensure(&name, PullPolicy::IfNotPresent).await.unwrap();
    assert!(!again.pulled);
    assert_eq!(again.downloaded_bytes, 0);

    // Docker v2 schema 2 manifest: other manifest digest, same config and layer bytes.
    let v2 = s.ensure(&format!("{}/kubus/busybox-v2:1", reg.host()), PullPolicy::IfNotPresent).await.unwrap();
    assert!(v2.pulled);
    assert_eq!(v2.image.id, bb.id);
    assert_ne!(v2.image.manifest_digest, p.image.manifest_digest);
    assert_eq!(v2.downloaded_bytes, 0, "blobs were already present");
    let img = s.get(&name).unwrap();
    assert!(img.names.contains(&format!("{}/kubus/busybox-v2:1", reg.host())));
    // The image recorded from the docker v2 manifest exports as a valid OCI layout.
    let out = d.path().join("export");
    s.export_oci_layout(&format!("{}/kubus/busybox-v2:1", reg.host()), &out).unwrap();
    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &format!("oci:{}:1", out.display())])).unwrap();
    assert_eq!(inspected["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(inspected["config"]["digest"], bb.id.as_str());

    // By digest, into a fresh store; the rootfs works.
    let d2 = TempDir::new("pull-digest");
    let s2 = store(&d2, Registries::default());
    let by_digest = s2.ensure(&repo_digest, PullPolicy::IfNotPresent).await.unwrap();
    assert!(by_digest.pulled);
    assert_eq!(by_digest.image.id, bb.id);
    assert!(by_digest.image.names.is_empty(), "a digest is no tag");
    assert_eq!(s2.get(&repo_digest).unwrap().id, bb.id);
    assert!(!s2.ensure(&repo_digest, PullPolicy::IfNotPresent).await.unwrap().pulled);
    let cdir = d2.path().join("c");
    let _g = RootfsGuard(cdir.clone());
    let rootfs = s2.mount_rootfs(&by_digest.image, &cdir).unwrap();
    assert_eq!(run(std::process::Command::new("chroot").arg(&rootfs).args(["/bin/sh", "-c", "echo ok"])).trim(), "ok");

    // A tag that does not exist fails with the registry's answer.
    let missing = s2.ensure(&format!("{}/kubus/busybox:nope", reg.host()), PullPolicy::IfNotPresent).await.unwrap_err();
    assert_eq!(missing.reason(), "ErrImagePull");
    assert!(missing.to_string().contains("kubus/busybox:nope"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_for_docker_io_with_fallback_and_always_re_resolves() {
    let reg = Registry::start();
    let t = TempDir::new("mirror");
    let (layout, bb) = layout(&t);
    reg.push(&layout, "bb", "library/foo:1", &[]);
    // The first endpoint is dead: the pull falls through to the next one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = format!(
        "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:{dead}\"\n      - \"http://{}\"\n",
        reg.host()
    );
    let regfile = t.path().join("registries.yaml");
    fs::write(&regfile, yaml).unwrap();
    let registries = Registries::load(&regfile).unwrap();

    let d = TempDir::new("mirror-dst");
    let s = store(&d, registries);
    let p = s.ensure("foo:1", PullPolicy::IfNotPresent).await.unwrap();
    assert!(p.pulled);
    assert_eq!(p.image.id, bb.id);
    assert_eq!(p.image.names, ["docker.io/library/foo:1"], "recorded under the upstream name");
    assert!(p.image.repo_digests[0].starts_with("docker.io/library/foo@sha256:"));

    // The tag moves to another image at the registry.
    reg.push(&layout, "wh", "library/foo:1", &[]);
    let kept = s.ensure("docker.io/library/foo:1", PullPolicy::IfNotPresent).await.unwrap();
    assert!(!kept.pulled);
    assert_eq!(kept.image.id, bb.id, "IfNotPresent does not look again");
    let moved = s.ensure("docker.io/library/foo:1", PullPolicy::Always).await.unwrap();
    assert!(moved.pulled);
    assert_ne!(moved.image.id, bb.id, "Always re-resolves the tag");
    assert_eq!(moved.image.layers().len(), 2);
    assert!(moved.downloaded_bytes > 0);
    let again = s.ensure("docker.io/library/foo:1", PullPolicy::Always).await.unwrap();
    assert!(again.pulled);
    assert_eq!(again.image.id, moved.image.id);
    assert_eq!(again.downloaded_bytes, 0, "nothing new to fetch");
    // The old image lost its name; GC may take it.
    assert!(s.get(&bb.id).unwrap().names.is_empty());
    assert_eq!(s.list().len(), 2);
    let cdir = d.path().join("c");
    let _g = RootfsGuard(cdir.clone());
    let rootfs = s.mount_rootfs(&moved.image, &cdir).unwrap();
    assert!(rootfs.join("opq/new").exists() && !rootfs.join("opq/old").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_resolves_to_this_platform_and_concurrent_pulls_pull_once() {
    let reg = Registry::start();
    let t = TempDir::new("index");
    let (layout, bb) = layout(&t);
    // An index with this platform's busybox and an s390x entry (the whiteout image).
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone()
    };
    let (bbm, whm) = (entry("bb"), entry("wh"));
    let multi = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": whm["mediaType"], "digest": whm["digest"], "size": whm["size"], "platform": {"architecture": "s390x", "os": "linux"}},
            {"mediaType": bbm["mediaType"], "digest": bbm["digest"], "size": bbm["size"], "platform": {"architecture": go_arch(), "os": "linux"}},
        ],
    }))
    .unwrap();
    let multi_digest = sha256(&multi);
    fs::write(layout.join("blobs/sha256").join(&multi_digest[7..]), &multi).unwrap();
    add_to_index(&layout, "multi", "application/vnd.oci.image.index.v1+json", &multi_digest, multi.len());
    reg.push(&layout, "multi", "kubus/multi:1", &["--all"]);

    let d = TempDir::new("index-dst");
    let s = store(&d, Registries::default());
    let name = format!("{}/kubus/multi:1", reg.host());
    let pulls = (0..4).map(|_| {
        let s = s.clone();
        let name = name.clone();
        tokio::spawn(async move { s.ensure(&name, PullPolicy::IfNotPresent).await.unwrap() })
    });
    let results: Vec<_> = futures_join(pulls).await;
    assert_eq!(results.iter().filter(|p| p.pulled).count(), 1, "one pull, three served from the store");
    assert_eq!(results.iter().map(|p| p.downloaded_bytes).sum::<u64>(), bb.size);
    let img = &results[0].image;
    assert_eq!(img.id, bb.id, "this platform's manifest was chosen");
    assert_eq!(img.repo_digests, [format!("{}/kubus/multi@{multi_digest}", reg.host())], "pulled by the index digest");
    assert_eq!(s.get(&format!("{}/kubus/multi@{multi_digest}", reg.host())).unwrap().id, bb.id);
    assert_eq!(
        fs::read_dir(d.path().join("images/blobs/sha256")).unwrap().count(),
        4,
        "index, manifest, config, layer"
    );
}

async fn futures_join<T: Send + 'static>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}
