//! Simulated nodes: in `kubus up --sim-nodes N`, or standalone against any cluster with
//! `kubus sim-nodes --count N --nats URL`.

use actix::{Addr, Supervisor};
use anyhow::Context as _;
use kubus_bus::api::ApiClient;
use kubus_bus::Store;
use kubus_controller_runtime::Client;
use kubus_sim_nodes::{SimConfig, SimNodes};

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 3)]
    pub count: usize,
    /// Node names are <prefix><index>.
    #[arg(long, default_value = "sim-")]
    pub prefix: String,
    /// NATS URL(s) of the cluster; default: the embedded server of the `kubus up` on this
    /// machine.
    /// With the user and password the cluster's NATS requires (`nats://kubus:PASSWORD@HOST:PORT`,
    /// as `<data dir>/nats.url` of `kubus up` holds it); give it in KUBUS_NATS to keep the
    /// password off the command line.
    #[arg(long, env = "KUBUS_NATS", hide_env_values = true)]
    pub nats: Option<String>,
    /// Name of the cluster on the bus.
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
    /// Kubeconfig whose user the simulated nodes act as (an administrator: they write every
    /// simulated node's objects); default: the admin kubeconfig of the `kubus up` on this
    /// machine.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Seconds between Lease renewals (must stay well under the control plane's
    /// --node-monitor-grace-period).
    #[arg(long, default_value_t = 10)]
    pub renew_seconds: u64,
}

/// Starts simulated nodes on a thread of their own (with a NATS connection of their own);
/// they run while the arbiter does.
pub async fn start(
    nats: &crate::cmd::Nats,
    informers: &kubus_controller_runtime::InformerFactory,
    cluster: &str,
    count: usize,
    prefix: &str,
    renew_every: std::time::Duration,
    credential: kubus_bus::credential::Credential,
) -> anyhow::Result<(Addr<SimNodes>, actix::Arbiter)> {
    let arbiter = crate::cmd::named_arbiter("sim-nodes");
    let connection = nats.connect_on(&arbiter, "kubus-sim-nodes").await?;
    let api = Client::new(ApiClient::new(connection, cluster, "kubus-sim-nodes").with_credential(credential));
    let pods = informers.get::<k8s_openapi::api::core::v1::Pod>();
    let config = SimConfig { count, prefix: prefix.to_string(), renew_every, ..Default::default() };
    let nodes = informers.get::<k8s_openapi::api::core::v1::Node>();
    let addr =
        Supervisor::start_in_arbiter(&arbiter.handle(), move |_| SimNodes::new(config, api, pods).with_nodes(nodes));
    Ok((addr, arbiter))
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let url = crate::cmd::up::nats_url(args.nats.as_deref())?;
    // The local cluster's CA, for a NATS that speaks TLS.
    let login = crate::cmd::up::local_login(&crate::cmd::up::default_data_dir())?;
    let client = kubus_bus::connect_as(&url, "kubus-sim-nodes", &login)
        .await
        .with_context(|| format!("connecting to {}", kubus_bus::redact(&url)))?;
    let store = Store::attach(client.clone(), &args.cluster).await?;
    let renew = std::time::Duration::from_secs(args.renew_seconds.max(1));
    let nats = crate::cmd::Nats { url, embedded: None, login };
    let kubeconfig = args.kubeconfig.unwrap_or_else(|| crate::cmd::up::default_data_dir().join("kubeconfig"));
    let credential = match kubeconfig.exists() {
        true => crate::cmd::kubeconfig::credential(&kubeconfig, &args.cluster)?,
        // A cluster without TLS takes requests without credentials.
        false => kubus_bus::credential::Credential::None,
    };
    let _nodes = start(
        &nats,
        &kubus_controller_runtime::InformerFactory::new(store),
        &args.cluster,
        args.count,
        &args.prefix,
        renew,
        credential,
    )
    .await?;
    println!(
        "{} simulated nodes ({}0..) running; Ctrl-C stops them (their leases then expire)",
        args.count, args.prefix
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    actix::System::current().stop();
    Ok(())
}
