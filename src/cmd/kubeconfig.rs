//! Kubeconfigs: the ones Kubus writes (the administrator's, and `kubus kubeconfig user`, as
//! kubeadm's command of that name), and the credential a command presents over NATS, read
//! from one (`--kubeconfig`): its current context's client certificate or token.

use anyhow::{bail, Context as _};
use base64::Engine as _;
use kubus_apiserver::pki::{CertAndKey, ClusterPki};
use kubus_bus::credential::Credential;
use std::path::{Path, PathBuf};

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

/// The credential of the current context's user in the kubeconfig at `path`, for the API
/// servers of `cluster`: a client certificate and key (inline or as files), or a token.
pub fn credential(path: &Path, cluster: &str) -> anyhow::Result<Credential> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let named = |list: &str, name: &serde_yaml::Value| {
        doc[list].as_sequence().and_then(|items| items.iter().find(|i| &i["name"] == name)).cloned()
    };
    let context = named("contexts", &doc["current-context"]).context("the kubeconfig has no current context")?;
    let user = named("users", &context["context"]["user"]).context("the current context's user is missing")?;
    let user = &user["user"];
    let base = path.parent().unwrap_or(Path::new("."));
    // `<name>-data` inline (base64), else the file `<name>` names (relative to the kubeconfig).
    let pem = |name: &str| -> anyhow::Result<Option<String>> {
        if let Some(data) = user[format!("{name}-data").as_str()].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .with_context(|| format!("{name}-data"))?;
            return Ok(Some(String::from_utf8(bytes).with_context(|| format!("{name}-data is not PEM"))?));
        }
        match user[name].as_str() {
            Some(file) => {
                let file = base.join(file);
                Ok(Some(std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?))
            }
            None => Ok(None),
        }
    };
    if let (Some(cert), Some(key)) = (pem("client-certificate")?, pem("client-key")?) {
        return Credential::certificate(&cert, &key, cluster)
            .with_context(|| format!("the client certificate of {}", path.display()));
    }
    if let Some(token) = user["token"].as_str() {
        return Ok(Credential::token(token));
    }
    if let Some(file) = user["tokenFile"].as_str() {
        let file = base.join(file);
        return Ok(Credential::token(
            &std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
        ));
    }
    bail!("the current user of {} has neither a client certificate and key nor a token", path.display())
}

#[derive(clap::Args, Debug)]
pub struct KubeconfigArgs {
    #[command(subcommand)]
    pub command: KubeconfigCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KubeconfigCommand {
    /// Print a kubeconfig for a user with a client certificate the cluster CA signs (as
    /// `kubeadm kubeconfig user`), e.g. a node's: `--client-name system:node:NAME --org system:nodes`.
    User(UserArgs),
}

#[derive(clap::Args, Debug)]
pub struct UserArgs {
    /// The user (the certificate's common name).
    #[arg(long)]
    pub client_name: String,
    /// A group of the user (the certificate's organization; repeatable).
    #[arg(long = "org")]
    pub orgs: Vec<String>,
    /// The data dir of the `kubus up` whose CA signs (its pki/ holds the CA key).
    #[arg(long, default_value_os_t = crate::cmd::up::default_data_dir())]
    pub data_dir: PathBuf,
    /// The API server's URL; by default the one in the data dir's admin kubeconfig.
    #[arg(long)]
    pub server: Option<String>,
    /// Name of the cluster on the bus (the kubeconfig's cluster and context name).
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
}

pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let KubeconfigCommand::User(args) = args.command;
    if args.client_name.trim().is_empty() {
        bail!("--client-name must not be empty");
    }
    let pki = args.data_dir.join("pki");
    let groups: Vec<&str> = args.orgs.iter().map(String::as_str).collect();
    let (ca_pem, cert) = ClusterPki::issue_client_in(&pki, &args.client_name, &groups)
        .with_context(|| format!("issuing a certificate with the cluster CA of {}", pki.display()))?;
    let server = match args.server {
        Some(s) => s,
        None => server_of(&args.data_dir.join("kubeconfig"))?,
    };
    print!("{}", render(&server, &args.cluster, Some(&ca_pem), &args.client_name, Some(&cert)));
    Ok(())
}

/// The server of a kubeconfig's first cluster.
fn server_of(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} for the API server's address (or pass --server)", path.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    doc["clusters"][0]["cluster"]["server"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} names no server", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_kubeconfig_gives_back_its_credential() {
        let names =
            kubus_apiserver::pki::ServingNames::for_cluster("h", &[], "10.96.0.1".parse().unwrap(), "cluster.local");
        let pki = ClusterPki::ephemeral(&names).unwrap();
        let dir = std::env::temp_dir().join(format!("kubus-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let text = render("https://127.0.0.1:6443", "c", Some(&pki.ca_pem), "system:node:n1", Some(&pki.admin));
        std::fs::write(&path, &text).unwrap();
        let credential = credential(&path, "c");
        let plain = render("http://127.0.0.1:8080", "c", None, "nobody", None);
        std::fs::write(&path, plain).unwrap();
        let none = credential_err(&path);
        std::fs::write(&path, "apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts:\n- name: x\n  context: {user: u}\nusers:\n- name: u\n  user: {token: abc}\n").unwrap();
        let token = super::credential(&path, "c");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(credential.unwrap(), Credential::Certificate(_)));
        assert!(none.contains("neither a client certificate"), "{none}");
        assert_eq!(token.unwrap().authorization().unwrap().as_deref(), Some("Bearer abc"));
    }

    fn credential_err(path: &Path) -> String {
        format!("{:#}", credential(path, "c").unwrap_err())
    }
}
