//! `kubus token create`: a bootstrap token for joining nodes, as `kubeadm token create
//! --print-join-command`. The token is upstream's: a Secret `kube-system/bootstrap-token-<id>`
//! of type `bootstrap.kubernetes.io/token`, in kubeadm's node-token group, so a Secret made by
//! hand or by other tools works the same. It prints the command that joins a machine.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kubus_apiserver::authn::bootstrap;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bootstrap token and print the command that joins a node with it.
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// How long the token may be used (Go duration; `0` never expires), kubeadm's --ttl.
    #[arg(long, default_value = "24h", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub ttl: std::time::Duration,
    /// A note kept with the token.
    #[arg(long)]
    pub description: Option<String>,
    /// The data dir of the `kubus up` whose cluster the token joins.
    #[arg(long, default_value_os_t = crate::cmd::up::default_data_dir())]
    pub data_dir: PathBuf,
    /// Name of the cluster on the bus.
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
}

/// `n` random characters of `[a-z0-9]` (a bootstrap token's alphabet).
fn random_token_part(n: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    let mut urandom = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    while out.len() < n {
        std::io::Read::read_exact(&mut urandom, &mut buf).context("reading /dev/urandom")?;
        // Rejection sampling: bytes of 252 and above would favour the first letters.
        out.extend(buf.iter().filter(|b| **b < 252).map(|b| ALPHABET[*b as usize % 36] as char).take(n - out.len()));
    }
    Ok(out)
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = args.command;
    let dir = &args.data_dir;
    let local = crate::cmd::up::LocalCluster::open(dir, &args.cluster).await?;
    let (id, secret) = (random_token_part(6)?, random_token_part(16)?);
    let mut data: BTreeMap<String, String> = [
        ("token-id", id.as_str()),
        ("token-secret", secret.as_str()),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        ("auth-extra-groups", bootstrap::DEFAULT_NODE_TOKEN_GROUP),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if !args.ttl.is_zero() {
        let expires = std::time::SystemTime::now() + args.ttl;
        data.insert("expiration".into(), kubus_apimachinery::time::format_rfc3339(expires));
    }
    if let Some(d) = &args.description {
        data.insert("description".into(), d.clone());
    }
    let secret_object = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("{}{id}", bootstrap::SECRET_PREFIX)),
            namespace: Some(bootstrap::NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(bootstrap::BOOTSTRAP_TOKEN_SECRET_TYPE.into()),
        string_data: Some(data),
        ..Default::default()
    };
    local.client.create(&secret_object).await.context("creating the bootstrap token's Secret")?;
    let ca = std::fs::read_to_string(dir.join("pki").join("ca.crt"))
        .with_context(|| format!("reading the cluster CA in {}", dir.join("pki").display()))?;
    let hash = kubus_bus::tls::ca_cert_hash(&ca)?;
    let url = std::fs::read_to_string(dir.join("nats.join-url"))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|_| kubus_bus::redact(&local.url));
    if !url.starts_with("tls://") {
        eprintln!(
            "note: this cluster's NATS listens on loopback only ({url}); for other machines to join, restart \
             `kubus up` with --nats-listen ADDRESS:PORT (it then speaks TLS)"
        );
    }
    println!("kubus node --nats {url} --token {id}.{secret} --ca-cert-hash {hash}");
    Ok(())
}
