//! Store tests without a registry (root): built-in busybox, overlay rootfs with whiteouts,
//! imports of OCI and docker-save archives, removal and GC.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;

use common::*;
use kubus_image::{ImageStore, PullPolicy, Registries};

fn store(dir: &TempDir) -> ImageStore {
    ImageStore::open(dir.path().join("images"), Registries::default()).unwrap()
}

/// Tars a directory (an OCI layout becomes an OCI archive).
fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

#[test]
fn busybox_is_deterministic_and_its_rootfs_runs_sh() {
    let (a, b) = (TempDir::new("bb-a"), TempDir::new("bb-b"));
    let (sa, sb) = (store(&a), store(&b));
    let ia = sa.install_busybox(Path::new("/bin/busybox")).unwrap();
    let ib = sb.install_busybox(Path::new("/bin/busybox")).unwrap();
    assert_eq!(ia.id, ib.id, "same binary, same image id");
    assert_eq!(ia.manifest_digest, ib.manifest_digest);
    assert_eq!(ia.names, ["docker.io/library/busybox:1.35", "docker.io/library/busybox:latest"]);
    assert_eq!(ia.config.cmd, ["sh"]);
    assert!(ia.config.env.iter().any(|e| e.starts_with("PATH=")));
    // Installing again changes nothing.
    assert_eq!(sa.install_busybox(Path::new("/bin/busybox")).unwrap().id, ia.id);
    assert_eq!(sa.list().len(), 1);
    assert_eq!(sa.get("busybox").unwrap().id, ia.id);
    assert_eq!(sa.get("busybox:1.35").unwrap().id, ia.id);
    assert_eq!(sa.get(&ia.id).unwrap().id, ia.id);

    let cdir = a.path().join("containers/c1");
    let _guard = RootfsGuard(cdir.clone());
    let rootfs = sa.mount_rootfs(&ia, &cdir).unwrap();
    assert_eq!(sa.mount_rootfs(&ia, &cdir).unwrap(), rootfs, "idempotent");
    assert_eq!(mounts_below(a.path()).len(), 1, "mounted once");
    let sh = fs::symlink_metadata(rootfs.join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink());
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!(fs::symlink_metadata(rootfs.join("tmp")).unwrap().permissions().mode_bits(), 0o1777);
    let out = run(Command::new("chroot").arg(&rootfs).args([
        "/bin/sh",
        "-c",
        "echo hello from $(id -un) > /tmp/x; cat /tmp/x",
    ]));
    assert_eq!(out.trim(), "hello from root");
    assert!(cdir.join("upper/tmp/x").exists(), "writes land in the container's upper dir");

    ImageStore::unmount_rootfs(&cdir).unwrap();
    assert!(mounts_below(a.path()).is_empty());
    assert!(!cdir.exists());
    ImageStore::unmount_rootfs(&cdir).unwrap();
}

trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for fs::Permissions {
    fn mode_bits(&self) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(self) & 0o7777
    }
}

