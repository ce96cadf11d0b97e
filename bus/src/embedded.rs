//! The embedded default: with no NATS URL given, Kubus runs Debian's `nats-server` as a child
//! process with JetStream storing under the data dir, and keeps it running.
//!
//! The server must be Kubus's own: it gets a server name no other server has, the port is
//! checked free before it starts (a taken port is refused, naming the process that holds it),
//! and it is only reported up once a connection to the address is answered with that name.
//! Without that check, a NATS server the user already runs on the port would silently become
//! the cluster's store. A child that exits is restarted on the same data dir and address;
//! clients reconnect by themselves, and [`crate::connect_to_embedded`] checks the server's name
//! again on every reconnection.
//!
//! The server takes only clients that log in: the administrator, user [`USER`] with the
//! password kept in `<data_dir>/nats.password` (made once, owner-only, so clients on other
//! machines keep working across restarts), and the nodes and bootstrap tokens of
//! [`crate::nats_users`], each limited to its own subjects. Whoever reaches the port without a
//! login, on this machine or beyond, gets `Authorization Violation` and nothing of the store.
//! Beyond loopback the server speaks only TLS, with a certificate of the cluster CA.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

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
    #[error(
        "the embedded NATS cannot listen on {addr}: the port is taken by {holder}. Kubus will not use a server it \
         did not start as its store: pass --nats-listen with a free address, or --nats nats://{addr} to use that \
         server deliberately"
    )]
    PortTaken { addr: String, holder: String },
    #[error("the NATS server at {addr} is {found:?}, not the embedded server {expected:?} this Kubus started")]
    NotOurs { addr: String, expected: String, found: String },
    #[error("cannot connect to the embedded NATS at {addr}: {source}")]
    Connect { addr: String, source: async_nats::ConnectError },
    #[error("the embedded NATS listens on {addr}, beyond loopback, only with TLS (a certificate of the cluster CA)")]
    NeedsTls { addr: String },
    #[error(transparent)]
    Users(#[from] crate::nats_users::UsersError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The server's certificate when it listens beyond loopback.
#[derive(Debug, Clone)]
pub struct EmbeddedTls {
    /// The server's certificate followed by the CA's (joining nodes find the CA they pinned in
    /// the chain).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The cluster CA (the server's clients trust only it).
    pub ca_pem: String,
}

static RESTARTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "kubus_embedded_nats_restarts_total",
        "Times the embedded nats-server exited and was started again"
    )
    .expect("metric registers once")
});

/// The user every client of the embedded server logs in as.
pub const USER: &str = "kubus";

/// The password of the embedded server of `data_dir`: 256 random bits, made once and kept in
/// `<data_dir>/nats.password`, readable by its owner only.
fn password(data_dir: &Path) -> Result<String, EmbeddedError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("nats.password");
    let io = |source| EmbeddedError::Io { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(p) if p.trim().len() == 64 && p.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            use std::os::unix::fs::PermissionsExt;
            // Kept only if it is still the owner's alone.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            return Ok(p.trim().to_string());
        }
        Ok(_) => std::fs::remove_file(&path).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(io)?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    file.write_all(password.as_bytes()).map_err(io)?;
    Ok(password)
}

