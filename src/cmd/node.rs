//! The node agent: in `kubus up` (unless --no-node), or on another machine with
//! `kubus node --nats URL`, joining the cluster through its NATS.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_bus::api::ApiClient;
use kubus_controller_runtime::{Client, Informer, InformerFactory};
use kubus_kubelet::reset::StateDir;
use kubus_kubelet::{Kubelet, KubeletConfig};
use std::path::PathBuf;

/// Settings of a node agent (shared by `kubus node` and `kubus up`).
#[derive(clap::Args, Debug, Clone)]
pub struct NodeOpts {
    /// Name of this node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address the node reports (default: the source address of the default route).
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Pod CIDR of this node; by default the control plane assigns one.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Where container logs are written (<ns>_<pod>_<uid>/<container>/<n>.log).
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// Parent cgroup of the pods.
    #[arg(long, default_value = "/kubus")]
    pub cgroup_root: String,
    /// Linux bridge pods are attached to.
    #[arg(long, default_value = "kubus0")]
    pub bridge: String,
    /// Registry mirrors and credentials, in k3s' registries.yaml format.
    #[arg(long)]
    pub registries: Option<PathBuf>,
    /// Node labels, key=value (repeatable).
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// The cluster's pod range (pod-to-pod traffic inside it is not masqueraded).
    #[arg(long)]
    pub node_cluster_cidr: Option<String>,
    /// Address of the cluster DNS Service for pods' resolv.conf (kubelet's --cluster-dns);
    /// `kubus up` sets it to its own DNS.
    #[arg(long)]
    pub cluster_dns: Option<std::net::IpAddr>,
    /// Seconds a node Lease lasts (renewed every quarter of it).
    #[arg(long, default_value_t = 40)]
    pub node_lease_seconds: u64,
    /// How often the usage of the node's pods is collected and reported to the API servers
    /// (`kubectl top`), as the kubelet's cAdvisor housekeeping interval; the disk use of
    /// writable layers, logs and emptyDirs is walked every minute at most. `0` turns collection
    /// off: no `kubectl top` figures for this node, no `container_*` series on /metrics.
    #[arg(long, default_value = "10s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub housekeeping_interval: std::time::Duration,
}

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// NATS URL(s) of the cluster (comma-separated); default: the embedded server of the
    /// `kubus up` on this machine.
    /// With the user and password the cluster's NATS requires (`nats://kubus:PASSWORD@HOST:PORT`,
    /// as `<data dir>/nats.url` of `kubus up` holds it); give it in KUBUS_NATS to keep the
    /// password off the command line.
    #[arg(long, env = "KUBUS_NATS", hide_env_values = true)]
    pub nats: Option<String>,
    /// Name of the cluster on the bus.
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
    /// The cluster's Service range (kube-proxy routes it to the pod bridge); by default the
    /// one the control plane published (kube-system/kubus-cluster-config), else 10.96.0.0/12.
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// The cluster's DNS domain; by default the published one, else cluster.local.
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// Where the node keeps its state (pods, images, shims).
    #[arg(long, default_value_os_t = crate::cmd::up::default_data_dir().join("node"))]
    pub data_dir: PathBuf,
    /// Loopback address to serve the agent's Prometheus metrics (`/metrics`: the node's
    /// containers under cAdvisor's names, the kubelet's and kube-proxy's) and `/healthz` on,
    /// as kube-proxy's --metrics-bind-address; `0` serves none. (`kubus up` serves its node's
    /// on the API port.)
    #[arg(long, default_value = DEFAULT_METRICS_ADDRESS)]
    pub metrics_bind_address: String,
    /// Kubeconfig whose user the agent is to the API servers (upstream kubelet's flag): a
    /// client certificate for `system:node:<node name>` in `system:nodes`, as `kubus kubeconfig
    /// user --client-name system:node:NAME --org system:nodes` prints. Default: on the machine
    /// of a `kubus up`, a certificate its CA issues for this node at start.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A bootstrap token (`kubus token create` prints the whole command): the node joins with
    /// it, gets its own certificate and NATS login, and keeps them in `<data dir>/identity` for
    /// its restarts (which need no token). As kubeadm join's --token.
    #[arg(long, env = "KUBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The hash of the cluster CA's public key (`sha256:<hex>`): when joining over TLS, the NATS
    /// server is trusted only if its certificate chain holds that CA (kubeadm's
    /// --discovery-token-ca-cert-hash).
    #[arg(long)]
    pub ca_cert_hash: Option<String>,
    #[command(flatten)]
    pub opts: NodeOpts,
}