#[test]
fn whiteouts_and_opaque_dirs_work_through_a_real_overlay() {
    let t = TempDir::new("wh");
    let s = store(&t);
    let layout = t.path().join("layout");
    let (manifest_digest, config_digest) = write_oci_image(&layout, "1", &whiteout_layers(), &["/bin/true"]);
    // A full name in the annotation, as containerd exports do.
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    fs::write(
        layout.join("index.json"),
        index.replace(
            "\"org.opencontainers.image.ref.name\":\"1\"",
            "\"org.opencontainers.image.ref.name\":\"1\",\"io.containerd.image.name\":\"example.com/wh:1\"",
        ),
    )
    .unwrap();
    let archive = t.path().join("wh.tar");
    tar_dir(&layout, &archive);
    assert_eq!(s.import(&archive).unwrap(), ["example.com/wh:1"]);
    let img = s.get("example.com/wh:1").unwrap();
    assert_eq!(img.id, config_digest);
    assert_eq!(img.manifest_digest, manifest_digest);
    assert_eq!(img.layers().len(), 2);
    assert_eq!(img.config.working_dir.as_deref(), Some("/data"));

    let cdir = t.path().join("c");
    let _guard = RootfsGuard(cdir.clone());
    let rootfs = s.mount_rootfs(&img, &cdir).unwrap();
    assert_eq!(fs::read(rootfs.join("data/keep")).unwrap(), b"keep");
    assert!(!rootfs.join("data/gone").exists(), "whiteout hides the lower file");
    assert!(!rootfs.join("opq/old").exists(), "opaque dir hides the lower dir's content");
    assert_eq!(fs::read(rootfs.join("opq/new")).unwrap(), b"new");
    let names: HashSet<String> =
        fs::read_dir(rootfs.join("data")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, HashSet::from(["keep".to_string()]));
    // Deleting a lower file in the container makes a whiteout in its own upper dir only.
    fs::remove_file(rootfs.join("data/keep")).unwrap();
    assert!(fs::symlink_metadata(cdir.join("upper/data/keep")).unwrap().file_type().is_char_device());
    let lower = img.layers()[0].chain_id.clone();
    let lower_dir = fs::read_dir(t.path().join("images/layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy() == lower[7..19])
        .unwrap();
    assert_eq!(fs::read(lower_dir.join("data/keep")).unwrap(), b"keep", "layers stay untouched");
}

#[test]
fn imports_oci_and_docker_archives_made_by_skopeo() {
    let t = TempDir::new("import");
    let src = store(&t);
    let bb = src.install_busybox(Path::new("/bin/busybox")).unwrap();
    let layout = t.path().join("layout");
    src.export_oci_layout("busybox:latest", &layout).unwrap();
    write_oci_image(&layout, "wh", &whiteout_layers(), &["sh"]);

    let oci = t.path().join("oci.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:latest", layout.display()),
        &format!("oci-archive:{}:docker.io/kubus/oci-bb:7", oci.display()),
    ]);
    let docker = t.path().join("docker.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:wh", layout.display()),
        &format!("docker-archive:{}:kubus/docker-wh:2", docker.display()),
    ]);
    let docker_bb = t.path().join("docker-bb.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker-archive:{}:kubus/docker-bb:3", docker_bb.display()),
    ]);

    let dst_dir = TempDir::new("import-dst");
    let dst = store(&dst_dir);
    assert_eq!(dst.import(&oci).unwrap(), ["docker.io/kubus/oci-bb:7"]);
    assert_eq!(dst.get("kubus/oci-bb:7").unwrap().id, bb.id, "same config, same id");
    assert_eq!(dst.import(&docker).unwrap(), ["docker.io/kubus/docker-wh:2"]);
    let wh = dst.get("docker.io/kubus/docker-wh:2").unwrap();
    assert_eq!(wh.layers().len(), 2);
    assert_eq!(dst.import(&docker_bb).unwrap(), ["docker.io/kubus/docker-bb:3"]);
    // docker-archive stores uncompressed layers: another manifest, the same config.
    let dbb = dst.get("kubus/docker-bb:3").unwrap();
    assert_eq!(dbb.id, bb.id);
    assert_eq!(dst.list().len(), 2);

    let cdir = dst_dir.path().join("c");
    let _guard = RootfsGuard(cdir.clone());
    let rootfs = dst.mount_rootfs(&wh, &cdir).unwrap();
    assert!(rootfs.join("data/keep").exists() && !rootfs.join("data/gone").exists());
    // Pull policy Never is satisfied by an imported image.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let p = rt.block_on(dst.ensure("kubus/docker-wh:2", PullPolicy::Never)).unwrap();
    assert!(!p.pulled);
    let err = rt.block_on(dst.ensure("kubus/absent:1", PullPolicy::Never)).unwrap_err();
    assert_eq!(err.reason(), "ErrImageNeverPull");
}

