//! End-to-end on a real node: images. Pulls from a real registry (Debian's docker-registry,
//! started by the test) directly and through a docker.io mirror from `--registries`, offline
//! imports of OCI and docker-save archives (`kubus image import` and the import directory), and
//! imagePullPolicy Never, and an image built FROM scratch (no PATH in its config). Images are
//! built with umoci and pushed with skopeo.

mod common;

use common::{condition, container_status, eventually, status_column, Cluster};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[track_caller]
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubus(args: &[&str]) -> String {
    run(env!("CARGO_BIN_EXE_kubus"), args)
}

/// A private directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("kubus-e2e-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Debian's docker-registry (distribution 2.8) on a free loopback port, storing under a
/// private directory; killed and removed when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = TempDir::new("registry");
        let port = common::free_port();
        let cfg = dir.0.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.0.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs");
        let r = Registry { child, port, _dir: dir };
        eventually(20, || {
            let out =
                Command::new("busybox").args(["wget", "-qO-", &format!("http://{}/v2/", r.addr())]).output().ok()?;
            out.status.success().then_some(())
        });
        r
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `layout:tag` (an OCI layout) as `name` (`repo:tag`) with skopeo; the manifest digest.
    fn push(&self, layout: &Path, tag: &str, name: &str) -> String {
        let dest = format!("docker://{}/{name}", self.addr());
        run(
            "skopeo",
            &["copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:{tag}", layout.display()), &dest],
        );
        let inspect = run("skopeo", &["inspect", "--tls-verify=false", &dest]);
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        v["Digest"].as_str().unwrap().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a layer with `/marker` (holding `marker`) on top of `layout:from`, tagged `layout:to`.
fn add_marker(layout: &Path, from: &str, to: &str, marker: &str, scratch: &Path) {
    let bundle = scratch.join(format!("bundle-{to}"));
    let l = layout.display().to_string();
    run("umoci", &["unpack", "--image", &format!("{l}:{from}"), bundle.to_str().unwrap()]);
    std::fs::write(bundle.join("rootfs/marker"), format!("{marker}\n")).unwrap();
    run("umoci", &["repack", "--image", &format!("{l}:{to}"), bundle.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&bundle);
}

/// A busybox image built from scratch with umoci from the host's busybox-static, tagged
/// `layout:base`.
fn build_base(layout: &Path, scratch: &Path) {
    let l = layout.display().to_string();
    run("umoci", &["init", "--layout", &l]);
    run("umoci", &["new", "--image", &format!("{l}:empty")]);
    let bundle = scratch.join("bundle-base");
    run("umoci", &["unpack", "--image", &format!("{l}:empty"), bundle.to_str().unwrap()]);
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    run("umoci", &["repack", "--image", &format!("{l}:base"), bundle.to_str().unwrap()]);
    run("umoci", &["config", "--image", &format!("{l}:base"), "--config.env", "PATH=/bin"]);
    let _ = std::fs::remove_dir_all(&bundle);
}

fn pod_yaml(name: &str, image: &str, policy: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "{image}"
    imagePullPolicy: {policy}
    command: ["sh", "-c", "cat /marker; exec sleep 3600"]
"#
    )
}

