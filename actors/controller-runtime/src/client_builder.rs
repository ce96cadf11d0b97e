//! A client per controller, each acting as a ServiceAccount of its own (upstream's
//! `--use-service-account-credentials` and its dynamic client builder): the controller manager
//! makes sure ServiceAccount `kube-system/<controller>` exists, asks the TokenRequest API for a
//! token of it, and renews the token before it expires, or at once when the API server refuses
//! it (the ServiceAccount was deleted and made again). RBAC then gives each controller only its
//! `system:controller:<name>` role, and the audit log names the controller that wrote.

use crate::client::{Client, ClientError};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_bus::credential::{Credential, RenewedToken};
use prometheus::{register_int_counter_vec, IntCounterVec};
use serde_json::{json, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Where the controllers' ServiceAccounts live.
pub const NAMESPACE: &str = "kube-system";
/// How long a controller's token is valid (upstream's builder asks for an hour).
const EXPIRATION: Duration = Duration::from_secs(3600);
/// Renewed once this share of its life has passed (client-go renews at 80%).
const RENEW_AT: f64 = 0.8;
/// The youngest token renewed because it was refused.
const MIN_AGE: Duration = Duration::from_secs(10);
/// Between failed attempts, doubling up to the cap.
const RETRY: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(30);

static RENEWALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_controller_token_renewals_total",
        "ServiceAccount token requests the controller manager made for its controllers, by controller and result",
        &["controller", "result"]
    )
    .expect("registers once")
});

/// Makes controllers' clients from the controller manager's own (which may create
/// ServiceAccounts in kube-system and request their tokens).
#[derive(Clone)]
pub struct ControllerClients {
    manager: Client,
}

/// A controller's client, and the work that keeps its token.
pub struct ControllerClient {
    pub client: Client,
    pub credentials: TokenRenewal,
}

impl ControllerClients {
    pub fn new(manager: Client) -> Self {
        ControllerClients { manager }
    }

    /// The client of controller `name` (its ServiceAccount's name, upstream's:
    /// `deployment-controller`), built on `base` (its connection and rate limit).
    pub fn client_for(&self, name: &str, base: &Client) -> ControllerClient {
        let token = Arc::new(RenewedToken::default());
        ControllerClient {
            client: base.with_credential(Credential::Renewed(token.clone())),
            credentials: TokenRenewal { manager: self.manager.clone(), name: name.to_string(), token },
        }
    }
}

/// Obtains and renews one controller's token.
pub struct TokenRenewal {
    manager: Client,
    name: String,
    token: Arc<RenewedToken>,
}

impl TokenRenewal {
    /// Runs `controller` once the first token is in, renewing the token for as long as the
    /// controller runs.
    pub fn run(self, controller: futures::future::BoxFuture<'static, ()>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            let valid_for = self.obtain().await;
            tokio::select! {
                _ = controller => {}
                _ = self.renew(valid_for) => {}
            }
        })
    }

    /// Keeps the token fresh: at its due time, or when the API server refused it (but not
    /// more often than [`MIN_AGE`]: a token issued and then refused again, as for a
    /// ServiceAccount being deleted, must not turn every failed request into a TokenRequest).
    async fn renew(&self, mut valid_for: Duration) {
        loop {
            let obtained = tokio::time::Instant::now();
            let due = obtained + valid_for.mul_f64(RENEW_AT);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = self.token.stale.notified() => {
                    tracing::info!(controller = %self.name, "token refused; renewing it");
                    tokio::time::sleep_until((obtained + MIN_AGE).min(due)).await;
                }
            }
            valid_for = self.obtain().await;
        }
    }

    /// Gets a token, retrying until one comes; returns how long it is valid.
    async fn obtain(&self) -> Duration {
        let mut wait = RETRY;
        loop {
            match self.request().await {
                Ok((token, valid_for)) => {
                    self.token.set(&token);
                    RENEWALS.with_label_values(&[&self.name, "success"]).inc();
                    return valid_for;
                }
                Err(e) => {
                    RENEWALS.with_label_values(&[&self.name, "error"]).inc();
                    tracing::warn!(controller = %self.name, error = %e, "cannot obtain the controller's ServiceAccount token; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_CAP);
                }
            }
        }
    }

    /// One TokenRequest, making the ServiceAccount first when it is missing.
    async fn request(&self) -> Result<(String, Duration), ClientError> {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": EXPIRATION.as_secs()},
        });
        let answer: Value = match self.token_request(&body).await {
            Err(e) if e.is_not_found() => {
                let sa = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(NAMESPACE.to_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match self.manager.create(&sa).await {
                    Ok(_) => {}
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => return Err(e),
                }
                self.token_request(&body).await?
            }
            other => other?,
        };
        let token = answer["status"]["token"].as_str().unwrap_or_default().to_string();
        if token.is_empty() {
            return Err(ClientError::Transport("the TokenRequest answer has no token".into()));
        }
        let valid_for = answer["spec"]["expirationSeconds"].as_u64().map(Duration::from_secs).unwrap_or(EXPIRATION);
        Ok((token, valid_for))
    }

    async fn token_request(&self, body: &Value) -> Result<Value, ClientError> {
        self.manager.create_subresource::<ServiceAccount, Value, Value>(NAMESPACE, &self.name, "token", body).await
    }
}