#[test]
fn gc_removes_unused_images_and_layers_but_keeps_used_and_mounted_ones() {
    let t = TempDir::new("gc");
    let s = store(&t);
    let bb = s.install_busybox(Path::new("/bin/busybox")).unwrap();
    let layout = t.path().join("layout");
    write_oci_image(&layout, "1", &whiteout_layers(), &["sh"]);
    write_oci_image(&layout, "2", &[layer_tar(&[Entry::File("only", b"x")])], &["sh"]);
    for tag in ["1", "2"] {
        let archive = t.path().join(format!("{tag}.tar"));
        skopeo(&[
            "copy",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("oci-archive:{}:example.com/gc:{tag}", archive.display()),
        ]);
        s.import(&archive).unwrap();
    }
    let wh = s.get("example.com/gc:1").unwrap();
    let other = s.get("example.com/gc:2").unwrap();
    let layer_dirs = || {
        fs::read_dir(t.path().join("images/layers")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count()
    };
    assert_eq!(layer_dirs(), 1 + 1 + 2 + 1, "empty + busybox + two + one");
    let before = s.store_bytes();
    assert!(metric_value("kubus_image_store_bytes", None) > 0.0);

    // Below the high threshold nothing goes.
    let r = s.gc(&HashSet::from([bb.id.clone()]), u64::MAX, 0).unwrap();
    assert!(r.images_removed.is_empty());
    assert_eq!(s.list().len(), 3);

    // `wh` is not in use but its rootfs is still mounted: the record goes, the layers stay.
    let cdir = t.path().join("c");
    let guard = RootfsGuard(cdir.clone());
    s.mount_rootfs(&wh, &cdir).unwrap();
    let in_use = HashSet::from(["docker.io/library/busybox:latest".to_string()]);
    let r = s.gc(&in_use, 0, 0).unwrap();
    let removed: HashSet<_> = r.images_removed.iter().cloned().collect();
    assert_eq!(removed, HashSet::from([wh.id.clone(), other.id.clone()]));
    assert_eq!(r.bytes_before, before);
    assert!(r.bytes_after < before);
    assert_eq!(layer_dirs(), 1 + 1 + 2, "the mounted image's layers survive");
    assert!(s.get("example.com/gc:1").is_none());
    drop(guard);
    let r = s.gc(&in_use, 0, 0).unwrap();
    assert_eq!(r.layers_removed, 2);
    assert_eq!(layer_dirs(), 2);
    let blobs = fs::read_dir(t.path().join("images/blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 3, "busybox manifest, config, layer");

    // The kept image still mounts; remove() takes it and its content.
    let c2 = t.path().join("c2");
    let g2 = RootfsGuard(c2.clone());
    assert!(s.mount_rootfs(&bb, &c2).unwrap().join("bin/busybox").exists());
    drop(g2);
    s.remove("busybox").unwrap();
    assert!(s.list().is_empty());
    assert_eq!(fs::read_dir(t.path().join("images/blobs/sha256")).unwrap().count(), 0);
    assert_eq!(layer_dirs(), 1, "only the empty layer");
    assert_eq!(s.remove("busybox").unwrap_err().to_string(), "image \"busybox\" not found");
}

#[test]
fn a_reopened_store_sees_its_images_and_drops_partial_writes() {
    let t = TempDir::new("reopen");
    let id = store(&t).install_busybox(Path::new("/bin/busybox")).unwrap().id;
    // Leftovers of a crash: a half-unpacked layer and a half-written blob.
    fs::create_dir_all(t.path().join("images/tmp/layer-x/bin")).unwrap();
    fs::write(t.path().join("images/tmp/blob-y"), b"partial").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for old in ["images/tmp/layer-x", "images/tmp/blob-y"] {
        fs::File::open(t.path().join(old)).unwrap().set_modified(two_hours_ago).unwrap();
    }
    // A write in progress in another process (e.g. `kubus image import` beside the agent).
    fs::write(t.path().join("images/tmp/blob-z"), b"in progress").unwrap();
    let s = store(&t);
    assert_eq!(s.get("busybox").unwrap().id, id);
    let left: Vec<String> = fs::read_dir(t.path().join("images/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["blob-z".to_string()], "old leftovers go, a fresh write stays");
    // A second store on the same root (another process) sees records written by the first.
    let other = store(&t);
    other.remove(&id).unwrap();
    assert!(s.get("busybox").is_none());
}