/// The identity of node `name`'s agent: the `--kubeconfig` given, else a certificate issued for
/// it by the CA of the `kubus up` on this machine (whoever may read that CA's key is the
/// cluster's administrator already), else nothing (a cluster without TLS takes that).
fn node_credential(
    kubeconfig: Option<&std::path::Path>,
    name: &str,
    cluster: &str,
) -> anyhow::Result<kubus_bus::credential::Credential> {
    use kubus_bus::credential::Credential;
    if let Some(path) = kubeconfig {
        return crate::cmd::kubeconfig::credential(path, cluster);
    }
    let pki = crate::cmd::up::default_data_dir().join("pki");
    if !pki.join("ca.key").exists() {
        tracing::warn!(
            "no --kubeconfig and no cluster CA in {}: the agent presents no credential, which only a cluster \
             started with --insecure-http accepts",
            pki.display()
        );
        return Ok(Credential::None);
    }
    let (_, cert) = kubus_apiserver::pki::ClusterPki::issue_client_in(
        &pki,
        &format!("system:node:{name}"),
        &[kubus_apiserver::authn::NODES_GROUP],
    )
    .with_context(|| format!("issuing the node's certificate with the CA in {}", pki.display()))?;
    Ok(Credential::certificate(&cert.cert_pem, &cert.key_pem, cluster)?)
}

/// kube-proxy's metrics port: the kubelet's own ports (10248, 10250, 10255) are left to a
/// kubelet that may share the machine.
const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:10249";

/// The host name as a node name: a DNS subdomain (lowercase alphanumerics, '-' and '.'), as
/// the kubelet makes it; anything else becomes '-'.
pub(crate) fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    let name: String = name.trim_matches(|c: char| c == '-' || c == '.').chars().take(253).collect();
    if name.is_empty() {
        "node".into()
    } else {
        name
    }
}

/// Builds the agent's configuration; `state_dir` must be absolute.
pub fn config(opts: &NodeOpts, cluster: &str, state_dir: PathBuf) -> anyhow::Result<KubeletConfig> {
    let exe = std::env::current_exe().context("locating the kubus binary (shims are started from it)")?;
    let name = opts.node_name.clone().unwrap_or_else(hostname);
    let mut c = KubeletConfig::new(&name, state_dir.clone(), vec![exe.into_os_string(), "shim".into()]);
    c.cluster = cluster.to_string();
    c.node_ip = opts.node_ip;
    c.pod_cidr = opts.pod_cidr.clone();
    c.log_dir = opts.pod_log_dir.clone();
    c.cgroup_root = opts.cgroup_root.clone();
    c.bridge = opts.bridge.clone();
    c.cluster_cidr = opts.node_cluster_cidr.clone();
    c.cluster_dns = opts.cluster_dns;
    c.registries = opts.registries.clone();
    c.lease_duration = std::time::Duration::from_secs(opts.node_lease_seconds.max(4));
    c.housekeeping_interval = opts.housekeeping_interval;
    c.import_dir = Some(state_dir.join("images").join("import"));
    c.labels = opts
        .node_labels
        .iter()
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).context("--node-label takes key=value"))
        .collect::<anyhow::Result<_>>()?;
    Ok(c)
}

