//! Who may log in to the embedded nats-server, and what each may do there.
//!
//! - The administrator, user [`crate::embedded::USER`] with the data dir's password: the
//!   store and the API server (one connection), and local tools.
//! - The control plane's other components, each by an nkey made at every start (only its
//!   public key is written): the controller manager and scheduler ([`Component::Requests`]:
//!   the API subjects and replies under their own inbox prefix, nothing of the streams), and
//!   the informers ([`Component::Informers`]: reading the objects stream, never writing it).
//! - A node, by the nkey it registered when it joined: the API subjects, its own node's
//!   usage and stream subjects, replies under its own inbox prefix, and nothing of the streams
//!   (no `$JS.API`, no `kubus.<c>.obj|keys|meta`), nor another node's subjects.
//! - A bootstrap token, as user `bootstrap-<id>` with the token's secret as password (kept as
//!   a bcrypt hash): only the join subject, and replies under its own inbox prefix.
//!
//! The users are rendered into `<data dir>/nats-users.conf`, which the server's configuration
//! includes, and the server is told to reload: a removed user's connections close at once.
//! Registered nodes are kept in `<data dir>/nats-users.json`; bootstrap tokens are not kept
//! (the API server sets them from the token Secrets it holds).

use crate::store::key::encode_token;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{0:?} is not an nkey user public key")]
    Nkey(String),
    #[error("{0:?} cannot be a cluster name on the bus (letters, digits, '-' and '_')")]
    Cluster(String),
    #[error("the nkey is registered for another node")]
    NkeyInUse,
    #[error("node {node:?} is registered with another nkey")]
    Taken { node: String },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot hash a bootstrap token: {0}")]
    Hash(String),
}

/// The prefix of node `node`'s reply subjects: the only inbox its NATS user may subscribe
/// to, and the one the API server answers a node's requests on.
pub fn node_inbox_prefix(cluster: &str, node: &str) -> String {
    format!("_INBOX.{cluster}.node-{}", encode_token(node))
}

/// A control-plane component that needs less than the administrator's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// Clients of the API server over NATS only (controller manager, scheduler).
    Requests,
    /// Informers reading the objects stream directly (list, then watch by consumers).
    Informers,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Requests => "cp-components",
            Component::Informers => "cp-informers",
        }
    }
}

/// The prefix of a component's reply subjects.
pub fn component_inbox_prefix(cluster: &str, component: Component) -> String {
    format!("_INBOX.{cluster}.{}", component.name())
}

/// A new nkey user key: its public key (`U...`, what the server's configuration holds) and
/// its seed (`SU...`, what the client logs in with).
pub fn new_nkey() -> Result<(String, String), UsersError> {
    let key = nkeys::KeyPair::new_user();
    let seed = key.seed().map_err(|e| UsersError::Nkey(e.to_string()))?;
    Ok((key.public_key(), seed))
}

/// The NATS user of bootstrap token `id`.
pub fn bootstrap_user(id: &str) -> String {
    format!("bootstrap-{id}")
}

