//! The embedded default: with no NATS URL given, Kubus runs Debian's `nats-server` as a child
//! process with JetStream storing under the data dir.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "nats-server not found (looked for {0}); install it with `apt-get install nats-server` or pass --nats URL"
    )]
    NotInstalled(String),
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("nats-server exited during start-up ({status}); its log is {log}")]
    Exited { status: String, log: PathBuf },
    #[error("nats-server did not accept connections on {addr} within {secs}s; its log is {log}")]
    Timeout { addr: String, secs: u64, log: PathBuf },
}

pub struct EmbeddedNats {
    child: Child,
    url: String,
    data_dir: PathBuf,
}

/// Candidate locations of the server binary, Debian's first.
fn find_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KUBUS_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let candidates = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl EmbeddedNats {
    /// Starts nats-server listening on `listen` (`host:port`; port 0 picks a free one) with its
    /// JetStream store in `<data_dir>/nats`, and waits until it accepts connections.
    pub async fn start(data_dir: &Path, listen: &str) -> Result<EmbeddedNats, EmbeddedError> {
        let bin = find_binary().ok_or_else(|| EmbeddedError::NotInstalled("/usr/sbin/nats-server".into()))?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbeddedError::Io { path, source }
        };
        let store = data_dir.join("nats");
        std::fs::create_dir_all(&store).map_err(io(&store))?;
        stop_stale(data_dir);

        let (host, port) = split_listen(listen);
        let port = if port == 0 { free_port(&host).map_err(io(data_dir))? } else { port };
        let config_path = data_dir.join("nats-server.conf");
        let log = data_dir.join("nats-server.log");
        // max_payload above the 1 MiB default so objects up to Kubernetes' 1.5 MiB fit.
        let config = format!(
            "listen: \"{host}:{port}\"\nserver_name: kubus\nmax_payload: 2MB\npid_file: \"{pid}\"\n\
             log_file: \"{log}\"\njetstream {{\n  store_dir: \"{store}\"\n}}\n",
            pid = data_dir.join("nats-server.pid").display(),
            log = log.display(),
            store = store.display(),
        );
        std::fs::write(&config_path, config).map_err(io(&config_path))?;
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => EmbeddedError::NotInstalled(bin.display().to_string()),
                _ => EmbeddedError::Io { path: bin.clone(), source: e },
            })?;

        let addr = format!("{host}:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(EmbeddedError::Exited { status: status.to_string(), log });
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::Timeout { addr, secs: 20, log });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(%addr, data = %store.display(), "embedded nats-server started");
        Ok(EmbeddedNats { child, url: format!("nats://{addr}"), data_dir: data_dir.to_path_buf() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server with SIGTERM (it flushes JetStream), then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            signal(pid, "TERM");
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_ok() {
                let _ = std::fs::remove_file(self.data_dir.join("nats-server.pid"));
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// A server left behind by a Kubus that was killed would hold the store: stop it first.
fn stop_stale(data_dir: &Path) {
    let pid_file = data_dir.join("nats-server.pid");
    let Ok(pid) = std::fs::read_to_string(&pid_file) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "nats-server" {
        tracing::warn!(pid, "stopping a nats-server left behind on this data dir");
        signal(pid, "KILL");
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

fn signal(pid: u32, sig: &str) {
    // kill(1) keeps this crate free of unsafe code.
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn split_listen(listen: &str) -> (String, u16) {
    match listen.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse().unwrap_or(0)),
        None => (listen.to_string(), 4222),
    }
}

fn free_port(host: &str) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}