/// Writes `contents` to `path` readable by its owner only (the server's configuration holds
/// the password).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), EmbeddedError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| EmbeddedError::Io { path: path.to_path_buf(), source };
    // A new file renamed over the old one: a reader holding the old one (made with wider
    // modes by an older Kubus) never sees the password.
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Restarts of a child that keeps exiting wait longer each time (a crash loop must not spin,
/// replaying JetStream recovery back to back), up to the cap...
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// ...and start from the first wait again once a child stayed up this long.
const STEADY: Duration = Duration::from_secs(30);

/// How to run the child: everything a restart needs again.
#[derive(Clone)]
struct Spec {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    addr: String,
    server_name: String,
}

pub struct EmbeddedNats {
    /// With the credentials: for clients, never for a log line.
    url: String,
    /// How this process's clients log in (the administrator; the CA when TLS is on).
    login: crate::Login,
    users: crate::nats_users::NatsUsers,
    public_url: String,
    server_name: String,
    data_dir: PathBuf,
    /// Whether the server is up right now (false while it is being restarted).
    up: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    supervisor: tokio::task::JoinHandle<()>,
}

/// Candidate locations of the server binary, Debian's first.
fn find_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KUBUS_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let candidates = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Where the embedded server of a data dir listens unless told otherwise: the address it
/// listened on before (recorded in `<data_dir>/nats.listen`), else a free loopback port of
/// its own, so it never collides with a NATS server the user runs on the standard port.
pub fn default_listen(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("nats.listen"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "127.0.0.1:0".to_string())
}

/// The URL of the embedded server of a data dir, as the running `kubus up` recorded it (for
/// `kubus node`, `kubus sim-nodes` and other commands on the same machine).
pub fn recorded_url(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("nats.url")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn random_token() -> String {
    let mut bytes = [0u8; 6];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes.copy_from_slice(&(nanos.as_nanos() as u64 ^ std::process::id() as u64).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl EmbeddedNats {
    /// Starts nats-server listening on `listen` (`host:port`, `[v6]:port`; port 0 picks a free
    /// one) with its JetStream store in `<data_dir>/nats`, waits until it answers as itself, and
    /// supervises it. The address it listens on is recorded in `<data_dir>/nats.listen`.
    ///
    /// Beyond loopback it needs `tls`: the port then speaks only TLS.
    pub async fn start(data_dir: &Path, listen: &str, tls: Option<EmbeddedTls>) -> Result<EmbeddedNats, EmbeddedError> {
        LazyLock::force(&RESTARTS);
        let bin = find_binary().ok_or_else(|| EmbeddedError::NotInstalled("/usr/sbin/nats-server".into()))?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbeddedError::Io { path, source }
        };
        let store = data_dir.join("nats");
        std::fs::create_dir_all(&store).map_err(io(&store))?;
        let config_path = data_dir.join("nats-server.conf");
        stop_stale_in_background(data_dir, &config_path).await;

        let (host, port) = split_listen(listen);
        let port = if port == 0 { free_port(&host).map_err(io(data_dir))? } else { port };
        let addr = host_port(&host, port);
        let server_name = format!("kubus-{}", random_token());
        let log = data_dir.join("nats-server.log");
        if !crate::is_loopback_host(&host) && tls.is_none() {
            return Err(EmbeddedError::NeedsTls { addr });
        }
        let password = password(data_dir)?;
        let users = crate::nats_users::NatsUsers::load(data_dir, &password)?;
        let tls_block = match &tls {
            // 2.9 has no TLS-first: INFO goes out in the clear, then the handshake.
            Some(t) => format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n",
                t.cert_file.display(),
                t.key_file.display()
            ),
            None => String::new(),
        };
        // max_payload above the 1 MiB default so objects up to Kubernetes' 1.5 MiB fit.
        let config = format!(
            "listen: \"{addr}\"\nserver_name: {server_name}\nmax_payload: 2MB\npid_file: \"{pid}\"\n\
             log_file: \"{log}\"\njetstream {{\n  store_dir: \"{store}\"\n}}\n{tls_block}\
             include \"{users}\"\n",
            pid = data_dir.join("nats-server.pid").display(),
            log = log.display(),
            store = store.display(),
            users = crate::nats_users::USERS_FILE,
        );
        let login = match &tls {
            Some(t) => crate::Login::default().trusting(&t.ca_pem)?,
            None => crate::Login::default(),
        };
        write_private(&config_path, &config)?;
        let scheme = if tls.is_some() { "tls" } else { "nats" };
        // Listening on every address, this machine's clients dial loopback (the name its
        // certificate has).
        let dialled = match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => host_port("::1", port),
            Ok(ip) if ip.is_unspecified() => host_port("127.0.0.1", port),
            _ => addr.clone(),
        };
        let spec = Spec { bin, config: config_path, log, addr: addr.clone(), server_name: server_name.clone() };
        let child = spawn(&spec).await?;
        let listen_file = data_dir.join("nats.listen");
        std::fs::write(&listen_file, &addr).map_err(io(&listen_file))?;
        tracing::info!(%addr, server = %server_name, data = %store.display(), "embedded nats-server started");
        let (up_tx, up) = watch::channel(true);
        let (stop_tx, stop_rx) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(spec, child, up_tx, stop_rx, data_dir.to_path_buf()));
        Ok(EmbeddedNats {
            url: format!("{scheme}://{USER}:{password}@{dialled}"),
            public_url: format!("{scheme}://{addr}"),
            login,
            users,
            server_name,
            data_dir: data_dir.to_path_buf(),
            up,
            stop: Some(stop_tx),
            supervisor,
        })
    }

    /// The URL clients connect with, credentials included: keep it out of logs and command
    /// lines ([`EmbeddedNats::public_url`] is the one to show).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How this process's clients log in to the server (with [`EmbeddedNats::url`]).
    pub fn login(&self) -> &crate::Login {
        &self.login
    }

    /// The server's users: nodes register here when they join.
    pub fn users(&self) -> &crate::nats_users::NatsUsers {
        &self.users
    }

    /// The URL without credentials.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The unique server name this child runs with (what [`crate::connect_to_embedded`]
    /// expects).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Whether the child is up (false between its exit and its restart).
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Stops supervising, then stops the server with SIGTERM (it flushes JetStream), SIGKILL
    /// after 10 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.supervisor).await;
        let _ = std::fs::remove_file(self.data_dir.join("nats-server.pid"));
    }
}