/// The prefix of bootstrap token `id`'s reply subjects.
pub fn bootstrap_inbox_prefix(cluster: &str, id: &str) -> String {
    format!("_INBOX.{cluster}.bootstrap-{id}")
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A bootstrap token's user: the hash of its secret, and what it was made from (so an
/// unchanged token is not hashed again).
struct Bootstrap {
    fingerprint: [u8; 32],
    hash: String,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Registered {
    /// cluster -> node -> nkey public key.
    nodes: BTreeMap<String, BTreeMap<String, String>>,
}

struct Inner {
    conf: PathBuf,
    registry: PathBuf,
    pid_file: PathBuf,
    admin_password: String,
    registered: Registered,
    bootstrap: BTreeMap<(String, String), Bootstrap>,
    /// (cluster, component) -> nkey public key, of this start.
    components: BTreeMap<(String, Component), String>,
}

/// The embedded server's users (see the module's documentation); cheap to clone.
#[derive(Clone)]
pub struct NatsUsers {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for NatsUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsUsers").finish_non_exhaustive()
    }
}

/// The name of the included users file, next to the server's configuration.
pub(crate) const USERS_FILE: &str = "nats-users.conf";

impl NatsUsers {
    /// The users of the embedded server of `data_dir`, written out (the server is started
    /// after this; nothing to reload).
    pub(crate) fn load(data_dir: &Path, admin_password: &str) -> Result<NatsUsers, UsersError> {
        let registry = data_dir.join("nats-users.json");
        // A registry that does not parse stops the start: starting empty would lock every
        // joined node out at the next write.
        let registered = match std::fs::read(&registry) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| UsersError::Io {
                path: registry.clone(),
                source: std::io::Error::other(format!("not a Kubus users registry: {e}")),
            })?,
            Err(_) => Registered::default(),
        };
        let users = NatsUsers {
            inner: Arc::new(Mutex::new(Inner {
                conf: data_dir.join(USERS_FILE),
                registry,
                pid_file: data_dir.join("nats-server.pid"),
                admin_password: admin_password.to_string(),
                registered,
                bootstrap: BTreeMap::new(),
                components: BTreeMap::new(),
            })),
        };
        users.lock().write()?;
        Ok(users)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The nkey node `node` of `cluster` logs in with, if it joined.
    pub fn node_key(&self, cluster: &str, node: &str) -> Option<String> {
        self.lock().registered.nodes.get(cluster)?.get(node).cloned()
    }

    /// Lets node `node` of `cluster` log in with `nkey` (a user public key, `U...`). A node
    /// registered with another key is refused unless `replace` (its old key is then refused).
    pub fn register_node(&self, cluster: &str, node: &str, nkey: &str, replace: bool) -> Result<(), UsersError> {
        if !is_token(cluster) {
            return Err(UsersError::Cluster(cluster.to_string()));
        }
        if !nkey.starts_with('U') || nkeys::KeyPair::from_public_key(nkey).is_err() {
            return Err(UsersError::Nkey(nkey.to_string()));
        }
        let mut inner = self.lock();
        // One nkey is one user: nats-server refuses a configuration naming it twice.
        let elsewhere = inner
            .registered
            .nodes
            .iter()
            .any(|(c, nodes)| nodes.iter().any(|(n, k)| k == nkey && (c.as_str(), n.as_str()) != (cluster, node)));
        if elsewhere {
            return Err(UsersError::NkeyInUse);
        }
        let nodes = inner.registered.nodes.entry(cluster.to_string()).or_default();
        match nodes.get(node) {
            Some(have) if have == nkey => return Ok(()),
            Some(_) if !replace => return Err(UsersError::Taken { node: node.to_string() }),
            _ => {}
        }
        nodes.insert(node.to_string(), nkey.to_string());
        inner.persist()?;
        inner.write()?;
        inner.reload();
        Ok(())
    }

    /// Lets `component` of `cluster` log in with `nkey` (replacing the key it had).
    pub fn register_component(&self, cluster: &str, component: Component, nkey: &str) -> Result<(), UsersError> {
        if !is_token(cluster) {
            return Err(UsersError::Cluster(cluster.to_string()));
        }
        if !nkey.starts_with('U') || nkeys::KeyPair::from_public_key(nkey).is_err() {
            return Err(UsersError::Nkey(nkey.to_string()));
        }
        let mut inner = self.lock();
        let in_use = inner.registered.nodes.values().any(|nodes| nodes.values().any(|k| k == nkey))
            || inner.components.iter().any(|(k, v)| v == nkey && k != &(cluster.to_string(), component));
        if in_use {
            return Err(UsersError::NkeyInUse);
        }
        inner.components.insert((cluster.to_string(), component), nkey.to_string());
        inner.write()?;
        inner.reload();
        Ok(())
    }

    /// Removes node `node` of `cluster`: its connections close. True if it was registered.
    pub fn remove_node(&self, cluster: &str, node: &str) -> Result<bool, UsersError> {
        let mut inner = self.lock();
        let removed = inner.registered.nodes.get_mut(cluster).and_then(|n| n.remove(node)).is_some();
        if removed {
            inner.persist()?;
            inner.write()?;
            inner.reload();
        }
        Ok(removed)
    }

    /// Makes the bootstrap tokens of `cluster` exactly `tokens` (id, secret): each may log in
    /// as [`bootstrap_user`] with its secret. True if anything changed.
    pub fn set_bootstrap_tokens(&self, cluster: &str, tokens: &[(String, String)]) -> Result<bool, UsersError> {
        if !is_token(cluster) {
            return Err(UsersError::Cluster(cluster.to_string()));
        }
        let fingerprint = |id: &str, secret: &str| -> [u8; 32] {
            let d = ring::digest::digest(&ring::digest::SHA256, format!("{id}.{secret}").as_bytes());
            d.as_ref().try_into().expect("SHA-256 is 32 bytes")
        };
        let mut next = BTreeMap::new();
        {
            let inner = self.lock();
            for (id, secret) in tokens.iter().filter(|(id, _)| is_token(id)) {
                let key = (cluster.to_string(), id.clone());
                let fp = fingerprint(id, secret);
                let hash = match inner.bootstrap.get(&key) {
                    Some(b) if b.fingerprint == fp => b.hash.clone(),
                    // The secret's own entropy (16 characters of [a-z0-9], ~82 bits) is the
                    // protection; the hash only keeps it out of the file, so the cost is low.
                    _ => bcrypt::hash(secret, 6).map_err(|e| UsersError::Hash(e.to_string()))?,
                };
                next.insert(key, Bootstrap { fingerprint: fp, hash });
            }
        }
        let mut inner = self.lock();
        let old: Vec<_> = inner
            .bootstrap
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|(k, b)| (k.clone(), b.fingerprint))
            .collect();
        let new: Vec<_> = next.iter().map(|(k, b)| (k.clone(), b.fingerprint)).collect();
        if old == new {
            return Ok(false);
        }
        inner.bootstrap.retain(|(c, _), _| c != cluster);
        inner.bootstrap.extend(next);
        inner.write()?;
        inner.reload();
        Ok(true)
    }
}