#[track_caller]
fn assert_runs_marker(c: &Cluster, pod: &str, marker: &str) -> serde_json::Value {
    let p = c.wait_pod_ready(pod, 60);
    let logs = eventually(10, || {
        let l = c.kubectl(&["logs", pod]).stdout;
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs, format!("{marker}\n"), "pod {pod} runs the image it asked for");
    p
}

#[test]
fn pulls_from_a_registry_and_through_a_docker_io_mirror() {
    let registry = Registry::start();
    let scratch = TempDir::new("images-pull");
    let registries = scratch.0.join("registries.yaml");
    std::fs::write(
        &registries,
        format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{}\"\n", registry.addr()),
    )
    .unwrap();
    let c = Cluster::start_with_node("img-pull", &["--registries", registries.to_str().unwrap()]);
    let node_dir = c.dir.join("node");
    // The node's built-in busybox, exported as an OCI layout, is the base of two images.
    let layout = scratch.0.join("layout");
    let out =
        kubus(&["image", "export", "busybox", layout.to_str().unwrap(), "--data-dir", node_dir.to_str().unwrap()]);
    assert!(out.contains("exported busybox"), "{out}");
    add_marker(&layout, "latest", "app1", "app-one", &scratch.0);
    add_marker(&layout, "latest", "app2", "app-two", &scratch.0);
    let digest1 = registry.push(&layout, "app1", "team/app:1");
    registry.push(&layout, "app2", "library/app:2");

    // A pull from the registry named in the image.
    let image1 = format!("{}/team/app:1", registry.addr());
    c.apply(&pod_yaml("direct", &image1, "IfNotPresent"));
    let p = assert_runs_marker(&c, "direct", "app-one");
    let s = container_status(&p, "main");
    assert_eq!(s["image"], image1.as_str());
    assert_eq!(s["imageID"], format!("{image1}@{digest1}").replace(":1@", "@"), "{p}");
    let events = c.events_of("direct");
    let pulled = events.iter().find(|(r, _)| r == "Pulled").map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(pulled.starts_with(&format!("Successfully pulled image \"{image1}\" in ")), "{events:?}");

    // docker.io/library/app:2 comes from the mirror (docker.io itself is unreachable here).
    c.apply(&pod_yaml("mirrored", "docker.io/library/app:2", "IfNotPresent"));
    assert_runs_marker(&c, "mirrored", "app-two");
    let events = c.events_of("mirrored");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image \"docker.io/library/app:2\" in ")),
        "{events:?}"
    );
    // The short name resolves to the same image, already present now.
    c.apply(&pod_yaml("short-name", "app:2", "IfNotPresent"));
    assert_runs_marker(&c, "short-name", "app-two");
    assert!(c.events_of("short-name").iter().any(|(r, m)| r == "Pulled" && m.contains("already present on machine")));

    // The node lists what it pulled, in its status and on the command line.
    let node = c.node.as_ref().unwrap().node_name.clone();
    eventually(90, || {
        let n = c.get_json(&["node", &node]);
        let names: Vec<String> = n["status"]["images"]
            .as_array()?
            .iter()
            .flat_map(|i| i["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(String::from))
            .collect();
        (names.contains(&image1) && names.iter().any(|n| n == "docker.io/library/app:2")).then_some(())
    });
    // `kubus image` takes `kubus up`'s data dir as well as the node's own.
    let ls = kubus(&["image", "ls", "--data-dir", c.dir.to_str().unwrap()]);
    assert!(ls.contains(&image1) && ls.contains("docker.io/library/app:2"), "{ls}");
}

#[test]
fn imports_archives_and_the_import_directory_for_pull_policy_never() {
    let scratch = TempDir::new("images-import");
    let layout = scratch.0.join("layout");
    build_base(&layout, &scratch.0);
    for (tag, marker) in [("dir", "from-import-dir"), ("oci", "from-oci-archive"), ("docker", "from-docker-archive")] {
        add_marker(&layout, "base", tag, marker, &scratch.0);
    }
    let src = |tag: &str| format!("oci:{}:{tag}", layout.display());
    // An archive in <data dir>/node/images/import/ is imported when the node starts.
    let c = Cluster::start_with_node_prepared("img-import", &[], |dir| {
        let import = dir.join("node/images/import");
        std::fs::create_dir_all(&import).unwrap();
        let dest = format!("oci-archive:{}:docker.io/team/preloaded:1", import.join("preloaded.tar").display());
        run("skopeo", &["copy", "--quiet", &src("dir"), &dest]);
    });
    let node_dir = c.dir.join("node");
    // Never with an image the node lacks: ErrImageNeverPull, nothing pulled (checked again at
    // the end: it must stay so, without any back-off reason).
    c.apply(&pod_yaml("absent", "registry.example/absent:1", "Never"));
    let p = c.wait_pod("absent", 60, "ErrImageNeverPull", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    let first_seen = std::time::Instant::now();
    let msg = container_status(&p, "main")["state"]["waiting"]["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("registry.example/absent:1") && msg.contains("pull policy of Never"), "{msg}");
    assert_eq!(status_column(&c, "absent"), "ErrImageNeverPull");
    c.apply(&pod_yaml("preloaded", "team/preloaded:1", "Never"));
    assert_runs_marker(&c, "preloaded", "from-import-dir");
    assert!(c.events_of("preloaded").iter().any(|(r, m)| r == "Pulled" && m.contains("already present on machine")));

    // `kubus image import` of an OCI archive and of a docker-save tarball, into the running node.
    let oci = scratch.0.join("oci.tar");
    run(
        "skopeo",
        &["copy", "--quiet", &src("oci"), &format!("oci-archive:{}:registry.example/ocitool:2", oci.display())],
    );
    let docker = scratch.0.join("docker.tar");
    run("skopeo", &["copy", "--quiet", &src("docker"), &format!("docker-archive:{}:dockertool:3", docker.display())]);
    let out = kubus(&[
        "image",
        "import",
        oci.to_str().unwrap(),
        docker.to_str().unwrap(),
        "--data-dir",
        node_dir.to_str().unwrap(),
    ]);
    assert!(out.contains("imported registry.example/ocitool:2"), "{out}");
    assert!(out.contains("imported docker.io/library/dockertool:3"), "{out}");
    c.apply(&pod_yaml("from-oci", "registry.example/ocitool:2", "Never"));
    c.apply(&pod_yaml("from-docker", "dockertool:3", "Never"));
    assert_runs_marker(&c, "from-oci", "from-oci-archive");
    assert_runs_marker(&c, "from-docker", "from-docker-archive");

    let events = c.events_of("absent");
    assert!(events.iter().any(|(r, m)| r == "ErrImageNeverPull" || m.contains("ErrImageNeverPull")), "{events:?}");
    assert!(!events.iter().any(|(r, _)| r == "Pulling"), "Never must not pull: {events:?}");
    // Past the node's resync (10 s) and a retry it is still ErrImageNeverPull, as upstream: no
    // back-off reason replaces it.
    std::thread::sleep(Duration::from_secs(14).saturating_sub(first_seen.elapsed()));
    let p = c.pod("absent");
    assert_eq!(container_status(&p, "main")["state"]["waiting"]["reason"], "ErrImageNeverPull", "{p}");
}

/// containerd's and Docker's PATH for a container whose image and pod set none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image built FROM scratch: one static binary (the host's busybox-static) in
/// /usr/local/bin and a config with no environment at all, tagged `layout:scratch`.
fn build_scratch(layout: &Path, scratch: &Path) {
    let l = layout.display().to_string();
    run("umoci", &["init", "--layout", &l]);
    run("umoci", &["new", "--image", &format!("{l}:scratch")]);
    let bundle = scratch.join("bundle-scratch");
    run("umoci", &["unpack", "--image", &format!("{l}:scratch"), bundle.to_str().unwrap()]);
    let bin = bundle.join("rootfs/usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    run("umoci", &["repack", "--image", &format!("{l}:scratch"), bundle.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&bundle);
    let config: serde_json::Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--config", &format!("oci:{l}:scratch")])).unwrap();
    assert!(config["config"]["Env"].is_null(), "the image sets no environment: {config}");
}

#[test]
fn an_image_from_scratch_runs_execs_and_probes_with_the_default_path() {
    let registry = Registry::start();
    let scratch = TempDir::new("images-scratch");
    let layout = scratch.0.join("layout");
    build_scratch(&layout, &scratch.0);
    registry.push(&layout, "scratch", "team/scratch:1");
    let image = format!("{}/team/scratch:1", registry.addr());
    let c = Cluster::start_with_node("img-scratch", &[]);
    // Every command names the binary bare: the runtime, the shell, kubectl exec and the exec
    // probes all find it through the default PATH. The second container's own PATH wins.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: scratch}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "{image}"
    command: ["busybox", "sh", "-c", "echo \"PATH=$PATH\"; exec busybox sleep 3600"]
    readinessProbe: {{exec: {{command: ["busybox", "true"]}}, periodSeconds: 1}}
    livenessProbe: {{exec: {{command: ["busybox", "true"]}}, periodSeconds: 1, failureThreshold: 1}}
  - name: own-path
    image: "{image}"
    command: ["busybox", "sleep", "3600"]
    env: [{{name: PATH, value: "/opt/bin:/usr/local/bin"}}]
    readinessProbe: {{exec: {{command: ["busybox", "true"]}}, periodSeconds: 1}}
"#
    ));
    let p = c.wait_pod_ready("scratch", 60);
    let logs = eventually(10, || {
        let l = c.kubectl(&["logs", "scratch", "-c", "main"]).stdout;
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs, format!("PATH={DEFAULT_PATH}\n"));
    // What a process started by kubectl exec gets (not a shell's idea of it).
    let path_in = |container: &str| {
        let env = c.kubectl(&["exec", "scratch", "-c", container, "--", "busybox", "env"]).expect_ok();
        env.lines().find_map(|l| l.strip_prefix("PATH=")).map(str::to_string)
    };
    assert_eq!(path_in("main").as_deref(), Some(DEFAULT_PATH));
    assert_eq!(path_in("own-path").as_deref(), Some("/opt/bin:/usr/local/bin"));
    // The liveness probe (one failure restarts) keeps passing: nothing restarted.
    std::thread::sleep(Duration::from_secs(3));
    let p2 = c.pod("scratch");
    assert_eq!(condition(&p2, "Ready"), "True", "{p2}");
    for name in ["main", "own-path"] {
        assert_eq!(container_status(&p2, name)["restartCount"], 0, "{p2}");
        assert_eq!(container_status(&p2, name)["containerID"], container_status(&p, name)["containerID"], "{p2}");
    }
}