/// Fails unless `client` is connected to the server named `expected` (and not to another
/// server that answered on the same address).
pub(crate) async fn check_connected(
    client: &async_nats::Client,
    addr: &str,
    expected: &str,
) -> Result<(), EmbeddedError> {
    match server_name(client).await {
        Some(found) if found == expected => Ok(()),
        found => Err(EmbeddedError::NotOurs {
            addr: addr.to_string(),
            expected: expected.to_string(),
            found: found.unwrap_or_default(),
        }),
    }
}

/// The name of the server `client` is connected to; None when it is not connected within
/// 10 s (clients connect in the background).
pub(crate) async fn server_name(client: &async_nats::Client) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // A flush completes only once the client holds the INFO of the server it is
        // connected to now.
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), client.flush()).await {
            return Some(client.server_info().server_name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Starts the child and waits until the address answers with its server name.
async fn spawn(spec: &Spec) -> Result<Child, EmbeddedError> {
    if let Some(holder) = holder_in_background(&spec.addr).await {
        return Err(EmbeddedError::PortTaken { addr: spec.addr.clone(), holder });
    }
    let mut child = Command::new(&spec.bin)
        .arg("-c")
        .arg(&spec.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A process group of its own: Ctrl-C in a terminal signals the foreground group, and
        // the child must stop when Kubus stops it, not exit (and be restarted) on its own.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EmbeddedError::NotInstalled(spec.bin.display().to_string()),
            _ => EmbeddedError::Io { path: spec.bin.clone(), source: e },
        })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Lost a race for the port with another process?
            return Err(match holder_in_background(&spec.addr).await {
                Some(holder) => EmbeddedError::PortTaken { addr: spec.addr.clone(), holder },
                None => EmbeddedError::Exited { status: status.to_string(), log: spec.log.clone() },
            });
        }
        match server_name_at(&spec.addr).await {
            Some(name) if name == spec.server_name => return Ok(child),
            Some(name) => {
                let _ = child.kill().await;
                return Err(EmbeddedError::NotOurs {
                    addr: spec.addr.clone(),
                    expected: spec.server_name.clone(),
                    found: name,
                });
            }
            None => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            return Err(EmbeddedError::Timeout { addr: spec.addr.clone(), secs: 20, log: spec.log.clone() });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The wait before the next start of a child that exited.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: FIRST_BACKOFF }
    }

    /// The wait after a child exited that had been up for `uptime`.
    fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= STEADY {
            self.next = FIRST_BACKOFF;
        }
        self.after_failed_start()
    }

    /// The wait after a start that failed.
    fn after_failed_start(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Keeps the child running until told to stop: an exit is logged and followed by a restart on
/// the same data dir and address (counted), after a back-off that grows while the child keeps
/// exiting.
async fn supervise(
    spec: Spec,
    mut child: Child,
    up: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    data_dir: PathBuf,
) {
    let mut backoff = Backoff::new();
    let mut started = Instant::now();
    loop {
        let status = tokio::select! {
            // A stop wins over an exit seen at the same time: a child exiting while Kubus
            // shuts down is not restarted.
            biased;
            _ = &mut stop => return terminate(child).await,
            status = child.wait() => status,
        };
        let _ = up.send(false);
        tracing::error!(status = ?status.ok(), log = %spec.log.display(), "embedded nats-server exited; restarting it");
        let mut wait = backoff.after_exit(started.elapsed());
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
            stop_stale_in_background(&data_dir, &spec.config).await;
            let spawned = tokio::select! {
                biased;
                _ = &mut stop => return,
                spawned = spawn(&spec) => spawned,
            };
            match spawned {
                Ok(c) => {
                    child = c;
                    started = Instant::now();
                    RESTARTS.inc();
                    let _ = up.send(true);
                    tracing::info!(addr = %spec.addr, "embedded nats-server is back");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedded nats-server did not restart; retrying");
                    wait = backoff.after_failed_start();
                }
            }
        }
    }
}