/// The kube-proxy table of a node: `kubus-proxy`, or per bridge when a machine runs several
/// nodes (tests).
pub fn proxy_table(bridge: &str) -> String {
    if bridge == "kubus0" {
        "kubus-proxy".into()
    } else {
        format!("kubus-proxy-{bridge}")
    }
}

/// A running node agent: its actors' arbiter and what it holds of the machine.
pub struct RunningNode {
    pub arbiter: actix::Arbiter,
    /// The bridge, cgroup root and address ranges, claimed while the agent runs.
    _claims: kubus_network::claims::Claims,
}

/// Starts the agent actor, the node's kube-proxy and its route controller on an arbiter of
/// their own, once it holds its bridge, cgroup root and ranges on this machine (a second
/// cluster asking for them is refused). The kubelet reads the process's informer of every pod
/// (`kubus up`, whose controllers hold it anyway).
pub async fn start(
    config: KubeletConfig,
    service_cidr: &str,
    api: ApiClient,
    informers: &InformerFactory,
) -> anyhow::Result<RunningNode> {
    let pods = informers.get::<Pod>();
    start_with_pods(config, service_cidr, api, informers, pods).await
}

/// As [`start`], the kubelet reading `pods` (`kubus node`: only this node's, as upstream's
/// kubelet watches with `fieldSelector=spec.nodeName=<node>`). `api` is the node's connection
/// and identity (`system:node:<name>`).
pub async fn start_with_pods(
    config: KubeletConfig,
    service_cidr: &str,
    api: ApiClient,
    informers: &InformerFactory,
    pods: Informer<Pod>,
) -> anyhow::Result<RunningNode> {
    let nats = api.nats().clone();
    let owner = config.state_dir.display().to_string();
    let claims = kubus_network::claims::claim(&kubus_network::claims::HostResources {
        owner: &owner,
        bridge: &config.bridge,
        cgroup_root: &config.cgroup_root,
        pod_range: config.cluster_cidr.as_deref().or(config.pod_cidr.as_deref()),
        service_range: Some(service_cidr),
    })?;
    let client = Client::new(api.with_user_agent("kubelet"));
    let services = informers.get::<Service>();
    let slices = informers.get::<EndpointSlice>();
    let proxy = kubus_proxy::ProxierConfig {
        rules: kubus_proxy::RulesConfig {
            table: proxy_table(&config.bridge),
            cluster_cidr: config.cluster_cidr.clone(),
            localhost_nodeports: true,
            node_name: Some(config.node_name.clone()),
        },
        service_cidr: Some(service_cidr.to_string()),
        route_dev: config.bridge.clone(),
        ..Default::default()
    };
    let name = config.node_name.clone();
    let routes =
        kubus_kubelet::routes::RouteController::new(name.clone(), config.state_dir.clone(), informers.get::<Node>());
    let provisioner = kubus_kubelet::local_path::LocalPathProvisioner::run(
        name.clone(),
        config.state_dir.clone(),
        client.clone(),
        informers.get::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(),
        informers.get::<k8s_openapi::api::core::v1::PersistentVolume>(),
        informers.get::<k8s_openapi::api::storage::v1::StorageClass>(),
    );
    let kubelet = Kubelet::new(config, client, nats, pods, Some(services.clone()))
        .await
        .with_context(|| format!("starting the node agent of {name}"))?;
    let arbiter = crate::cmd::named_arbiter("kubelet");
    actix::Actor::start_in_arbiter(&arbiter.handle(), move |_| kubelet);
    actix::Actor::start_in_arbiter(&arbiter.handle(), move |_| kubus_proxy::KubeProxy::new(proxy, services, slices));
    actix::Actor::start_in_arbiter(&arbiter.handle(), move |_| routes);
    arbiter.spawn(provisioner);
    Ok(RunningNode { arbiter, _claims: claims })
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let state = args.data_dir.canonicalize()?;
    let lock = std::fs::File::create(state.join("node.lock"))?;
    if lock.try_lock().is_err() {
        anyhow::bail!("another node agent is running with data dir {}", state.display());
    }
    let url = crate::cmd::up::nats_url(args.nats.as_deref())?;
    let wanted_name = args.opts.node_name.clone().unwrap_or_else(hostname);
    let identity_dir = state.join("identity");
    // Joined before: the kept identity (a token given again is not needed); else a token joins.
    let joined = match (crate::cmd::join::JoinedIdentity::load(&identity_dir)?, &args.token) {
        (Some(identity), _) => Some(identity),
        (None, Some(token)) => Some(
            crate::cmd::join::join(
                &url,
                &args.cluster,
                token,
                args.ca_cert_hash.as_deref(),
                &wanted_name,
                &identity_dir,
            )
            .await?,
        ),
        (None, None) => None,
    };
    let mut opts = args.opts.clone();
    let (login, credential) = match &joined {
        Some(identity) => {
            if opts.node_name.as_ref().is_some_and(|n| *n != identity.node_name) {
                anyhow::bail!(
                    "this data dir's node joined as {:?}, not {:?}: pass another --data-dir to join another node",
                    identity.node_name,
                    wanted_name
                );
            }
            opts.node_name = Some(identity.node_name.clone());
            let credential =
                kubus_bus::credential::Credential::certificate(&identity.cert_pem, &identity.key_pem, &args.cluster)?;
            (identity.login(&args.cluster, &url)?, credential)
        }
        None => {
            // The URL's login (the administrator's), the local cluster's CA, the node's inbox.
            let mut login = crate::cmd::up::local_login(&crate::cmd::up::default_data_dir())?;
            login.inbox_prefix = Some(kubus_bus::nats_users::node_inbox_prefix(&args.cluster, &wanted_name));
            (login, node_credential(args.kubeconfig.as_deref(), &wanted_name, &args.cluster)?)
        }
    };
    let nats = kubus_bus::connect_as(&url, "kubus-node", &login)
        .await
        .with_context(|| format!("connecting to {}", kubus_bus::redact(&url)))?;
    let mut config = config(&opts, &args.cluster, state)?;
    let api = ApiClient::new(nats.clone(), &args.cluster, "kubelet").with_credential(credential);
    // Flags win; what the control plane published fills the rest.
    let published = crate::cmd::cluster_config::fetch(&Client::new(api.clone())).await.unwrap_or_default();
    config.cluster_cidr = config.cluster_cidr.or(published.pod_subnet);
    if let Some(domain) = args.cluster_domain.or(published.dns_domain) {
        config.cluster_domain = domain;
    }
    let service_cidr = args.service_cidr.or(published.service_subnet).unwrap_or_else(|| "10.96.0.0/12".into());
    let name = config.node_name.clone();
    let informers_thread = crate::cmd::named_arbiter("node-informers");
    // Everything through the API server, as upstream's kubelet and kube-proxy: a node has no
    // right to the object stream, and the watch caches fan out.
    let informers = InformerFactory::from_api(api.clone()).on_arbiter(informers_thread.handle());
    // Only this node's pods: the API server's watch cache filters them, so an agent holds and
    // decodes its own pods, not every pod of the cluster.
    let pods = informers.get_selected::<Pod>(&format!("spec.nodeName={name}"));
    match args.metrics_bind_address.as_str() {
        "0" | "" => {}
        addr => {
            let addr = addr.parse().with_context(|| format!("--metrics-bind-address {addr:?} is not HOST:PORT"))?;
            serve_metrics(addr)?;
        }
    }
    let node = start_with_pods(config, &service_cidr, api, &informers, pods).await?;
    println!("node {name} is running; Ctrl-C stops the agent (its containers keep running)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    node.arbiter.stop();
    informers_thread.stop();
    actix::System::current().stop();
    Ok(())
}

/// Serves `GET /metrics` (the process's Prometheus registry) and `GET /healthz` on a loopback
/// address: nothing new listens beyond loopback without authentication (a Prometheus on
/// another machine scrapes through the API server, or a local agent). An address in use (a
/// second agent on the machine with the default) is logged, as kube-proxy does, and the agent
/// runs on without it.
fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    if !addr.ip().is_loopback() {
        anyhow::bail!("--metrics-bind-address must be a loopback address (metrics are served without authentication)");
    }
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/metrics",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(kubus_apiserver::metrics::render())
                }),
            )
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().content_type("text/plain").body("ok") }))
    })
    .workers(1)
    .disable_signals()
    .bind(addr);
    let server = match server {
        Ok(s) => s.run(),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot serve metrics (--metrics-bind-address); running without");
            return Ok(());
        }
    };
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "metrics server failed");
        }
    });
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct NodeResetArgs {
    /// The data dir of `kubus up` (the node's state is in its node/) or of `kubus node`.
    #[arg(long, default_value_os_t = crate::cmd::up::default_data_dir().join("node"))]
    pub data_dir: PathBuf,
    /// The pod bridge to delete (refused while a live node agent holds it).
    #[arg(long, default_value = "kubus0")]
    pub bridge: String,
    /// The pods' parent cgroup to remove (refused while a live node agent's is it, or lies
    /// inside or around it).
    #[arg(long, default_value = "/kubus")]
    pub cgroup_root: String,
}

