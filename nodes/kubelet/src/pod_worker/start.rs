//! Starting one container, in upstream's order (`startContainer`): the back-off first, then
//! the image (pulled by its policy), the environment, the run's files (rootfs, termination
//! log), the OCI spec, create and start through the runtime, its postStart hook, and finally
//! its probes. A failure becomes the container's waiting reason (ErrImagePull,
//! CreateContainerConfigError, ...).

use super::sync::is_sidecar;
use super::{container_type, PodWorker, Run, RunState, CONTAINER_OPS, CONTAINER_STARTS, CONTAINER_START_ERRORS};
use crate::env::{self, PodFacts};
use crate::objects::{SourceKind, SourceObject};
use crate::spec::{self, ContainerPlan, ImageDefaults};
use k8s_openapi::api::core::v1::Container;
use kubus_apimachinery::pod;
use kubus_apimachinery::resources::qos_class;
use kubus_container_runtime::cgroups::container_cgroup_path;
use kubus_container_runtime::CreateContainer;
use kubus_controller_runtime::events::EventType;
use kubus_image::{ImageError, ImageInfo, Keyring, PullPolicy, Pulled};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why a container did not start: its waiting reason and message.
#[derive(Debug)]
pub(super) struct StartFailure {
    pub reason: &'static str,
    pub message: String,
}

impl StartFailure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        StartFailure { reason, message: message.into() }
    }
}

/// A run ready to be created: its image, id, files and runtime spec.
struct Prepared<'a> {
    image: &'a ImageInfo,
    id: String,
    files: RunFiles,
    oci: oci_spec::runtime::Spec,
}

/// A run's files on the node.
struct RunFiles {
    dir: PathBuf,
    rootfs: PathBuf,
    termination_log: PathBuf,
}

