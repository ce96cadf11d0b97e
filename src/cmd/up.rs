//! `kubus up`: one process with NATS (embedded by default), the control plane and a node agent
//! that runs pods as real containers.

use anyhow::Context as _;
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::credential::Credential;
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the cluster keeps its state (the embedded NATS store) and its kubeconfig.
    #[arg(long, default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Port of the Kubernetes API (HTTPS).
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// Address the API listens on. Default: every address (0.0.0.0), so pods reach it through
    /// the `kubernetes` Service; 127.0.0.1 with --insecure-http.
    #[arg(long)]
    pub api_address: Option<String>,
    /// Serve the API as plain HTTP without authentication, every request the cluster
    /// administrator: for development only, and refused unless --api-address is loopback.
    /// By default the API is HTTPS with the cluster CA in <data dir>/pki.
    #[arg(long)]
    pub insecure_http: bool,
    /// NATS URL(s) of an existing NATS deployment, comma-separated; without it Kubus starts
    /// its own nats-server with its store under the data dir.
    #[arg(long)]
    pub nats: Option<String>,
    /// Where the embedded nats-server listens (port 0 picks a free port). Default: a loopback
    /// port of its own, picked at the first start and kept in the data dir (`nats.listen`), so
    /// it never meets a NATS server of yours on the standard port.
    #[arg(long)]
    pub nats_listen: Option<String>,
    /// Name of this cluster on the bus (prefixes streams and subjects).
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
    /// JetStream replicas of the cluster's streams (3 in a 3-server NATS cluster).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Days of change history the archive keeps for replay.
    #[arg(long, default_value_t = 30)]
    pub archive_days: u64,
    /// The audit policy (upstream's `audit.k8s.io/v1` Policy file); by default Kubus records
    /// every change (its object with it; Secrets' and ConfigMaps' without) and no reads.
    /// Events go to the audit stream `KUBUS_<cluster>_AUDIT` on the bus.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Encryption at rest (upstream's `EncryptionConfiguration` file, providers aesgcm and
    /// identity): the listed resources (Secrets, typically) are stored encrypted in the objects
    /// stream, its archive and the history.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// Days the audit stream keeps events (upstream's flag of the same name, for its log files).
    #[arg(long = "audit-log-maxage", default_value_t = 30)]
    pub audit_log_maxage: u64,
    /// IPv4 range Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// IPv4 range pod IPs come from; each node gets a block of it (upstream's --cluster-cidr).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR block.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask: u8,
    /// Port of the cluster DNS on this machine (pods reach it as the kube-dns Service; 0 picks a
    /// free port). Default: 53, or when 53 is taken (another cluster's DNS, a local resolver) a
    /// free port kept in the data dir.
    #[arg(long)]
    pub dns_port: Option<u16>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Do not run a node agent in this process.
    #[arg(long)]
    pub no_node: bool,
    /// Elect one active scheduler and controller manager among the control planes sharing
    /// this NATS (Leases in kube-system).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Run each controller as its own ServiceAccount in kube-system with only its
    /// system:controller:* role (upstream's flag; on by default, as kubeadm sets it). Off, the
    /// controllers act as the controller manager, which then needs system:masters' rights.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub use_service_account_credentials: bool,
    /// How long an Event is kept after its last write (kube-apiserver's flag; Go duration).
    #[arg(long, default_value = "1h", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub event_ttl: std::time::Duration,
    /// How long a leader's Lease, unrenewed, keeps other candidates waiting (Go duration).
    #[arg(long, default_value = "15s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps leading while its renewals fail (Go duration).
    #[arg(long, default_value = "10s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub leader_elect_renew_deadline: std::time::Duration,
    /// How often candidates try to acquire, and the leader to renew, its Lease (Go duration).
    #[arg(long, default_value = "2s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub leader_elect_retry_period: std::time::Duration,
    /// Seconds a node may go without renewing its Lease before it turns NotReady.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    /// How often each HorizontalPodAutoscaler is evaluated (Go duration).
    #[arg(long, default_value = "15s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// How long an autoscaler without a scale-down behavior waits before scaling down (Go duration).
    #[arg(long, default_value = "5m0s", value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: std::time::Duration,
    /// Requests per second each controller may send the API server (upstream's default of 20
    /// suits a remote, shared API server; this one is in the process).
    #[arg(long, default_value_t = kubus_controllers::KUBE_API_QPS)]
    pub kube_api_qps: f64,
    /// Requests a controller may send at once before --kube-api-qps paces it.
    #[arg(long, default_value_t = kubus_controllers::KUBE_API_BURST)]
    pub kube_api_burst: u32,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = kubus_controllers::replicaset::WORKERS)]
    pub concurrent_replicaset_syncs: usize,
    /// ReplicationControllers synced at once.
    #[arg(long, default_value_t = kubus_controllers::replicaset::WORKERS)]
    pub concurrent_rc_syncs: usize,
    /// Jobs synced at once.
    #[arg(long, default_value_t = kubus_controllers::job::WORKERS)]
    pub concurrent_job_syncs: usize,
    /// CronJobs synced at once.
    #[arg(long, default_value_t = kubus_controllers::cronjob::WORKERS)]
    pub concurrent_cron_job_syncs: usize,
    /// DaemonSets synced at once.
    #[arg(long, default_value_t = kubus_controllers::daemonset::WORKERS)]
    pub concurrent_daemonset_syncs: usize,
    /// StatefulSets synced at once.
    #[arg(long, default_value_t = kubus_controllers::statefulset::WORKERS)]
    pub concurrent_statefulset_syncs: usize,
    /// Deployments synced at once.
    #[arg(long, default_value_t = kubus_controllers::deployment::WORKERS)]
    pub concurrent_deployment_syncs: usize,
    /// Objects the garbage collector handles at once.
    #[arg(long, default_value_t = kubus_controllers::garbagecollector::WORKERS)]
    pub concurrent_gc_syncs: usize,
    /// Services whose endpoints are synced at once.
    #[arg(long, default_value_t = kubus_controllers::endpoints::WORKERS)]
    pub concurrent_endpoint_syncs: usize,
    /// Namespaces being deleted that are emptied at once.
    #[arg(long, default_value_t = kubus_controllers::namespace::WORKERS)]
    pub concurrent_namespace_syncs: usize,
    /// Simulated nodes to run in this process.
    #[arg(long, default_value_t = 0)]
    pub sim_nodes: usize,
    #[command(flatten)]
    pub node: crate::cmd::node::NodeOpts,
}