/// Stops the child with SIGTERM (it flushes JetStream), SIGKILL after 10 s.
async fn terminate(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::task::spawn_blocking(move || signal(pid, "TERM")).await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// The `server_name` a NATS server at `addr` announces in its INFO line, if one answers.
async fn server_name_at(addr: &str) -> Option<String> {
    let read = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        let info: serde_json::Value = serde_json::from_str(line.strip_prefix("INFO ")?.trim()).ok()?;
        Some(info["server_name"].as_str().unwrap_or_default().to_string())
    };
    tokio::time::timeout(Duration::from_secs(1), read).await.ok().flatten()
}

/// [`port_holder`] off the async threads (it reads every process's fds in /proc).
async fn holder_in_background(addr: &str) -> Option<String> {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || port_holder(&addr)).await.ok().flatten()
}

/// Who listens on `addr` already: "pid N (command line)" when /proc tells, else a description;
/// None when the port can be bound.
fn port_holder(addr: &str) -> Option<String> {
    let (host, port) = split_listen(addr);
    if std::net::TcpListener::bind((host.as_str(), port)).is_ok() {
        return None;
    }
    Some(listener_process(port).unwrap_or_else(|| "another process".to_string()))
}

/// The arguments of a process, from /proc/<pid>/cmdline.
fn cmdline(pid: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The process with a listening socket on `port`, from /proc/net/tcp{,6} and /proc/*/fd.
fn listener_process(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let local_port = cols.get(1)?.rsplit_once(':')?.1;
                    // State 0A is LISTEN.
                    (u16::from_str_radix(local_port, 16).ok()? == port && cols.get(3) == Some(&"0A"))
                        .then(|| cols.get(9).map(|s| s.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_dir in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_dir.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
        });
        if holds {
            return Some(format!("pid {pid} ({})", cmdline(&pid.to_string()).join(" ")));
        }
    }
    None
}

/// [`stop_stale`] off the async threads (it waits for the process to go).
async fn stop_stale_in_background(data_dir: &Path, config: &Path) {
    let (data_dir, config) = (data_dir.to_path_buf(), config.to_path_buf());
    let _ = tokio::task::spawn_blocking(move || stop_stale(&data_dir, &config)).await;
}

/// A server left behind by a Kubus that was killed would hold the store: stop it first. Only
/// a nats-server started with this data dir's `config` is: the pid in the file may since have
/// been reused by any other process, another nats-server included.
fn stop_stale(data_dir: &Path, config: &Path) {
    let pid_file = data_dir.join("nats-server.pid");
    let Ok(pid) = std::fs::read_to_string(&pid_file) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let args = cmdline(&pid.to_string());
    let ours = args.windows(2).any(|w| w[0] == "-c" && Path::new(&w[1]) == config);
    if comm.trim() == "nats-server" && ours {
        tracing::warn!(pid, "stopping a nats-server left behind on this data dir");
        signal(pid, "KILL");
        for _ in 0..100 {
            if gone(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

/// Whether a process has ended (a zombie holds neither the port nor the store).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Sends `sig` to `pid` with kill(1): none of this crate's dependencies offers a safe
/// kill(2), and the crate stays free of unsafe code. Blocking: call it off the async threads.
pub(crate) fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// `host:port` (`[v6]:port`) split into the bare host and the port; a port that does not
/// parse is 0 (pick a free one), a bare host gets NATS' standard port.
pub fn split_listen(listen: &str) -> (String, u16) {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return (addr.ip().to_string(), addr.port());
    }
    if let Ok(ip) = listen.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return (ip.to_string(), 4222);
    }
    match listen.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse().unwrap_or(0)),
        None => (listen.to_string(), 4222),
    }
}

/// `host:port`, the host in brackets when it is an IPv6 address (`[::1]:4300`): the form
/// nats-server's `listen`, NATS URLs and socket addresses all read.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn free_port(host: &str) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_its_holder() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let holder = port_holder(&addr).expect("taken");
        assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
        drop(l);
        assert_eq!(port_holder(&addr), None);
    }

    #[test]
    fn ipv6_addresses_keep_their_brackets() {
        assert_eq!(split_listen("[::1]:4300"), ("::1".to_string(), 4300));
        assert_eq!(host_port("::1", 4300), "[::1]:4300");
        assert_eq!(split_listen(&host_port("::1", 4300)), ("::1".to_string(), 4300));
        assert_eq!(split_listen("[::1]"), ("::1".to_string(), 4222));
        assert_eq!(split_listen("::1"), ("::1".to_string(), 4222));
        assert_eq!(split_listen("127.0.0.1:0"), ("127.0.0.1".to_string(), 0));
        assert_eq!(host_port("127.0.0.1", 4300), "127.0.0.1:4300");
        assert_eq!(split_listen("localhost:4300"), ("localhost".to_string(), 4300));
        assert_eq!(split_listen("localhost"), ("localhost".to_string(), 4222));
        // A taken IPv6 port is found like an IPv4 one.
        if let Ok(l) = std::net::TcpListener::bind("[::1]:0") {
            let addr = host_port("::1", l.local_addr().unwrap().port());
            assert!(port_holder(&addr).is_some_and(|h| h.contains(&format!("pid {}", std::process::id()))));
        }
    }

    #[test]
    fn a_crash_loop_backs_off_until_a_child_stays_up() {
        let mut backoff = Backoff::new();
        let quick = Duration::from_secs(1);
        assert_eq!(backoff.after_exit(quick), FIRST_BACKOFF);
        assert_eq!(backoff.after_exit(quick), FIRST_BACKOFF * 2);
        assert_eq!(backoff.after_failed_start(), FIRST_BACKOFF * 4);
        for _ in 0..10 {
            backoff.after_exit(quick);
        }
        assert_eq!(backoff.after_exit(quick), MAX_BACKOFF);
        // A child that stayed up starts the sequence over.
        assert_eq!(backoff.after_exit(STEADY), FIRST_BACKOFF);
        assert_eq!(backoff.after_exit(quick), FIRST_BACKOFF * 2);
    }

    /// A nats-server started with `args`, killed at the end.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn server(args: &[&str]) -> Server {
        let bin = find_binary().expect("nats-server is installed");
        let child = std::process::Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        // Until exec: /proc shows the forked test process, not nats-server.
        let started = Instant::now();
        let comm = || std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
        while comm().trim() != "nats-server" {
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server(child)
    }

    fn alive(s: &mut Server) -> bool {
        s.0.try_wait().unwrap().is_none()
    }

    #[test]
    fn only_this_data_dirs_server_is_stopped_as_stale() {
        let dir = std::env::temp_dir().join(format!("kubus-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("nats-server.conf");
        let port = free_port("127.0.0.1").unwrap();
        std::fs::write(&config, format!("listen: \"127.0.0.1:{port}\"\n")).unwrap();
        let pid_file = dir.join("nats-server.pid");

        // The pid file names a nats-server of someone else (a reused pid): left running.
        let mut other = server(&["-a", "127.0.0.1", "-p", &free_port("127.0.0.1").unwrap().to_string()]);
        std::fs::write(&pid_file, other.0.id().to_string()).unwrap();
        stop_stale(&dir, &config);
        assert!(alive(&mut other), "an unrelated nats-server was killed");
        assert!(!pid_file.exists());

        // The one started on this data dir's config: stopped.
        let mut stale = server(&["-c", config.to_str().unwrap()]);
        std::fs::write(&pid_file, stale.0.id().to_string()).unwrap();
        stop_stale(&dir, &config);
        let started = Instant::now();
        while alive(&mut stale) {
            assert!(started.elapsed() < Duration::from_secs(5), "the stale nats-server was not stopped");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(alive(&mut other));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
