//! `kubus audit`: the cluster's audit events from its audit stream on the bus, one JSON line
//! each (the lines of upstream's audit log file), oldest first; `--follow` keeps printing.

use anyhow::Context as _;
use futures::StreamExt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only events of the last DURATION (Go duration, e.g. 1h); default: all kept.
    #[arg(long, value_parser = kubus_apimachinery::time::parse_go_duration)]
    pub since: Option<Duration>,
    /// Only events of this user (who authenticated, or whom they impersonated).
    #[arg(long)]
    pub user: Option<String>,
    /// Keep printing events as they come.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The data dir of the `kubus up` whose cluster is read (its NATS URL and CA).
    #[arg(long, default_value_os_t = crate::cmd::up::default_data_dir())]
    pub data_dir: PathBuf,
    /// Name of the cluster on the bus.
    #[arg(long, default_value = "kubus")]
    pub cluster: String,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    let url = kubus_bus::embedded::recorded_url(&args.data_dir).with_context(|| {
        format!("no running `kubus up` recorded its NATS in {} (pass its --data-dir)", args.data_dir.display())
    })?;
    let login = crate::cmd::up::local_login(&args.data_dir)?;
    let nats = kubus_bus::connect_as(&url, "kubus-audit", &login).await?;
    let js = async_nats::jetstream::new(nats);
    let name = format!("KUBUS_{}_AUDIT", args.cluster);
    let stream = js.get_stream(&name).await.with_context(|| format!("no audit stream {name}"))?;
    let deliver_policy = match args.since {
        Some(d) => DeliverPolicy::ByStartTime { start_time: (time::OffsetDateTime::now_utc() - d) },
        None => DeliverPolicy::All,
    };
    let consumer = stream.create_consumer(OrderedConfig { deliver_policy, ..Default::default() }).await?;
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await?;
    while args.follow || pending > 0 {
        let Some(message) = messages.next().await else { break };
        let message = message?;
        pending = message.info().map(|i| i.pending).unwrap_or(0);
        if let Some(user) = &args.user {
            let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
            if event["user"]["username"] != *user && event["impersonatedUser"]["username"] != *user {
                continue;
            }
        }
        println!("{}", String::from_utf8_lossy(&message.payload));
    }
    Ok(())
}
