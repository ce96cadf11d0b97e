//! The runtime path alone: create+start+exit+delete of `echo hi` through the kubus `Runtime` (a
//! shim per container) beside `runc run` on the same bundle.

use anyhow::{bail, Context as _};
use kubus_container_runtime::cgroups::{CgroupLayout, CgroupResources};
use kubus_container_runtime::oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, Spec};
use kubus_container_runtime::{CreateContainer, Runtime, RuntimeConfig};
use kubus_image::{ImageStore, Registries};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::kill_processes_mentioning;
use crate::stats::sorted;

pub(super) struct RuntimeFigures {
    pub(super) kubus: Vec<Duration>,
    pub(super) runc: Vec<Duration>,
    /// Per operation of the kubus runtime (create, start, wait for exit, delete).
    pub(super) ops: Vec<(&'static str, Vec<Duration>)>,
}

/// Everything the runtime phase made: the shims, the bundle's overlay mount, the cgroup parent,
/// runc's containers and the temp dir. Removed on drop, also after a failure.
struct RuntimeGuard {
    root: PathBuf,
    bundle: PathBuf,
    runc_root: PathBuf,
    cgroup_parent: String,
    layout: CgroupLayout,
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        // Shims run `kubus shim ... --dir <root>/state/shims/<id>`: their command line names the root.
        kill_processes_mentioning(&format!("{}/", self.root.display()));
        for e in std::fs::read_dir(&self.runc_root).into_iter().flatten().flatten() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force"])
                .arg(e.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Err(e) = self.layout.remove(&self.cgroup_parent) {
            eprintln!("cleanup: cgroup {}: {e}", self.cgroup_parent);
        }
        rmdir_in_every_hierarchy(&self.cgroup_parent);
        if let Err(e) = ImageStore::unmount_rootfs(&self.bundle) {
            eprintln!("cleanup: rootfs {}: {e}", self.bundle.display());
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// runc also makes the parent in the named `systemd` hierarchy and in cgroup2's `unified/` on
/// a hybrid host, which `CgroupLayout` (the pods' controllers) does not manage, and removes only
/// its leaves: rmdir the (by now empty) path in every mounted cgroup hierarchy.
fn rmdir_in_every_hierarchy(cgroup: &str) {
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    for l in info.lines() {
        let Some((mount, fs)) = l.split_once(" - ") else { continue };
        if matches!(fs.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            if let Some(point) = mount.split_whitespace().nth(4) {
                rmdir_tree(&Path::new(point).join(cgroup.trim_start_matches('/')));
            }
        }
    }
}

/// The OCI spec the runtime crate's tests use: default namespaces and capabilities,
/// noNewPrivileges, the container's leaf below `cgroup_parent`.
fn echo_spec(id: &str, rootfs: &Path, cgroup_parent: &str) -> anyhow::Result<Spec> {
    let mut spec = Spec::default();
    let caps = spec.process().as_ref().and_then(|p| p.capabilities().clone()).context("default capabilities")?;
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).context("default namespaces")?;
    spec.set_process(Some(
        ProcessBuilder::default()
            .args(vec!["echo".to_string(), "hi".to_string()])
            .env(vec!["PATH=/bin".to_string(), "HOME=/root".to_string()])
            .cwd("/")
            .no_new_privileges(true)
            .capabilities(caps)
            .build()?,
    ));
    spec.set_root(Some(RootBuilder::default().path(rootfs).readonly(false).build()?));
    spec.set_hostname(Some("bench".to_string()));
    spec.set_linux(Some(
        LinuxBuilder::default()
            .namespaces(namespaces)
            .cgroups_path(PathBuf::from(format!("{cgroup_parent}/{id}")))
            .build()?,
    ));
    Ok(spec)
}

pub(super) async fn runtime_path(exe: &Path, tok: &str, runs: usize) -> anyhow::Result<RuntimeFigures> {
    let root = std::env::temp_dir().join(format!("kubus-bench-rt-{tok}"));
    std::fs::create_dir_all(&root)?;
    let layout = CgroupLayout::detect()?;
    let guard = RuntimeGuard {
        bundle: root.join("bundle"),
        runc_root: root.join("runc-state"),
        cgroup_parent: format!("/kubus-b{tok}-rt"),
        layout,
        root,
    };
    guard.layout.create(&guard.cgroup_parent, &CgroupResources::default())?;
    let images = ImageStore::open(guard.root.join("images"), Registries::default())?;
    let image = images.install_busybox(Path::new("/bin/busybox")).context("building busybox (busybox-static)")?;
    let rootfs = images.mount_rootfs(&image, &guard.bundle)?;
    let rt = Runtime::new(RuntimeConfig {
        shim_command: vec![exe.as_os_str().to_owned(), "shim".into()],
        state_dir: guard.root.join("state"),
        runc_root: guard.root.join("libcontainer"),
        cgroup_root: guard.cgroup_parent.clone(),
    })?;
    std::fs::create_dir_all(guard.root.join("logs"))?;
    std::fs::create_dir_all(&guard.runc_root)?;

    let mut figs = RuntimeFigures { kubus: Vec::new(), runc: Vec::new(), ops: Vec::new() };
    let mut ops: [Vec<Duration>; 4] = Default::default();
    // Run 0 of each warms caches (binaries, busybox pages) and is not counted; kubus and runc
    // alternate so that machine noise hits both alike.
    for i in 0..=runs {
        let id = format!("bench-{tok}-k{i}");
        let log = guard.root.join("logs").join(format!("{id}.log"));
        let spec = echo_spec(&id, &rootfs, &guard.cgroup_parent)?;
        let req = CreateContainer {
            id: id.clone(),
            spec,
            bundle_dir: guard.bundle.clone(),
            log_path: log.clone(),
            labels: BTreeMap::new(),
            stdin: false,
            stdin_once: false,
        };
        let t0 = Instant::now();
        rt.create(req).await?;
        let t1 = Instant::now();
        rt.start(&id).await?;
        let t2 = Instant::now();
        let exit = rt.wait(&id).await?;
        let t3 = Instant::now();
        rt.delete(&id).await?;
        let t4 = Instant::now();
        if exit.code != 0 {
            bail!("kubus run {i}: `echo hi` exited with {}", exit.code);
        }
        let out = std::fs::read_to_string(&log)?;
        if !out.lines().any(|l| l.ends_with(" stdout F hi")) {
            bail!("kubus run {i}: the log lacks `hi`: {out:?}");
        }
        if i > 0 {
            figs.kubus.push(t4 - t0);
            for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3].into_iter().enumerate() {
                ops[k].push(d);
            }
        }

        let id = format!("bench-{tok}-r{i}");
        let t0 = Instant::now();
        // Writing config.json is part of runc's path as it is part of `Runtime::create`.
        let spec = echo_spec(&id, &rootfs, &guard.cgroup_parent)?;
        tokio::fs::write(guard.bundle.join("config.json"), serde_json::to_vec_pretty(&spec)?).await?;
        let out = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(&guard.runc_root)
            .args(["run", "--bundle"])
            .arg(&guard.bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running runc (apt-get install runc)")?;
        let took = t0.elapsed();
        if !out.status.success() || out.stdout != b"hi\n" {
            bail!(
                "runc run {i}: {} stdout {:?} stderr {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i > 0 {
            figs.runc.push(took);
        }
    }
    if !rt.list().await?.is_empty() {
        bail!("containers left after delete");
    }
    let [c, s, w, d] = ops;
    figs.ops = vec![
        ("create (shim up, container built)", sorted(c)),
        ("start", sorted(s)),
        ("wait (exit recorded)", sorted(w)),
        ("delete (shim gone)", sorted(d)),
    ];
    figs.kubus = sorted(figs.kubus);
    figs.runc = sorted(figs.runc);
    drop(guard);
    Ok(figs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::token;

    /// The sweep runc's leftovers need: a path in the named systemd hierarchy and in cgroup2,
    /// with a child, is gone afterwards (root; this host has both hierarchies).
    #[test]
    fn cgroup_path_is_removed_from_every_hierarchy() {
        struct Sweep(String);
        impl Drop for Sweep {
            fn drop(&mut self) {
                rmdir_in_every_hierarchy(&self.0);
            }
        }
        let path = format!("/kubus-btest{}", token().unwrap());
        let _sweep = Sweep(path.clone());
        let mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.split_once(" - ").is_some_and(|(_, fs)| fs.starts_with("cgroup")))
            .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
            .collect();
        assert!(!mounts.is_empty(), "no cgroup hierarchy mounted");
        for m in &mounts {
            std::fs::create_dir_all(m.join(path.trim_start_matches('/')).join("leaf")).unwrap();
        }
        rmdir_in_every_hierarchy(&path);
        for m in &mounts {
            assert!(!m.join(path.trim_start_matches('/')).exists(), "left in {}", m.display());
        }
    }
}