pub(crate) use kubus_container_runtime::is_root;

pub fn default_data_dir() -> PathBuf {
    // Root keeps state where services do.
    let root = is_root() || std::env::var_os("HOME").is_none();
    if root {
        PathBuf::from("/var/lib/kubus")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kubus")
    }
}

/// The NATS URL a command on this machine uses: the one given, else the one `kubus up`
/// recorded in the default data dir (its embedded server's port is its own).
pub fn nats_url(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = given {
        return Ok(url.to_string());
    }
    let dir = default_data_dir();
    kubus_bus::embedded::recorded_url(&dir).with_context(|| {
        format!(
            "no --nats given and no running `kubus up` recorded one in {}: pass --nats URL",
            dir.join("nats.url").display()
        )
    })
}

/// The embedded server's TLS when it listens beyond loopback: a certificate of the cluster CA
/// (made in `<data dir>/pki` if missing) for the address it listens on, this machine's address
/// and name, and loopback.
fn embedded_tls(
    data_dir: &Path,
    listen: &str,
    node_ip: std::net::IpAddr,
) -> anyhow::Result<Option<kubus_bus::embedded::EmbeddedTls>> {
    let (host, _) = kubus_bus::embedded::split_listen(listen);
    if kubus_bus::is_loopback_host(&host) {
        return Ok(None);
    }
    let ip = host.parse::<std::net::IpAddr>().ok();
    let mut ips = vec![std::net::IpAddr::from([127, 0, 0, 1]), node_ip];
    ips.extend(ip.filter(|ip| !ip.is_unspecified()));
    let mut dns = vec!["localhost".to_string(), crate::cmd::node::hostname()];
    if ip.is_none() {
        dns.push(host.to_string());
    }
    ips.sort();
    ips.dedup();
    let names = kubus_apiserver::pki::ServingNames { dns, ips };
    let pki = data_dir.join("pki");
    let ca_pem = kubus_apiserver::pki::ClusterPki::issue_nats_serving_in(&pki, &names)
        .with_context(|| format!("issuing the NATS server's certificate with the CA in {}", pki.display()))?;
    Ok(Some(kubus_bus::embedded::EmbeddedTls {
        cert_file: pki.join("nats.crt"),
        key_file: pki.join("nats.key"),
        ca_pem,
    }))
}