impl PodWorker {
    /// Starts (or restarts) a container unless its back-off is still running.
    pub(super) async fn start_if_due(&mut self, c: &Container, init: bool) {
        let name = c.name.clone();
        let now = Instant::now();
        let (pod_name, pod_ns, uid) = (self.name().to_string(), self.ns().to_string(), self.uid.clone());
        let rec = self.records.entry(name.clone()).or_default();
        let previous_exit = match rec.state() {
            Some(RunState::Exited(t)) => Some(t.clone()),
            _ => None,
        };
        if let Some(t) = &previous_exit {
            // This exit has not been counted yet: it starts (or extends) the back-off.
            if rec.last.as_ref().map(|l| &l.container_id) != Some(&t.container_id) {
                let ran = t.started_at.and_then(|s| t.finished_at.duration_since(s).ok());
                if !rec.killed_by_us || t.exit_code != 0 {
                    rec.backoff.fail(now, ran);
                }
                rec.killed_by_us = false;
                rec.last = Some(t.clone());
            }
        }
        if let Some(delay) = rec.backoff.waiting(now) {
            let pulling = rec.waiting.as_ref().is_some_and(|(r, _)| r == "ErrImagePull" || r == "ImagePullBackOff");
            let reason = if pulling { "ImagePullBackOff" } else { "CrashLoopBackOff" };
            let msg = if reason == "CrashLoopBackOff" {
                format!(
                    "back-off {}s restarting failed container={name} pod={pod_name}_{pod_ns}({uid})",
                    delay.as_secs()
                )
            } else {
                format!("Back-off pulling image \"{}\"", c.image.as_deref().unwrap_or(""))
            };
            let first = rec.waiting.as_ref().map(|(r, _)| r.as_str()) != Some(reason);
            rec.waiting = Some((reason.to_string(), msg.clone()));
            if first {
                let ev = if reason == "CrashLoopBackOff" {
                    format!("Back-off restarting failed container {name} in pod {pod_name}_{pod_ns}({uid})")
                } else {
                    msg
                };
                self.event(EventType::Warning, "BackOff", &ev).await;
            }
            return;
        }
        let attempt = match &rec.current {
            Some(r) => r.attempt + 1,
            None => rec.restarts,
        };
        if let Some(old) = rec.current.take() {
            // The previous run goes; its log file stays for `kubectl logs --previous`.
            let _ = self.host.runtime.remove(&old.id).await;
            let _ = self.host.images.unmount_rootfs(&old.dir);
            let _ = std::fs::remove_dir_all(&old.dir);
            self.prune_logs(&name, attempt);
        }
        match self.start_container(c, attempt, init).await {
            Ok(run) => {
                CONTAINER_STARTS.with_label_values(&[container_type(init)]).inc();
                // An init container's run is not part of the pod startup SLI (sidecars keep
                // running alongside the containers: only their start counts).
                if let (true, RunState::Running { started_at }) = (init && !is_sidecar(c), &run.state) {
                    self.host.startup_latency.init_container_started(&uid, *started_at);
                }
                let id = run.id.clone();
                let rec = self.records.get_mut(&name).expect("inserted above");
                rec.restarts = attempt;
                rec.waiting = None;
                rec.current = Some(run);
                // Probes begin once postStart has returned (the container is not started
                // before); a failed hook has killed the run, whose exit restarts it by policy.
                if let Ok(true) = self.post_start(c, &id).await {
                    let rec = self.records.get_mut(&name).expect("inserted above");
                    if let Some(mut run) = rec.current.take() {
                        if run.id == id && run.is_running() {
                            self.start_probes(&name, c, &mut run);
                        }
                        self.records.get_mut(&name).expect("inserted above").current = Some(run);
                    }
                }
            }
            Err(StartFailure { reason, message }) => {
                CONTAINER_STARTS.with_label_values(&[container_type(init)]).inc();
                CONTAINER_START_ERRORS.with_label_values(&[reason, container_type(init)]).inc();
                let rec = self.records.get_mut(&name).expect("inserted above");
                rec.restarts = attempt.saturating_sub(1).max(rec.restarts);
                // Configuration errors (an image absent under Never, a missing Secret) are
                // re-checked at each resync and keep their reason, as upstream; a back-off
                // would relabel them CrashLoopBackOff and delay the fix up to 5 minutes.
                if !matches!(reason, "ErrImageNeverPull" | "CreateContainerConfigError") {
                    rec.backoff.fail(Instant::now(), None);
                }
                rec.waiting = Some((reason.to_string(), message));
            }
        }
    }

