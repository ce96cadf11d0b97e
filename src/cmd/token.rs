//! `kubus token create`: a bootstrap token for joining nodes, as `kubeadm token create
//! --print-join-command`. The token is upstream's: a Secret `kube-system/bootstrap-token-<id>`
//! of type `bootstrap.kubernetes.io/token`, in kubeadm's node-token group, so a Secret made by
//! hand or by other tools works the same. It prints the command that joins a machine.
//! `kubus token list` and `kubus token delete` are kubeadm's (same columns, same messages).

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
    /// List the bootstrap tokens (kubeadm's columns).
    List(ClusterArgs),
    /// Delete bootstrap tokens (by ID or whole token); their NATS logins go with them.
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// The data dir of the `kubus up` whose cluster holds the tokens.
    #[arg(long, default_value_os_t = crate::cmd::up::default_data_dir())]
    pub data_dir: PathBuf,
    /// Name of the cluster on the bus.
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Token IDs (`abcdef`) or whole tokens (`abcdef.0123456789abcdef`).
    #[arg(required = true)]
    pub tokens: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
    match args.command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List(args) => list(args).await,
        TokenCommand::Delete(args) => delete(args).await,
    }
}

/// kubeadm's short duration (`ShortHumanDuration`): 45s, 59m, 23h, 6d, 2y.
fn short_duration(seconds: i64) -> String {
    match seconds {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 86_400 * 365 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (86_400 * 365)),
    }
}

async fn list(args: ClusterArgs) -> anyhow::Result<()> {
    let local = crate::cmd::up::LocalCluster::open(&args.data_dir, &args.cluster).await?;
    let secrets: Vec<Secret> = local
        .client
        .list(Some(bootstrap::NAMESPACE), &Default::default())
        .await
        .context("listing the bootstrap token Secrets")?;
    let mut rows = vec![["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"].map(String::from)];
    let now = std::time::SystemTime::now();
    for secret in secrets.iter().filter(|s| s.type_.as_deref() == Some(bootstrap::BOOTSTRAP_TOKEN_SECRET_TYPE)) {
        let data: BTreeMap<&str, String> = secret
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), String::from_utf8(v.0.clone()).ok()?)))
            .collect();
        let (Some(id), Some(token_secret)) = (data.get("token-id"), data.get("token-secret")) else { continue };
        let (ttl, expires) = match data.get("expiration") {
            Some(e) => match kubus_apimachinery::time::parse_rfc3339(e) {
                Some(at) => {
                    let left = match at.duration_since(now) {
                        Ok(d) => d.as_secs() as i64,
                        Err(e) => -(e.duration().as_secs() as i64) - 2,
                    };
                    (short_duration(left), e.clone())
                }
                None => ("<invalid>".into(), e.clone()),
            },
            None => ("<forever>".into(), "<never>".into()),
        };
        let usages: Vec<&str> = data
            .iter()
            .filter(|(_, v)| v.as_str() == "true")
            .filter_map(|(k, _)| k.strip_prefix("usage-bootstrap-"))
            .collect();
        let or_none = |v: Option<&String>| v.filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| "<none>".into());
        rows.push([
            format!("{id}.{token_secret}"),
            ttl,
            expires,
            usages.join(","),
            or_none(data.get("description")),
            or_none(data.get("auth-extra-groups")),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("   ").trim_end());
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let local = crate::cmd::up::LocalCluster::open(&args.cluster.data_dir, &args.cluster.cluster).await?;
    for token in &args.tokens {
        let id = match bootstrap::parse(token) {
            Some((id, _)) => id,
            None if token.len() == 6 && token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => token,
            None => anyhow::bail!(
                "given token didn't match pattern \"^([a-z0-9]{{6}})$\" or \"^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$\""
            ),
        };
        local
            .client
            .delete::<Secret>(bootstrap::NAMESPACE, &format!("{}{id}", bootstrap::SECRET_PREFIX), &Default::default())
            .await
            .with_context(|| format!("failed to delete bootstrap token {id:?}"))?;
        println!("bootstrap token {id:?} deleted");
    }
    Ok(())
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
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