/// How a command on this machine logs in to the NATS of the `kubus up` of `dir`: as the URL
/// it recorded says, trusting that cluster's CA when the server speaks TLS.
pub fn local_login(dir: &Path) -> anyhow::Result<kubus_bus::Login> {
    let ca = dir.join("pki").join("ca.crt");
    // Only a server that speaks TLS is given the CA: a trust set makes TLS required.
    let tls = kubus_bus::embedded::recorded_url(dir).is_some_and(|url| url.starts_with("tls://"));
    match std::fs::read_to_string(&ca) {
        Ok(pem) if tls => {
            Ok(kubus_bus::Login::default().trusting(&pem).with_context(|| format!("the CA in {}", ca.display()))?)
        }
        _ => Ok(kubus_bus::Login::default()),
    }
}

/// A `kubus up` on this machine as its administrator reaches it: the NATS URL it recorded (with
/// the password) and an API client with the admin certificate of its pki/.
pub struct LocalCluster {
    pub url: String,
    pub client: kubus_controller_runtime::Client,
}

impl LocalCluster {
    pub async fn open(dir: &Path, cluster: &str) -> anyhow::Result<LocalCluster> {
        let url = kubus_bus::embedded::recorded_url(dir).with_context(|| {
            format!(
                "no running `kubus up` recorded its NATS in {} (pass its --data-dir)",
                dir.join("nats.url").display()
            )
        })?;
        let login = local_login(dir)?;
        let nats = kubus_bus::connect_as(&url, "kubus-admin", &login)
            .await
            .with_context(|| format!("connecting to {}", kubus_bus::redact(&url)))?;
        let pki = dir.join("pki");
        let read = |f: &str| {
            std::fs::read_to_string(pki.join(f)).with_context(|| format!("reading {}", pki.join(f).display()))
        };
        let credential = Credential::certificate(&read("admin.crt")?, &read("admin.key")?, cluster)?;
        let api = kubus_bus::api::ApiClient::new(nats, cluster, "kubus").with_credential(credential);
        Ok(LocalCluster { url, client: kubus_controller_runtime::Client::new(api) })
    }
}