    /// Keeps the current and the previous run's log.
    fn prune_logs(&self, container: &str, attempt: u32) {
        let dir = self.log_dir().join(container);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().trim_end_matches(".log").parse::<u32>().ok();
            if n.is_some_and(|n| n + 1 < attempt) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    async fn start_container(&mut self, c: &Container, attempt: u32, init: bool) -> Result<Run, StartFailure> {
        self.records.entry(c.name.clone()).or_default().waiting = Some(("ContainerCreating".into(), String::new()));
        let image = self.pull_image(c).await?;
        let defaults = ImageDefaults {
            entrypoint: image.config.entrypoint.clone(),
            cmd: image.config.cmd.clone(),
            env: image.config.env.clone(),
            working_dir: image.config.working_dir.clone().unwrap_or_default(),
            user: image.config.user.clone().unwrap_or_default(),
        };
        let env = self.container_env(c, &defaults).await?;
        let id = new_container_id();
        let files = self.prepare_run(&image, &id)?;
        let oci = self.oci_spec(c, &defaults, &env, &files, &id)?;
        self.create_and_start(c, attempt, init, Prepared { image: &image, id, files, oci }).await
    }

    /// The image step: present, or pulled by the container's pull policy.
    async fn pull_image(&self, c: &Container) -> Result<ImageInfo, StartFailure> {
        let image_name = c.image.clone().unwrap_or_default();
        let policy = match c.image_pull_policy.as_deref() {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        };
        let images = &self.host.images;
        let t0 = Instant::now();
        let present = images.get(&image_name).is_some();
        // Never pulls nothing, so it announces no pull (upstream's events).
        let pulls = (!present && policy != PullPolicy::Never) || policy == PullPolicy::Always;
        let keyring = if pulls { self.pull_keyring().await } else { Keyring::default() };
        if pulls {
            self.event(EventType::Normal, "Pulling", &format!("Pulling image \"{image_name}\"")).await;
            self.host.startup_latency.image_pull_started(&self.uid);
        }
        let pulled = match images.ensure(&image_name, policy, &keyring).await {
            Ok(p) => {
                // A failed pull stays open: the next pull that ends pairs with its start, so the
                // back-off between them is not counted against the pod's start either.
                if pulls {
                    self.host.startup_latency.image_pull_finished(&self.uid);
                }
                p
            }
            // Always re-resolves the tag; offline (e.g. the built-in busybox), the node's copy
            // is still the image the pod asked for. Not when the registry refused the pod's
            // credentials: a private image on the node is no substitute for them.
            Err(e)
                if policy == PullPolicy::Always
                    && !matches!(e, ImageError::Unauthorized { .. })
                    && images.get(&image_name).is_some() =>
            {
                let msg = format!(
                    "Container image \"{image_name}\" already present on machine and its registry is unreachable ({e}): using it"
                );
                self.event(EventType::Normal, "Pulled", &msg).await;
                let image = images.get(&image_name).expect("checked above");
                self.host.startup_latency.image_pull_finished(&self.uid);
                CONTAINER_OPS.with_label_values(&["pull"]).observe(t0.elapsed().as_secs_f64());
                return Ok(image);
            }
            Err(e) => {
                let never = policy == PullPolicy::Never;
                let (reason, msg) = if never {
                    (
                        "ErrImageNeverPull",
                        format!("Container image \"{image_name}\" is not present with pull policy of Never"),
                    )
                } else {
                    ("ErrImagePull", format!("Failed to pull image \"{image_name}\": {e}"))
                };
                // Upstream files the Never case under its own reason, pull failures under Failed.
                self.event(EventType::Warning, if never { reason } else { "Failed" }, &msg).await;
                self.event(EventType::Warning, "Failed", &format!("Error: {reason}")).await;
                return Err(StartFailure::new(reason, msg));
            }
        };
        CONTAINER_OPS.with_label_values(&["pull"]).observe(t0.elapsed().as_secs_f64());
        let Pulled { image, pulled, .. } = pulled;
        let msg = if pulled {
            let secs = t0.elapsed().as_secs_f64();
            format!("Successfully pulled image \"{image_name}\" in {secs:.3}s. Image size: {} bytes.", image.size)
        } else {
            format!("Container image \"{image_name}\" already present on machine")
        };
        self.event(EventType::Normal, "Pulled", &msg).await;
        Ok(image)
    }

    /// The credentials of the pod's image pull secrets (upstream's `getPullSecretsForPod` and
    /// keyring): `spec.imagePullSecrets`, else its ServiceAccount's (upstream's admission
    /// copies those into the pod; Kubus has no such admission step, so the kubelet reads them).
    async fn pull_keyring(&self) -> Keyring {
        let spec = pod::spec(&self.pod);
        let ns = self.ns();
        let mut names: Vec<String> =
            spec.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            let sa = spec.service_account_name.as_deref().filter(|s| !s.is_empty()).unwrap_or("default");
            if let Ok(Some(sa)) = self.host.objects.service_account(ns, sa).await {
                names = sa.image_pull_secrets.into_iter().flatten().map(|r| r.name).filter(|n| !n.is_empty()).collect();
            }
        }
        let mut keyring = Keyring::default();
        let mut failed = vec![];
        for name in names {
            let data = match self.host.objects.get(SourceKind::Secret, ns, &name).await {
                Ok(Some(SourceObject::Secret(s))) => s.data.unwrap_or_default(),
                _ => {
                    failed.push(name);
                    continue;
                }
            };
            let added = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
                (Some(json), _) => keyring.add_docker_config_json(&json.0),
                (None, Some(cfg)) => keyring.add_dockercfg(&cfg.0),
                (None, None) => Ok(()),
            };
            if let Err(e) = added {
                tracing::warn!(secret = %name, error = %e, "unusable image pull secret");
                failed.push(name);
            }
        }
        if !failed.is_empty() {
            let msg = format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                failed.join(", ")
            );
            self.event(EventType::Warning, "FailedToRetrieveImagePullSecret", &msg).await;
        }
        keyring
    }

    /// The environment step: the image's variables, HOSTNAME, Service links, then the pod's.
    async fn container_env(&self, c: &Container, image: &ImageDefaults) -> Result<Vec<(String, String)>, StartFailure> {
        let ips = self.pod_ips();
        let host_ip = self.host.node_ip.to_string();
        let alloc = self.host.machine.allocatable();
        let facts = PodFacts { pod: &self.pod, pod_ips: &ips, host_ip: &host_ip, node_allocatable: &alloc };
        let base: Vec<(String, String)> =
            image.env.iter().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
        let mut extra = vec![("HOSTNAME".to_string(), crate::sandbox::hostname(&self.pod))];
        extra.extend(self.host.services.env(self.ns(), &self.pod));
        match env::resolve(&facts, c, &base, &extra, self.host.objects.as_ref()).await {
            Ok(e) => Ok(e),
            Err(e) => {
                self.event(EventType::Warning, "Failed", &format!("Error: {e}")).await;
                Err(StartFailure::new("CreateContainerConfigError", e.to_string()))
            }
        }
    }

    /// The run's files: its directory, the image mounted as rootfs, the termination log.
    fn prepare_run(&self, image: &ImageInfo, id: &str) -> Result<RunFiles, StartFailure> {
        let dir = self.pod_dir().join("containers").join(id);
        let fail = |e: String| StartFailure::new("CreateContainerError", e);
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let rootfs = self.host.images.mount_rootfs(image, &dir).map_err(|e| fail(e.to_string()))?;
        let termination_log = dir.join("termination-log");
        let _ = std::fs::write(&termination_log, b"");
        Ok(RunFiles { dir, rootfs, termination_log })
    }

    /// The OCI runtime spec of the run, with the sandbox's namespaces and the pod's cgroup.
    fn oci_spec(
        &self,
        c: &Container,
        image: &ImageDefaults,
        env: &[(String, String)],
        files: &RunFiles,
        id: &str,
    ) -> Result<oci_spec::runtime::Spec, StartFailure> {
        let fail = |reason: &'static str, e: String| {
            let _ = self.host.images.unmount_rootfs(&files.dir);
            StartFailure::new(reason, e)
        };
        let shm = self.host.sandboxes.shm(&self.pod_dir());
        let sandbox = self.sandbox.clone().ok_or_else(|| StartFailure::new("CreateContainerError", "no sandbox"))?;
        let vols = self.volumes.clone().unwrap_or_default();
        let qos = qos_class(&self.pod);
        let cgroups_path = container_cgroup_path(&self.host.pod_cgroup(&self.uid, qos), id);
        let host_ipc = pod::spec(&self.pod).host_ipc.unwrap_or(false);
        let plan = ContainerPlan {
            pod: &self.pod,
            container: c,
            image,
            env,
            rootfs: &files.rootfs,
            volumes: &vols,
            netns: sandbox.netns.as_deref(),
            ipcns: (!host_ipc).then_some(sandbox.ipcns.as_path()),
            utsns: sandbox.utsns.as_deref(),
            hosts_file: &sandbox.hosts_file,
            resolv_conf: &sandbox.resolv_conf,
            hostname_file: &sandbox.hostname_file,
            shm_dir: &shm,
            termination_log: &files.termination_log,
            cgroups_path: &cgroups_path,
            qos,
            memory_capacity: self.host.machine.memory_bytes,
            cgroup_v2: self.host.cgroup_v2,
            seccomp_dir: &self.host.config.state_dir.join("seccomp"),
        };
        let spec_json = spec::build(&plan).map_err(|e| fail("CreateContainerConfigError", e.to_string()))?;
        serde_json::from_value(spec_json)
            .map_err(|e| StartFailure::new("CreateContainerError", format!("runtime spec: {e}")))
    }

    /// Create and start through the runtime; the run is watched for its exit from then on.
    async fn create_and_start(
        &self,
        c: &Container,
        attempt: u32,
        init: bool,
        run: Prepared<'_>,
    ) -> Result<Run, StartFailure> {
        let Prepared { image, id, files, oci } = run;
        let name = c.name.as_str();
        let image_name = c.image.clone().unwrap_or_default();
        let log_dir = self.log_dir().join(name);
        let _ = std::fs::create_dir_all(&log_dir);
        let labels: BTreeMap<String, String> = [
            (crate::LABEL_POD_UID, self.uid.clone()),
            (crate::LABEL_POD_NAMESPACE, self.ns().to_string()),
            (crate::LABEL_POD_NAME, self.name().to_string()),
            (crate::LABEL_CONTAINER, name.to_string()),
            (crate::LABEL_ATTEMPT, attempt.to_string()),
            (crate::LABEL_IMAGE, image_name.clone()),
            (crate::LABEL_IMAGE_ID, image_ref(image)),
            (crate::LABEL_INIT, init.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let runtime = &self.host.runtime;
        let undo = |id: String, dir: PathBuf| async move {
            let _ = runtime.remove(&id).await;
            let _ = self.host.images.unmount_rootfs(&dir);
        };
        let t0 = Instant::now();
        let created = runtime
            .create(CreateContainer {
                id: id.clone(),
                spec: oci,
                bundle_dir: files.dir.clone(),
                log_path: log_dir.join(format!("{attempt}.log")),
                labels,
                stdin: c.stdin.unwrap_or(false),
                stdin_once: c.stdin_once.unwrap_or(false),
            })
            .await;
        if let Err(e) = created {
            self.event(EventType::Warning, "Failed", &format!("Error: {e}")).await;
            undo(id, files.dir).await;
            return Err(StartFailure::new("CreateContainerError", e.to_string()));
        }
        CONTAINER_OPS.with_label_values(&["create"]).observe(t0.elapsed().as_secs_f64());
        self.event(EventType::Normal, "Created", &format!("Created container: {name}")).await;
        let t0 = Instant::now();
        if let Err(e) = runtime.start(&id).await {
            let msg = format!("Error: failed to start container \"{name}\": {e}");
            self.event(EventType::Warning, "Failed", &msg).await;
            undo(id, files.dir).await;
            return Err(StartFailure::new("RunContainerError", e.to_string()));
        }
        CONTAINER_OPS.with_label_values(&["start"]).observe(t0.elapsed().as_secs_f64());
        self.event(EventType::Normal, "Started", &format!("Started container {name}")).await;
        self.watch_exit(&id);
        let (started, _) = watch::channel(false);
        Ok(Run {
            id,
            attempt,
            dir: files.dir,
            image: image_name,
            image_id: image_ref(image),
            state: RunState::Running { started_at: SystemTime::now() },
            ready: false,
            started,
            probes: vec![],
        })
    }
}

/// What the status reports as imageID: the digest the image was pulled by, or its id.
fn image_ref(image: &ImageInfo) -> String {
    image.repo_digests.first().cloned().unwrap_or_else(|| image.id.clone())
}

/// 32 random hex characters: short enough for unix socket paths under the runtime's state.
fn new_container_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
