//! Nodes join with a bootstrap token (`kubus token create`, then `kubus node --token`): the API
//! server of the control plane that runs the embedded NATS answers `kubus.<c>.join`
//! ([`kubus_bus::join`]). It authenticates the token as upstream's bootstrap authenticator does,
//! authorizes as upstream's CSR approver does for a node client certificate (`create` on
//! `certificatesigningrequests/nodeclient`, which kubeadm grants its node tokens' group), signs
//! a client certificate for `system:node:<name>` in `system:nodes` for the key the node made,
//! and lets the node's nkey log in to NATS as that node and nothing more.
//!
//! It also keeps the NATS users of the bootstrap tokens in step with their Secrets: a token may
//! log in (to the join subject only) while its Secret says it may authenticate.

use crate::authn::{Channel, Presented, NODES_GROUP, NODE_USER_PREFIX};
use crate::handler::ApiState;
use crate::pki::ClusterPki;
use actix::prelude::*;
use futures::StreamExt;
use kubus_apimachinery::StatusError;
use kubus_bus::join::{JoinReply, JoinRequest};
use kubus_bus::nats_users::NatsUsers;
use std::time::{Duration, SystemTime};

/// Largest join request read.
const MAX_REQUEST: usize = 16 << 10;
/// How often the bootstrap tokens' NATS users are brought in step with their Secrets.
const TOKEN_SYNC: Duration = Duration::from_secs(1);

pub struct JoinService {
    /// The API server's connection (it answers on any inbox).
    pub client: async_nats::Client,
    pub cluster: String,
    pub state: ApiState,
    pub pki: ClusterPki,
    pub users: NatsUsers,
}

impl Actor for JoinService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, cluster, state, pki, users) =
            (self.client.clone(), self.cluster.clone(), self.state.clone(), self.pki.clone(), self.users.clone());
        let serve = async move {
            let subject = kubus_bus::join::subject(&cluster);
            let sub = client.subscribe(subject.clone()).await?;
            tracing::info!(%subject, "answering node joins");
            sub.for_each_concurrent(16, |msg| {
                let (client, cluster, state, pki, users) =
                    (client.clone(), cluster.clone(), state.clone(), pki.clone(), users.clone());
                async move {
                    let Some(reply) = msg.reply.clone().filter(|r| crate::nats::is_client_inbox(r)) else { return };
                    let presented = crate::nats::presented(Channel::Nats, &msg);
                    let span = tracing::info_span!("node_join");
                    let answer = span.in_scope(|| join(&cluster, &state, &pki, &users, &presented, &msg.payload));
                    let (result, reply_body) = match answer {
                        Ok(r) => ("joined", r),
                        Err(e) => {
                            let result = if e.code >= 500 { "error" } else { "refused" };
                            (result, JoinReply { certificate: None, ca: None, status: Some(e.to_status()) })
                        }
                    };
                    crate::metrics::NODE_JOINS.with_label_values(&[result]).inc();
                    if let Ok(body) = serde_json::to_vec(&reply_body) {
                        let _ = client.publish(reply, body.into()).await;
                    }
                }
            })
            .await;
            Ok::<(), async_nats::SubscribeError>(())
        };
        ctx.spawn(serve.into_actor(self).map(|res, _, ctx| {
            if let Err(e) = res {
                tracing::warn!(error = %e, "the join service failed; restarting");
            }
            crate::metrics::ACTOR_RESTARTS.with_label_values(&["apiserver-join"]).inc();
            ctx.stop();
        }));
        ctx.run_interval(TOKEN_SYNC, |this, _| this.sync_tokens());
        self.sync_tokens();
    }
}

impl Supervised for JoinService {}

impl JoinService {
    fn sync_tokens(&self) {
        let tokens: Vec<(String, String)> =
            crate::authn::bootstrap::valid_tokens(&self.state.storage.cache, SystemTime::now())
                .into_iter()
                .map(|t| (t.id, t.secret))
                .collect();
        match self.users.set_bootstrap_tokens(&self.cluster, &tokens) {
            Ok(true) => tracing::info!(tokens = tokens.len(), "bootstrap tokens' NATS users updated"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot update the bootstrap tokens' NATS users"),
        }
    }
}

/// One join request: who asks (a bearer token), whether they may, then the certificate and
/// the NATS login.
fn join(
    cluster: &str,
    state: &ApiState,
    pki: &ClusterPki,
    users: &NatsUsers,
    presented: &Presented,
    body: &[u8],
) -> Result<JoinReply, StatusError> {
    let user = crate::authn::authenticate(presented, "", &*state.tokens)?;
    let attrs = crate::authorization::Attributes::resource(
        &user,
        "create",
        "certificates.k8s.io",
        "certificatesigningrequests/nodeclient",
        "",
        "",
    );
    state.authorize(&attrs)?;
    if body.len() > MAX_REQUEST {
        return Err(StatusError::too_large(format!("a join request is at most {MAX_REQUEST} bytes")));
    }
    let req: JoinRequest = serde_json::from_slice(body)
        .map_err(|e| StatusError::bad_request(format!("cannot decode the join request: {e}")))?;
    kubus_apimachinery::validation::names::is_dns1123_subdomain(&req.node_name)
        .map_err(|e| StatusError::bad_request(format!("invalid node name {:?}: {e}", req.node_name)))?;
    if req.verify(cluster, SystemTime::now()).is_none() {
        return Err(StatusError::bad_request(
            "the join request's proof does not verify (signed by its key, for this cluster, this node and nkey, \
             within 5 minutes)",
        ));
    }
    let point = req.spki().map(|spki| spki[kubus_bus::credential::P256_SPKI_PREFIX.len()..].to_vec());
    let point = point.ok_or_else(|| StatusError::bad_request("the join request's key is not a P-256 point"))?;
    // The name of a Node that exists stays its agent's (a token does not take a node over);
    // once the Node is gone the name is free.
    let node_exists = state
        .storage
        .cache
        .get(&(String::new(), "nodes".to_string()), &(String::new(), req.node_name.clone()))
        .is_some();
    // (A Node that exists without a joined key runs with another login: not taken over either.)
    let same_key = users.node_key(cluster, &req.node_name).is_some_and(|k| k == req.nkey);
    if node_exists && !same_key {
        return Err(StatusError::conflict(
            "",
            "nodes",
            &req.node_name,
            "the node exists with another key; delete the Node to join again under its name",
        ));
    }
    let node_user = format!("{NODE_USER_PREFIX}{}", req.node_name);
    let certificate = pki
        .issue_client_for_key(&node_user, &[NODES_GROUP], &point)
        .map_err(|e| StatusError::internal(format!("cannot sign the node's certificate: {e}")))?;
    users.register_node(cluster, &req.node_name, &req.nkey, true).map_err(|e| match e {
        kubus_bus::nats_users::UsersError::Nkey(_) => StatusError::bad_request(e.to_string()),
        kubus_bus::nats_users::UsersError::NkeyInUse => {
            StatusError::conflict("", "nodes", &req.node_name, "the nkey is another node's: make a new one")
        }
        e => StatusError::internal(format!("cannot register the node's NATS login: {e}")),
    })?;
    tracing::info!(node = %req.node_name, by = %user.name, "node joined");
    Ok(JoinReply { certificate: Some(certificate), ca: Some(pki.ca_pem.clone()), status: None })
}