/// The administrator's kubeconfig (kubeadm's admin.conf): the server, the CA that signed it,
/// and the admin client certificate, inline; readable by its owner only, as it holds a key.
fn write_kubeconfig(
    dir: &Path,
    server: &str,
    cluster: &str,
    pki: Option<&kubus_apiserver::pki::ClusterPki>,
) -> anyhow::Result<PathBuf> {
    let text = kubus_apiserver::kubeconfig::render(
        server,
        cluster,
        pki.map(|p| p.ca_pem.as_str()),
        &format!("{cluster}-admin"),
        pki.map(|p| &p.admin),
    );
    let path = dir.join("kubeconfig");
    kubus_apiserver::pki::write(&path, &text, 0o600).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The cluster PKI in `<data dir>/pki` (made, or renewed where due), for every name and
/// address this API server is reached at: the node's, the one it binds, and the `kubernetes`
/// Service's first address of `ranges`.
async fn cluster_pki(
    data_dir: &Path,
    addresses: &[std::net::IpAddr],
    ranges: &kubus_apiserver::allocator::ServiceRanges,
    cluster_domain: &str,
    store: &Store,
) -> anyhow::Result<kubus_apiserver::pki::ClusterPki> {
    let names = kubus_apiserver::pki::ServingNames::for_cluster(
        &crate::cmd::node::hostname(),
        addresses,
        std::net::IpAddr::V4(ranges.first()),
        cluster_domain,
    );
    let dir = data_dir.join("pki");
    // One CA per cluster: control planes sharing a NATS take the first one's (kept in the
    // store's keys stream), so every API server's certificate and kubeconfig verify alike.
    let local = kubus_apiserver::pki::ClusterPki::local_ca_bundle(&dir)
        .with_context(|| format!("the cluster CA in {}", dir.display()))?;
    let shared = store.cluster_secret("cluster-ca", || local.clone().into_bytes()).await?;
    let shared = std::str::from_utf8(&shared).context("the cluster CA in the store is not text")?;
    if kubus_apiserver::pki::ClusterPki::adopt_ca_bundle(&dir, shared)
        .with_context(|| format!("taking the cluster's CA into {}", dir.display()))?
    {
        tracing::info!(dir = %dir.display(), "took the cluster CA of the control planes already running");
    }
    let (pki, wrote) = kubus_apiserver::pki::ClusterPki::load_or_create(&dir, &names)
        .with_context(|| format!("the cluster PKI in {}", dir.display()))?;
    for w in wrote {
        tracing::info!("{w}");
    }
    Ok(pki)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    kubus_controller_runtime::leader::LeaderConfig::with_timing(
        "",
        args.leader_elect_lease_duration,
        args.leader_elect_renew_deadline,
        args.leader_elect_retry_period,
    )
    .validate()
    .map_err(|e| anyhow::anyhow!("invalid leader election flags: {e}"))?;
    // The configuration files first: a bad one stops the start before anything runs.
    let encryption = match &args.encryption_provider_config {
        Some(path) => Some(std::sync::Arc::new(kubus_apiserver::encryption::read(path)?)),
        None => None,
    };
    let audit_policy = match &args.audit_policy_file {
        Some(path) => kubus_apiserver::audit::policy::Policy::read(path)?,
        None => kubus_apiserver::audit::policy::Policy::default_policy(),
    };
    let api_address = args.api_address.clone().unwrap_or_else(|| match args.insecure_http {
        true => "127.0.0.1".to_string(),
        false => "0.0.0.0".to_string(),
    });
    let bind: SocketAddr = format!("{api_address}:{}", args.api_port).parse().context("--api-address/--api-port")?;
    let service_ranges = {
        let (network, prefix) = kubus_apiserver::allocator::ServiceRanges::parse_cidr(&args.service_cidr)
            .context("--service-cidr must be an IPv4 CIDR no longer than /30")?;
        kubus_apiserver::allocator::ServiceRanges { network, prefix, ..Default::default() }
    };
    let node_ip = args.node.node_ip.unwrap_or_else(kubus_kubelet::node::default_node_ip);
    if args.insecure_http && !bind.ip().is_loopback() {
        anyhow::bail!(
            "--insecure-http serves every request as the cluster administrator: it needs a loopback --api-address, not {}",
            bind.ip()
        );
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    // One kubus per data dir: a second one would take the first one's NATS store away.
    let lock = std::fs::File::create(data_dir.join("kubus.lock"))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another kubus is running with data dir {}; stop it first or pass another --data-dir",
            data_dir.display()
        );
    }
    let embedded = match &args.nats {
        Some(_) => None,
        None => {
            let listen = args.nats_listen.clone().unwrap_or_else(|| kubus_bus::embedded::default_listen(&data_dir));
            let tls = embedded_tls(&data_dir, &listen, node_ip)?;
            Some(EmbeddedNats::start(&data_dir, &listen, tls).await?)
        }
    };
    let login = match &embedded {
        Some(e) => e.login().clone(),
        None => kubus_bus::Login::default(),
    };
    // The components beside the store and the API server log in to the embedded server with
    // less than the administrator's rights, by nkeys made at every start (on the user's NATS,
    // with the login it gave).
    let component_login = |component: kubus_bus::nats_users::Component| -> anyhow::Result<kubus_bus::Login> {
        let mut component_login = login.clone();
        if let Some(embedded) = &embedded {
            let (public, seed) = kubus_bus::nats_users::new_nkey()?;
            embedded.users().register_component(&args.cluster, component, &public)?;
            component_login.nkey_seed = Some(seed);
            component_login.inbox_prefix =
                Some(kubus_bus::nats_users::component_inbox_prefix(&args.cluster, component));
        }
        Ok(component_login)
    };
    let (informers_login, requests_login) = (
        component_login(kubus_bus::nats_users::Component::Informers)?,
        component_login(kubus_bus::nats_users::Component::Requests)?,
    );
    let nats_url =
        args.nats.clone().unwrap_or_else(|| embedded.as_ref().map(|e| e.url().to_string()).unwrap_or_default());
    // With the embedded server's password: readable by the owner only (local commands read it).
    kubus_apiserver::pki::write(&data_dir.join("nats.url"), &nats_url, 0o600)?;
    // Where other machines reach it (`kubus token create` prints it): the listen address, or
    // this node's on a server listening on every address.
    if let Some(embedded) = &embedded {
        let public = embedded.public_url();
        let join_url = ["0.0.0.0", "[::]"]
            .iter()
            .find_map(|any| {
                public.contains(&format!("://{any}:")).then(|| {
                    let ip = match node_ip {
                        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                        v4 => v4.to_string(),
                    };
                    public.replacen(any, &ip, 1)
                })
            })
            .unwrap_or_else(|| public.to_string());
        kubus_apiserver::pki::write(&data_dir.join("nats.join-url"), &join_url, 0o644)?;
    }
    let shown_nats_url = kubus_bus::redact(&nats_url);
    // The store goes only to the server this process started, never to one that answered in
    // its place (checked at the first connection and at every reconnection).
    let client = match &embedded {
        Some(embedded) => {
            kubus_bus::connect_to_embedded(&nats_url, "kubus-control-plane", embedded.server_name(), &login).await?
        }
        None => kubus_bus::connect(&nats_url, "kubus-control-plane")
            .await
            .with_context(|| format!("connecting to NATS at {shown_nats_url}"))?,
    };
    let store_config = StoreConfig {
        cluster: args.cluster.clone(),
        replicas: args.replicas,
        archive: kubus_bus::store::archive::ArchiveConfig {
            max_age: std::time::Duration::from_secs(args.archive_days * 86400),
            ..Default::default()
        },
        ..Default::default()
    };
    let encrypting = |store: Store| match &encryption {
        Some(e) => store.with_encryption(e.clone()),
        None => store,
    };
    let store =
        encrypting(Store::open(client.clone(), store_config).await.context("opening the object store on JetStream")?);
    let pki = match args.insecure_http {
        true => None,
        false => {
            let addresses = [node_ip, bind.ip()];
            Some(cluster_pki(&data_dir, &addresses, &service_ranges, &args.cluster_domain, &store).await?)
        }
    };
    // Pods reach the API at the node's address when it listens there (not on loopback only).
    let advertise = match bind.ip() {
        ip if ip.is_unspecified() => Some(SocketAddr::new(node_ip, args.api_port)),
        ip if ip.is_loopback() => None,
        ip => Some(SocketAddr::new(ip, args.api_port)),
    }
    .filter(|_| pki.is_some() && args.api_port != 0);
    let tls = match &pki {
        Some(pki) => Some(kubus_apiserver::tls::ServerTls::new(pki).context("the API server's TLS configuration")?),
        None => None,
    };
    let api = ApiServer::start(
        store,
        client.clone(),
        ApiServerConfig {
            bind,
            cluster: args.cluster.clone(),
            watch_cache_events: 20_000,
            http_workers: 2,
            tombstone_retention: std::time::Duration::from_secs(3600),
            event_ttl: args.event_ttl,
            service_ranges: service_ranges.clone(),
            tls,
            advertise,
            audit: Some(kubus_apiserver::AuditConfig {
                policy: audit_policy,
                max_age: std::time::Duration::from_secs(args.audit_log_maxage.max(1) * 86400),
            }),
        },
    )
    .await?;
    let host = if bind.ip().is_unspecified() { "127.0.0.1".to_string() } else { bind.ip().to_string() };
    let scheme = if pki.is_some() { "https" } else { "http" };
    let server = format!("{scheme}://{host}:{}", api.addr.port());
    let kubeconfig = write_kubeconfig(&data_dir, &server, &args.cluster, pki.as_ref())?;
    // Nodes join through the control plane that runs the embedded NATS (its users are here).
    let _join = match (&embedded, &pki) {
        (Some(embedded), Some(pki)) => {
            let service = kubus_apiserver::join::JoinService {
                client: client.clone(),
                cluster: args.cluster.clone(),
                state: api.state.clone(),
                pki: pki.clone(),
                users: embedded.users().clone(),
            };
            Some(actix::Supervisor::start(move |_| service))
        }
        _ => None,
    };
    // Each component is its own user to the API servers, as upstream's each have a
    // kubeconfig: a client certificate issued at every start, kept in memory, presented with
    // every request over NATS. A cluster without TLS has no CA: nothing to present.
    let identity = |user: &str, groups: &[&str]| -> anyhow::Result<Credential> {
        match &pki {
            Some(pki) => {
                let cert = pki.issue_client(user, groups).with_context(|| format!("issuing {user}'s certificate"))?;
                Ok(Credential::certificate(&cert.cert_pem, &cert.key_pem, &args.cluster)?)
            }
            None => Ok(Credential::None),
        }
    };
    // Setting the cluster up (kube-dns, the published settings) is the administrator's work,
    // as kubeadm installs its add-ons with admin.conf.
    let admin = match &pki {
        Some(pki) => Credential::certificate(&pki.admin.cert_pem, &pki.admin.key_pem, &args.cluster)?,
        None => Credential::None,
    };
    let component_client = |connection: async_nats::Client, agent: &str, credential: Credential| {
        kubus_controller_runtime::Client::new(
            kubus_bus::api::ApiClient::new(connection, &args.cluster, agent).with_credential(credential),
        )
    };
    let api_client = |agent: &str| component_client(client.clone(), agent, admin.clone());
    // Several control planes may share one NATS: the scheduler and the controller manager
    // act only while they hold their Lease.
    let leader_config = |name: &str| {
        args.leader_elect.then(|| {
            kubus_controller_runtime::leader::LeaderConfig::with_timing(
                name,
                args.leader_elect_lease_duration,
                args.leader_elect_renew_deadline,
                args.leader_elect_retry_period,
            )
        })
    };
    // The scheduler and the controllers get threads (arbiters) of their own, so their CPU work
    // never delays the API server's NATS service and watch cache on the main arbiter.
    let (controllers_thread, scheduler_thread) =
        (crate::cmd::named_arbiter("kube-controller"), crate::cmd::named_arbiter("kube-scheduler"));
    // Each component thread talks to NATS over a connection of its own, made on that thread.
    let nats = crate::cmd::Nats {
        url: nats_url.clone(),
        embedded: embedded.as_ref().map(|e| e.server_name().to_string()),
        login: login.clone(),
    };
    // One informer per resource for every actor of this process.
    let informers_thread = crate::cmd::named_arbiter("kube-informers");
    let informer_store = encrypting(
        Store::attach(
            nats.with_login(informers_login).connect_on(&informers_thread, "kubus-informers").await?,
            &args.cluster,
        )
        .await
        .context("opening the object store for the informers")?,
    );
    let informers =
        kubus_controller_runtime::InformerFactory::new(informer_store).on_arbiter(informers_thread.handle());
    let controllers = {
        let connection =
            nats.with_login(requests_login.clone()).connect_on(&controllers_thread, "kubus-controller-manager").await?;
        // The controller manager itself only elects its leader and mints its controllers'
        // tokens; each controller acts as a ServiceAccount of its own with only its
        // system:controller:* role, as kubeadm runs upstream's (--use-service-account-credentials).
        // Without that flag the controllers act as the manager, as upstream's then do with a
        // kubeconfig of system:masters.
        let with_sa_credentials = args.use_service_account_credentials && pki.is_some();
        let groups: &[&str] = if with_sa_credentials { &[] } else { &["system:masters"] };
        let credential = identity(kubus_apiserver::authn::KUBE_CONTROLLER_MANAGER, groups)?;
        let (informers, client) =
            (informers.clone(), component_client(connection, "kubus-controller-manager", credential));
        let config = kubus_controllers::ControllerConfig {
            node_monitor_grace_period: std::time::Duration::from_secs(args.node_monitor_grace_period),
            cluster_cidr: Some(
                kubus_controllers::nodeipam::ClusterCidr::parse(&args.cluster_cidr, args.node_cidr_mask)
                    .context("--cluster-cidr")?,
            ),
            kube_api_qps: args.kube_api_qps,
            kube_api_burst: args.kube_api_burst,
            concurrent_replicaset_syncs: args.concurrent_replicaset_syncs,
            concurrent_rc_syncs: args.concurrent_rc_syncs,
            concurrent_job_syncs: args.concurrent_job_syncs,
            concurrent_cron_job_syncs: args.concurrent_cron_job_syncs,
            concurrent_daemonset_syncs: args.concurrent_daemonset_syncs,
            concurrent_statefulset_syncs: args.concurrent_statefulset_syncs,
            concurrent_deployment_syncs: args.concurrent_deployment_syncs,
            concurrent_gc_syncs: args.concurrent_gc_syncs,
            concurrent_endpoint_syncs: args.concurrent_endpoint_syncs,
            concurrent_namespace_syncs: args.concurrent_namespace_syncs,
            horizontal_pod_autoscaler: kubus_controllers::podautoscaler::AutoscalerConfig {
                sync_period: args.horizontal_pod_autoscaler_sync_period,
                downscale_stabilization: args.horizontal_pod_autoscaler_downscale_stabilization,
            },
            root_ca: pki.as_ref().map(|p| p.ca_pem.clone()),
            use_service_account_credentials: with_sa_credentials,
        };
        let leader = leader_config("kube-controller-manager");
        actix::Supervisor::start_in_arbiter(&controllers_thread.handle(), move |_| {
            kubus_controllers::ControllerManager::new(informers, client, config, leader)
        })
    };
    let scheduler = {
        let connection = nats.with_login(requests_login).connect_on(&scheduler_thread, "kubus-scheduler").await?;
        let credential = identity(kubus_apiserver::authn::KUBE_SCHEDULER, &[])?;
        let (informers, client) = (informers.clone(), component_client(connection, "kubus-scheduler", credential));
        let leader = leader_config("kube-scheduler");
        actix::Supervisor::start_in_arbiter(&scheduler_thread.handle(), move |_| kubus_scheduler::Scheduler {
            informers,
            client,
            leader,
        })
    };
    let _sim = match args.sim_nodes {
        0 => None,
        count => Some(
            crate::cmd::sim::start(
                &nats,
                &informers,
                &args.cluster,
                count,
                "sim-",
                std::time::Duration::from_secs((args.node_monitor_grace_period / 4).clamp(1, 10)),
                admin.clone(),
            )
            .await?,
        ),
    };
    // Node agents joining with only a NATS URL learn the ranges from here.
    crate::cmd::cluster_config::publish(
        &api_client("kubus-control-plane"),
        &crate::cmd::cluster_config::ClusterNetwork {
            pod_subnet: Some(args.cluster_cidr.clone()),
            service_subnet: Some(args.service_cidr.clone()),
            dns_domain: Some(args.cluster_domain.clone()),
        },
    )
    .await
    .context("publishing the cluster's network settings")?;
    // Cluster DNS, an actor of the control plane (where CoreDNS would be an add-on); pods reach it
    // through the kube-dns Service at the tenth address of the service range, via kube-proxy.
    let dns_ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(u32::from(service_ranges.network) + 10));
    // On the node's address, not 0.0.0.0: a local resolver (systemd-resolved's 127.0.0.53:53)
    // keeps its port.
    // With --dns-port 0 a restart keeps the port it picked before, so the kube-dns Service
    // stays as it was.
    let port_file = data_dir.join("dns.port");
    let previous_port = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok());
    let start_dns = |port: u16| {
        let mut dns_config = kubus_dns::DnsConfig::new(SocketAddr::new(node_ip, port));
        dns_config.domain = args.cluster_domain.clone();
        kubus_dns::ClusterDns::new(
            dns_config,
            informers.get::<k8s_openapi::api::core::v1::Service>(),
            informers.get::<k8s_openapi::api::discovery::v1::EndpointSlice>(),
        )
    };
    let dns = match (args.dns_port, previous_port) {
        (Some(0), Some(p)) => start_dns(p).or_else(|_| start_dns(0)),
        (Some(port), _) => start_dns(port),
        (None, previous) => start_dns(53).or_else(|e| {
            tracing::info!(error = %e, "port 53 is taken on {node_ip}: the cluster DNS uses a port of its own");
            start_dns(previous.unwrap_or(0)).or_else(|_| start_dns(0))
        }),
    };
    if let Ok(d) = &dns {
        let _ = std::fs::write(&port_file, d.local_addr().port().to_string());
    }
    let _dns = match dns {
        Ok(dns) => {
            let dns_port = dns.local_addr().port();
            crate::cmd::dns::ensure_kube_dns(&api_client("kubus-dns"), dns_ip, node_ip, dns_port)
                .await
                .context("creating the kube-dns Service")?;
            tracing::info!(service_ip = %dns_ip, listen = %dns.local_addr(), "cluster DNS started");
            Some(actix::Actor::start(dns))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cluster DNS not started (is port {} taken? see --dns-port); pods use the node's resolvers", args.dns_port.unwrap_or(53));
            None
        }
    };
    let cluster_dns = _dns.as_ref().map(|_| dns_ip);
    // The node agent runs pods as real containers: it needs root (namespaces, cgroups, mounts).
    let node = if args.no_node {
        None
    } else if !is_root() {
        tracing::warn!(
            "not running as root: no node agent (pods are scheduled but not run); use --sim-nodes N to simulate nodes"
        );
        None
    } else {
        let mut config = crate::cmd::node::config(&args.node, &args.cluster, data_dir.join("node"))?;
        config.cluster_cidr.get_or_insert_with(|| args.cluster_cidr.clone());
        config.cluster_dns = config.cluster_dns.or(cluster_dns);
        config.cluster_domain = args.cluster_domain.clone();
        config.node_ip = Some(node_ip);
        let credential =
            identity(&format!("system:node:{}", config.node_name), &[kubus_apiserver::authn::NODES_GROUP])?;
        // Its own NATS login, as a joined node's: an nkey made at every start, limited to its
        // own subjects (on the user's NATS, the administrator's login with the node's inbox).
        let mut node_login = login.clone();
        node_login.inbox_prefix = Some(kubus_bus::nats_users::node_inbox_prefix(&args.cluster, &config.node_name));
        if let Some(embedded) = &embedded {
            let (public, seed) = kubus_bus::nats_users::new_nkey()?;
            embedded.users().register_node(&args.cluster, &config.node_name, &public, true)?;
            node_login.nkey_seed = Some(seed);
        }
        let connection = kubus_bus::connect_as(&nats_url, "kubus-node", &node_login)
            .await
            .context("connecting the node agent to NATS")?;
        let api = kubus_bus::api::ApiClient::new(connection, &args.cluster, "kubelet").with_credential(credential);
        Some(crate::cmd::node::start(config, &args.service_cidr, api, &informers).await?)
    };
    println!("Kubus is up.\n  API:        {server}\n  NATS:       {shown_nats_url} (user and password: {}/nats.url)\n  data dir:   {}\n\nPoint kubectl at it:\n  export KUBECONFIG={}\n  kubectl get namespaces", data_dir.display(), data_dir.display(), kubeconfig.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
    // Commands on this machine (`kubus node`, `kubus sim-nodes`) must not pick up the URL of a
    // cluster that is gone.
    let _ = std::fs::remove_file(data_dir.join("nats.url"));
    // The node agent stops; its containers keep running and are adopted at the next start.
    if let Some(node) = &node {
        node.arbiter.stop();
    }
    controllers.do_send(kubus_controllers::Shutdown);
    scheduler.do_send(kubus_scheduler::Shutdown);
    drop((controllers, scheduler));
    // Every step is bounded: a NATS that is already gone must not keep the process alive.
    let bounded = std::time::Duration::from_secs(5);
    let _ = tokio::time::timeout(bounded, api.stop()).await;
    let _ = tokio::time::timeout(bounded, client.flush()).await;
    drop(client);
    if let Some(nats) = embedded {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), nats.stop()).await;
    }
    controllers_thread.stop();
    scheduler_thread.stop();
    informers_thread.stop();
    actix::System::current().stop();
    Ok(())
}