pub async fn reset(args: NodeResetArgs) -> anyhow::Result<()> {
    let found = StateDir::find(&args.data_dir);
    let dir = found.path();
    if !found.is_node_state() {
        anyhow::bail!(
            "not resetting {}: it is not a node's data directory (it has none of node.lock, runtime, runc, {}, \
             routes.json); pass the --data-dir that `kubus node` or `kubus up` ran with. Nothing was changed",
            dir.display(),
            kubus_kubelet::reset::NETWORK_FILE
        );
    }
    if !dir.exists() {
        println!("nothing to reset in {}: it does not exist", dir.display());
    } else if let StateDir::Up(_) = found {
        println!(
            "resetting the node of `kubus up --data-dir {}` (its state is in {})",
            args.data_dir.display(),
            dir.display()
        );
    }
    let exe = std::env::current_exe()?;
    let state = dir.canonicalize().unwrap_or(dir.to_path_buf());
    // Never what a live node agent holds: with the defaults, another cluster's bridge, nft table
    // and cgroup root. Held while resetting, so that no agent starts on them meanwhile. (The
    // agent of this data dir is normally gone, and its claims with it.)
    let owner = state.display().to_string();
    let _claims = match kubus_network::claims::claim_for_reset(&owner, &args.bridge, &args.cgroup_root) {
        Ok(claims) => claims,
        Err(kubus_network::claims::ClaimError::Taken { what, holder, .. }) => anyhow::bail!(
            "not resetting: {what} is in use by {holder}; stop that node agent first, or pass the --bridge and \
             --cgroup-root of the node to reset"
        ),
        Err(e) => return Err(e).context("checking what the node agents on this machine hold"),
    };
    // kube-proxy's table first (its service route goes with the bridge), whatever else fails.
    let table = proxy_table(&args.bridge);
    let deleted = std::process::Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if deleted {
        println!("removed nftables table {table}");
    }
    let report =
        kubus_kubelet::reset(&state, &args.bridge, &args.cgroup_root, vec![exe.into_os_string(), "shim".into()])
            .await
            .context("resetting the node")?;
    if report.is_empty() && !deleted {
        println!(
            "nothing to reset: no containers, pods, sandboxes, routes, bridge {} or cgroup {}",
            args.bridge, args.cgroup_root
        );
    }
    for line in report {
        println!("{line}");
    }
    Ok(())
}
