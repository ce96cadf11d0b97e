//! Kubeconfig files, as kubectl reads and writes them: the ones Kubus writes (the
//! administrator's, `kubus kubeconfig user`), and what the current context of one names (its
//! server, the CA to trust, its user's client certificate or token), read once for every
//! tool that takes `--kubeconfig` (node agents over NATS, the benches and tests over HTTPS).

use crate::pki::CertAndKey;
use base64::Engine as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("the kubeconfig has no current context")]
    NoContext,
    #[error("{0} is not base64 of PEM text")]
    Data(String),
}

/// A kubeconfig with one cluster, user and context: `server`, the CA to trust (none for plain
/// HTTP) and the user's client certificate (none: a user without credentials).
pub fn render(server: &str, cluster: &str, ca_pem: Option<&str>, user: &str, cert: Option<&CertAndKey>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = ca_pem.map(|ca| format!("    certificate-authority-data: {}\n", b64(ca))).unwrap_or_default();
    let credentials = match cert {
        Some(c) => {
            format!("\n    client-certificate-data: {}\n    client-key-data: {}", b64(&c.cert_pem), b64(&c.key_pem))
        }
        None => " {}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n{ca}    server: {server}\n\
         contexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: default\n\
         current-context: {cluster}\nusers:\n- name: {user}\n  user:{credentials}\n"
    )
}

/// What the current context of a kubeconfig names.
#[derive(Default)]
pub struct Kubeconfig {
    /// The cluster's `server`, if the context names a cluster that has one.
    pub server: Option<String>,
    /// `certificate-authority-data`, or the file `certificate-authority` names.
    pub ca_pem: Option<String>,
    /// The context's user, if it names one that is there.
    pub user: Option<User>,
}

/// A kubeconfig user's credentials, PEM and token text.
#[derive(Default)]
pub struct User {
    pub client_certificate: Option<String>,
    pub client_key: Option<String>,
    pub token: Option<String>,
}

/// Credentials never reach a log line.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("client_certificate", &self.client_certificate.is_some())
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads the current context of the kubeconfig at `path`: `<name>-data` inline (base64), else
/// the file `<name>` names (relative to the kubeconfig), as kubectl takes them.
pub fn read(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
    let read_file =
        |p: &Path| std::fs::read_to_string(p).map_err(|source| KubeconfigError::Read { path: p.into(), source });
    let text = read_file(path)?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|source| KubeconfigError::Parse { path: path.into(), source })?;
    let named = |list: &str, name: &serde_yaml::Value| {
        doc[list].as_sequence().and_then(|items| items.iter().find(|i| &i["name"] == name)).cloned()
    };
    let context = named("contexts", &doc["current-context"]).ok_or(KubeconfigError::NoContext)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let text_of = |v: &serde_yaml::Value, name: &str| -> Result<Option<String>, KubeconfigError> {
        let data = format!("{name}-data");
        if let Some(b64) = v[data.as_str()].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| KubeconfigError::Data(data.clone()))?;
            return String::from_utf8(bytes).map(Some).map_err(|_| KubeconfigError::Data(data));
        }
        v[name].as_str().map(|file| read_file(&base.join(file))).transpose()
    };
    let cluster = named("clusters", &context["context"]["cluster"]).unwrap_or_default();
    let cluster = &cluster["cluster"];
    let user = match named("users", &context["context"]["user"]) {
        Some(u) => Some(User {
            client_certificate: text_of(&u["user"], "client-certificate")?,
            client_key: text_of(&u["user"], "client-key")?,
            token: match u["user"]["token"].as_str() {
                Some(t) => Some(t.to_string()),
                None => u["user"]["tokenFile"].as_str().map(|f| read_file(&base.join(f))).transpose()?,
            },
        }),
        None => None,
    };
    Ok(Kubeconfig {
        server: cluster["server"].as_str().map(str::to_string),
        ca_pem: text_of(cluster, "certificate-authority")?,
        user,
    })
}
