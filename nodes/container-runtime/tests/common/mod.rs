//! Test fixture: a private runtime (state dir, runc root, cgroup root named by a random token), a
//! busybox root filesystem, and a Drop guard that removes everything even when a test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubus_container_runtime::cgroups::{self, CgroupLayout, CgroupResources, QosClass};
use kubus_container_runtime::oci_spec::runtime::{
    LinuxBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec,
};
use kubus_container_runtime::{labels, CreateContainer, Runtime, RuntimeConfig};

pub fn token() -> String {
    let mut b = [0u8; 3];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("urandom");
    format!("t{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

pub struct Fixture {
    pub tok: String,
    pub root: PathBuf,
    pub cgroup_root: String,
    pub pod_cgroup: String,
    pub layout: CgroupLayout,
    pub rt: Option<Runtime>,
}

impl Fixture {
    pub fn new() -> Self {
        assert!(nix::unistd::geteuid().is_root(), "these tests create real containers and need root");
        let tok = token();
        let root = std::env::temp_dir().join(format!("kubus-rt-{tok}"));
        std::fs::create_dir_all(&root).unwrap();
        let cgroup_root = format!("/kubus-{tok}");
        let pod_cgroup = cgroups::pod_cgroup_path(&cgroup_root, QosClass::Burstable, &format!("{tok}-pod"));
        let layout = CgroupLayout::detect().expect("cgroup layout");
        let mut f = Self { tok, root, cgroup_root, pod_cgroup, layout, rt: None };
        // The kubelet makes the pod's cgroup before its containers' leaves.
        let res = CgroupResources {
            cpu_shares: Some(512),
            cpu_quota: Some(150_000),
            cpu_period: Some(100_000),
            memory_limit: Some(256 << 20),
            pids_limit: Some(512),
        };
        f.layout.create(&f.pod_cgroup, &res).expect("pod cgroup");
        f.rt = Some(f.runtime());
        f
    }

    pub fn config(&self) -> RuntimeConfig {
        RuntimeConfig {
            shim_command: vec![env!("CARGO_BIN_EXE_kubus-shim").into()],
            state_dir: self.root.join("state"),
            runc_root: self.root.join("runc"),
            cgroup_root: self.cgroup_root.clone(),
        }
    }

    /// A fresh `Runtime` on the same state (an agent restart).
    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.config()).expect("runtime")
    }

    pub fn rt(&self) -> &Runtime {
        self.rt.as_ref().unwrap()
    }

    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.tok)
    }

    /// A bundle whose rootfs is Debian's static busybox with one symlink per applet.
    pub fn bundle(&self, id: &str) -> PathBuf {
        let bundle = self.root.join("bundles").join(id);
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static installed");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        bundle
    }

    pub fn container_cgroup(&self, id: &str) -> String {
        cgroups::container_cgroup_path(&self.pod_cgroup, id)
    }

    /// The default OCI spec (new pid/net/ipc/uts/mount/cgroup namespaces, default capabilities,
    /// noNewPrivileges) running `args`, in a leaf below the fixture's pod cgroup.
    pub fn spec(&self, id: &str, bundle: &Path, args: &[&str], memory_limit: Option<i64>) -> Spec {
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["PATH=/bin".to_string(), "HOME=/root".to_string()])
            .cwd("/")
            .no_new_privileges(true)
            .capabilities(spec.process().as_ref().unwrap().capabilities().clone().unwrap())
            .build()
            .unwrap();
        spec.set_process(Some(process));
        spec.set_root(Some(RootBuilder::default().path(bundle.join("rootfs")).readonly(false).build().unwrap()));
        spec.set_hostname(Some(id.chars().take(60).collect()));
        let mut linux = LinuxBuilder::default()
            .namespaces(spec.linux().as_ref().unwrap().namespaces().clone().unwrap())
            .cgroups_path(PathBuf::from(self.container_cgroup(id)));
        if let Some(limit) = memory_limit {
            let mem = LinuxMemoryBuilder::default().limit(limit).build().unwrap();
            linux = linux.resources(LinuxResourcesBuilder::default().memory(mem).build().unwrap());
        }
        spec.set_linux(Some(linux.build().unwrap()));
        spec
    }

    pub fn create_request(&self, name: &str, args: &[&str], memory_limit: Option<i64>) -> CreateContainer {
        let id = self.id(name);
        let bundle = self.bundle(&id);
        let spec = self.spec(&id, &bundle, args, memory_limit);
        let labels = BTreeMap::from([
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_NAME.to_string(), format!("pod-{name}")),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (labels::RESTART_COUNT.to_string(), "0".to_string()),
        ]);
        CreateContainer {
            id: id.clone(),
            spec,
            bundle_dir: bundle,
            log_path: self.root.join("logs").join(format!("{id}.log")),
            labels,
            stdin: false,
            stdin_once: false,
        }
    }

    pub fn cgroup_dirs(&self, path: &str) -> Vec<PathBuf> {
        self.layout.dirs(path).unwrap().into_iter().filter(|d| d.exists()).collect()
    }

    /// Shim pids recorded in every shim.json under this fixture.
    pub fn shim_pids(&self) -> Vec<i32> {
        let Ok(rd) = std::fs::read_dir(self.root.join("state/shims")) else { return Vec::new() };
        rd.filter_map(|e| {
            let data = std::fs::read(e.ok()?.path().join("shim.json")).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
            v.get("shimPid")?.as_i64().map(|p| p as i32)
        })
        .collect()
    }
}

pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("X");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

pub fn status_field(pid: i32, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.rt = None;
        // Shims first (a SIGKILLed shim leaves its container to the cgroup sweep below).
        for pid in self.shim_pids() {
            if pid_alive(pid)
                && std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("kubus-shim"))
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        if let Err(e) = self.layout.remove(&self.cgroup_root) {
            eprintln!("fixture cleanup: cgroups {}: {e}", self.cgroup_root);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