/// A NATS configuration string.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn list(subjects: &[String]) -> String {
    subjects.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", ")
}

/// The permissions of node `node` of `cluster`.
fn node_permissions(cluster: &str, node: &str) -> String {
    let n = encode_token(node);
    let publish = [
        crate::api::api_subject(cluster),
        crate::api::api_priority_subject(cluster),
        crate::usage::subject(cluster, node),
        format!("kubus.{cluster}.node.{n}.stream.*.down"),
    ];
    let subscribe = [
        format!("{}.>", node_inbox_prefix(cluster, node)),
        crate::stream::open_subject(cluster, node),
        format!("kubus.{cluster}.node.{n}.stream.*.up"),
    ];
    // allow_responses: a node answers the API server's stream opens (one reply each) without
    // a right to publish to any inbox.
    format!(
        "{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }}, allow_responses: true }}",
        list(&publish),
        list(&subscribe)
    )
}

/// The permissions of a control-plane component of `cluster`.
fn component_permissions(cluster: &str, component: Component) -> String {
    let inbox = format!("{}.>", component_inbox_prefix(cluster, component));
    let publish: Vec<String> = match component {
        Component::Requests => vec![crate::api::api_subject(cluster), crate::api::api_priority_subject(cluster)],
        Component::Informers => {
            // What `Store::attach`, `list` and `watch` send: stream info, the compacted
            // revision (a message get on the meta stream), and ordered pull consumers on the
            // objects stream (made again after a gap, deleted, fetched from).
            let config = crate::store::StoreConfig { cluster: cluster.to_string(), ..Default::default() };
            let (objects, meta) = (config.objects_stream(), config.meta_stream());
            vec![
                format!("$JS.API.STREAM.INFO.{objects}"),
                format!("$JS.API.STREAM.INFO.{meta}"),
                format!("$JS.API.STREAM.MSG.GET.{objects}"),
                format!("$JS.API.STREAM.MSG.GET.{meta}"),
                format!("$JS.API.CONSUMER.CREATE.{objects}"),
                format!("$JS.API.CONSUMER.CREATE.{objects}.>"),
                format!("$JS.API.CONSUMER.INFO.{objects}.*"),
                format!("$JS.API.CONSUMER.DELETE.{objects}.*"),
                format!("$JS.API.CONSUMER.MSG.NEXT.{objects}.*"),
            ]
        }
    };
    format!("{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}", list(&publish), quoted(&inbox))
}

fn bootstrap_permissions(cluster: &str, id: &str) -> String {
    format!(
        "{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
        quoted(&crate::join::subject(cluster)),
        quoted(&format!("{}.>", bootstrap_inbox_prefix(cluster, id)))
    )
}

