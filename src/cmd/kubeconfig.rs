//! `kubus kubeconfig user` (as kubeadm's command of that name), and the credential a command
//! presents over NATS, read from a kubeconfig (`--kubeconfig`): its current context's client
//! certificate or token.

use anyhow::{bail, Context as _};
use kubus_apiserver::kubeconfig::{self, render};
use kubus_apiserver::pki::ClusterPki;
use kubus_bus::credential::Credential;
use std::path::{Path, PathBuf};

/// The credential of the current context's user in the kubeconfig at `path`, for the API
/// servers of `cluster`: a client certificate and key (inline or as files), or a token.
pub fn credential(path: &Path, cluster: &str) -> anyhow::Result<Credential> {
    let user = kubeconfig::read(path)?.user.context("the current context's user is missing")?;
    if let (Some(cert), Some(key)) = (&user.client_certificate, &user.client_key) {
        return Credential::certificate(cert, key, cluster)
            .with_context(|| format!("the client certificate of {}", path.display()));
    }
    match &user.token {
        Some(token) => Ok(Credential::token(token)),
        None => bail!("the current user of {} has neither a client certificate and key nor a token", path.display()),
    }
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

/// The server of a kubeconfig's current context.
fn server_of(path: &Path) -> anyhow::Result<String> {
    let kubeconfig = kubeconfig::read(path).context("the API server's address (or pass --server)")?;
    kubeconfig.server.with_context(|| format!("{} names no server", path.display()))
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
