//! A node joining with a bootstrap token (`kubus node --nats URL --token T --ca-cert-hash H`),
//! and the identity it keeps for its restarts in `<node data dir>/identity/`: the cluster CA,
//! its client certificate and key (`system:node:<name>`), its NATS nkey seed and its name.
//! The token itself is never stored.

use anyhow::{bail, Context as _};
use std::path::Path;
use std::time::Duration;

/// How long a join keeps trying to reach the cluster and to get an answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused login is retried: a token's NATS user appears about a second after its
/// Secret.
const LOGIN_RETRY: Duration = Duration::from_secs(8);

/// What a joined node logs in with.
pub struct JoinedIdentity {
    pub node_name: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub nkey_seed: String,
}

impl std::fmt::Debug for JoinedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedIdentity").field("node_name", &self.node_name).finish_non_exhaustive()
    }
}

const FILES: [&str; 5] = ["node-name", "ca.crt", "node.crt", "node.key", "node.nk"];

impl JoinedIdentity {
    /// The identity kept in `dir`, if the node joined before.
    pub fn load(dir: &Path) -> anyhow::Result<Option<JoinedIdentity>> {
        if !dir.join("node.nk").exists() {
            return Ok(None);
        }
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()))
        };
        Ok(Some(JoinedIdentity {
            node_name: read(FILES[0])?.trim().to_string(),
            ca_pem: read(FILES[1])?,
            cert_pem: read(FILES[2])?,
            key_pem: read(FILES[3])?,
            nkey_seed: read(FILES[4])?.trim().to_string(),
        }))
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let contents = [&self.node_name, &self.ca_pem, &self.cert_pem, &self.key_pem, &self.nkey_seed];
        // The seed last: its presence is what says the node joined.
        for (file, text) in FILES.iter().zip(contents) {
            let mode = if file.ends_with(".key") || file.ends_with(".nk") { 0o600 } else { 0o644 };
            kubus_apiserver::pki::write(&dir.join(file), text, mode)?;
        }
        Ok(())
    }

    /// How the node logs in to the cluster's NATS at `url`: its nkey, its own inbox, and TLS
    /// with the cluster CA unless the server is on this machine's loopback.
    pub fn login(&self, cluster: &str, url: &str) -> anyhow::Result<kubus_bus::Login> {
        let mut login = match kubus_bus::is_loopback_url(url) && !url.starts_with("tls://") {
            true => kubus_bus::Login::default(),
            false => kubus_bus::Login::default().trusting(&self.ca_pem)?,
        };
        login.nkey_seed = Some(self.nkey_seed.clone());
        login.inbox_prefix = Some(kubus_bus::nats_users::node_inbox_prefix(cluster, &self.node_name));
        Ok(login)
    }
}

/// Joins node `node_name` to `cluster` through the NATS at `url` with bootstrap token `token`,
/// trusting a TLS server only if its chain holds the CA of `ca_cert_hash`; keeps the identity in
/// `dir`.
pub async fn join(
    url: &str,
    cluster: &str,
    token: &str,
    ca_cert_hash: Option<&str>,
    node_name: &str,
    dir: &Path,
) -> anyhow::Result<JoinedIdentity> {
    let Some((id, secret)) = kubus_apiserver::authn::bootstrap::parse(token) else {
        bail!("--token must be a bootstrap token, [a-z0-9]{{6}}.[a-z0-9]{{16}} (as `kubus token create` prints)");
    };
    let url = kubus_bus::redact(url);
    let mut login = kubus_bus::Login {
        user_password: Some((kubus_bus::nats_users::bootstrap_user(id), secret.to_string())),
        inbox_prefix: Some(kubus_bus::nats_users::bootstrap_inbox_prefix(cluster, id)),
        ..Default::default()
    };
    // Beyond loopback only over TLS, to the server whose chain holds the pinned CA: the
    // token's secret goes to no one else.
    let loopback = kubus_bus::is_loopback_url(&url);
    match ca_cert_hash {
        Some(hash) if !loopback || url.starts_with("tls://") => {
            login.tls = Some(std::sync::Arc::new(kubus_bus::tls::trust_pinned(hash)?))
        }
        Some(_) => {}
        None if !loopback || url.starts_with("tls://") => {
            bail!("joining over the network needs --ca-cert-hash (as `kubus token create` prints): it is how the cluster's NATS is trusted")
        }
        None => {}
    }
    let started = tokio::time::Instant::now();
    let client = loop {
        let refused = |e: &async_nats::ConnectError| e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation;
        match kubus_bus::connect_once(&url, "kubus-node-join", &login).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() < if refused(&e) { LOGIN_RETRY } else { JOIN_TIMEOUT } => {
                tracing::debug!(error = %e, "joining: cannot log in yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) if refused(&e) => bail!(
                "the cluster's NATS at {url} refused bootstrap token {id:?}: it is unknown, expired or not for \
                 authentication (`kubus token create` makes one)"
            ),
            Err(e) => return Err(e).with_context(|| format!("connecting to {url} to join")),
        }
    };
    let (nkey, nkey_seed) = kubus_bus::nats_users::new_nkey()?;
    let pkcs8 = kubus_bus::join::new_key()?;
    let request = kubus_bus::join::request(cluster, node_name, &nkey, &pkcs8)?;
    let reply = kubus_bus::join::send(&client, cluster, token, &request, JOIN_TIMEOUT).await?;
    let (Some(cert_pem), Some(ca_pem)) = (reply.certificate, reply.ca) else {
        bail!("the join answer holds no certificate");
    };
    if let Some(hash) = ca_cert_hash {
        if kubus_bus::tls::ca_cert_hash(&ca_pem)? != hash {
            bail!("the join answer's CA is not the one of --ca-cert-hash");
        }
    }
    let key_pem = kubus_bus::join::key_pem(&pkcs8);
    let identity = JoinedIdentity { node_name: node_name.to_string(), ca_pem, cert_pem, key_pem, nkey_seed };
    identity.save(dir)?;
    // The server reloads its users to let the new nkey in; the agent starts once it may.
    let login = identity.login(cluster, &url)?;
    let started = tokio::time::Instant::now();
    while let Err(e) = kubus_bus::connect_once(&url, "kubus-node-join", &login).await {
        if started.elapsed() > LOGIN_RETRY {
            bail!("joined, but the cluster's NATS does not take the node's new login: {e}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("node {node_name} joined the cluster; its identity is kept in {}", dir.display());
    Ok(identity)
}