impl Inner {
    fn render(&self) -> String {
        let mut users = vec![format!(
            "    {{ user: {}, password: {} }}",
            quoted(crate::embedded::USER),
            quoted(&self.admin_password)
        )];
        for (cluster, nodes) in &self.registered.nodes {
            for (node, nkey) in nodes {
                users.push(format!(
                    "    # node {node:?} of cluster {cluster}\n    {{ nkey: {}, permissions: {} }}",
                    quoted(nkey),
                    node_permissions(cluster, node)
                ));
            }
        }
        for ((cluster, component), nkey) in &self.components {
            users.push(format!(
                "    # {} of cluster {cluster}\n    {{ nkey: {}, permissions: {} }}",
                component.name(),
                quoted(nkey),
                component_permissions(cluster, *component)
            ));
        }
        for ((cluster, id), b) in &self.bootstrap {
            users.push(format!(
                "    {{ user: {}, password: {}, permissions: {} }}",
                quoted(&bootstrap_user(id)),
                quoted(&b.hash),
                bootstrap_permissions(cluster, id)
            ));
        }
        format!("# Written by Kubus; changes are lost.\nauthorization {{\n  users = [\n{}\n  ]\n}}\n", users.join("\n"))
    }

    fn write(&self) -> Result<(), UsersError> {
        crate::embedded::write_private(&self.conf, &self.render())
            .map_err(|e| UsersError::Io { path: self.conf.clone(), source: std::io::Error::other(e.to_string()) })
    }

    fn persist(&self) -> Result<(), UsersError> {
        let json = serde_json::to_string_pretty(&self.registered).expect("the registry serializes");
        crate::embedded::write_private(&self.registry, &json)
            .map_err(|e| UsersError::Io { path: self.registry.clone(), source: std::io::Error::other(e.to_string()) })
    }

    /// Tells the running server to read its configuration again (a server being restarted
    /// reads the new file anyway).
    fn reload(&self) {
        // Only a nats-server: a pid file left by a server that died may name another process
        // by now (SIGHUP would end most).
        let pid =
            std::fs::read_to_string(&self.pid_file).ok().and_then(|p| p.trim().parse::<u32>().ok()).filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "nats-server")
            });
        match pid {
            Some(pid) => {
                crate::embedded::signal(pid, "HUP");
                crate::metrics::NATS_USERS_RELOADS.inc();
            }
            None => tracing::warn!(pid_file = %self.pid_file.display(), "no nats-server pid: users not reloaded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nodes_and_tokens_with_their_own_subjects() {
        let dir = std::env::temp_dir().join(format!("kubus-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = NatsUsers::load(&dir, "pw").unwrap();
        let key = nkeys::KeyPair::new_user().public_key();
        users.register_node("c", "a.b", &key, false).unwrap();
        assert!(matches!(
            users.register_node("c", "a.b", &nkeys::KeyPair::new_user().public_key(), false),
            Err(UsersError::Taken { .. })
        ));
        assert!(users.register_node("c", "x", "UNOTAKEY", false).is_err());
        assert!(matches!(users.register_node("c", "other", &key, true), Err(UsersError::NkeyInUse)));
        assert!(users.set_bootstrap_tokens("c", &[("abcdef".into(), "0123456789abcdef".into())]).unwrap());
        assert!(!users.set_bootstrap_tokens("c", &[("abcdef".into(), "0123456789abcdef".into())]).unwrap());
        let conf = std::fs::read_to_string(dir.join(USERS_FILE)).unwrap();
        assert!(conf.contains(&key));
        assert!(
            conf.contains("\"_INBOX.c.node-a_2eb.>\"") && conf.contains("\"kubus.c.node.a_2eb.stream.*.up\""),
            "{conf}"
        );
        assert!(conf.contains("\"bootstrap-abcdef\"") && conf.contains("\"kubus.c.join\""), "{conf}");
        assert!(!conf.contains("0123456789abcdef"), "the secret is hashed: {conf}");
        // Components: their own keys (not a node's), their own inboxes, no stream writes.
        let informers = nkeys::KeyPair::new_user().public_key();
        assert!(matches!(users.register_component("c", Component::Informers, &key), Err(UsersError::NkeyInUse)));
        users.register_component("c", Component::Informers, &informers).unwrap();
        let conf = std::fs::read_to_string(dir.join(USERS_FILE)).unwrap();
        assert!(conf.contains(&informers) && conf.contains("\"_INBOX.c.cp-informers.>\""), "{conf}");
        assert!(conf.contains("\"$JS.API.CONSUMER.MSG.NEXT.KUBUS_c_OBJECTS.*\""), "{conf}");
        assert!(!conf.contains("\"kubus.c.obj.>\""), "{conf}");
        // Kept for a restart.
        let again = NatsUsers::load(&dir, "pw").unwrap();
        assert_eq!(again.node_key("c", "a.b"), Some(key));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
