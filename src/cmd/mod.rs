pub mod audit;
pub mod cluster_config;
pub mod dns;
pub mod image;
pub mod join;
pub mod kubeconfig;
pub mod node;
pub mod sim;
pub mod token;
pub mod up;

pub use kubus_controller_runtime::arbiter::named as named_arbiter;

/// How this process reaches its cluster's NATS: one connection per component thread, made on
/// that thread, so each component's protocol work (parsing replies, JetStream deliveries) runs
/// there rather than all on the thread that made the first connection. Connections to the
/// embedded server are checked to be that server, at first and at every reconnection.
#[derive(Clone)]
pub struct Nats {
    pub url: String,
    /// The embedded server's name, when the server is the embedded one.
    pub embedded: Option<String>,
    /// How the connections log in beyond the URL (the CA they trust).
    pub login: kubus_bus::Login,
}

impl Nats {
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        use anyhow::Context as _;
        match &self.embedded {
            Some(server) => Ok(kubus_bus::connect_to_embedded(&self.url, name, server, &self.login).await?),
            None => kubus_bus::connect_as(&self.url, name, &self.login)
                .await
                .with_context(|| format!("connecting to NATS at {}", kubus_bus::redact(&self.url))),
        }
    }

    /// The same server, logging in as `login`.
    pub fn with_login(&self, login: kubus_bus::Login) -> Nats {
        Nats { login, ..self.clone() }
    }

    /// A connection whose I/O runs on `arbiter`'s thread.
    pub async fn connect_on(&self, arbiter: &actix::Arbiter, name: &'static str) -> anyhow::Result<async_nats::Client> {
        let this = self.clone();
        kubus_controller_runtime::arbiter::run_on(&arbiter.handle(), async move { this.connect(name).await })
            .await
            .unwrap_or_else(|| Err(anyhow::anyhow!("the {name} thread stopped while connecting to NATS")))
    }
}
