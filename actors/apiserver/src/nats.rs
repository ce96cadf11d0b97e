//! The API server as a NATS service: a queue-group subscriber on `kubus.<cluster>.api`, so any
//! number of API servers share requests. Internal actors send the same requests kubectl sends.
//! A second service on its own thread serves the priority lane (`kubus.<cluster>.api-priority`,
//! Leases), so heartbeats and leader election never wait behind bulk work.

use crate::authn::Presented;
use crate::handler::ApiState;
use crate::metrics::ACTOR_RESTARTS;
use crate::request::Body;
use actix::prelude::*;
use bytes::Bytes;
use futures::StreamExt;
use kubus_bus::api::{self, ApiRequest, ApiResponse};

pub struct NatsService {
    pub client: async_nats::Client,
    /// The lane's subject ([`api::api_subject`] or [`api::api_priority_subject`]).
    pub subject: String,
    pub state: ApiState,
    /// Set once the subscription is in place (part of readiness).
    pub serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Actor for NatsService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let client = self.client.clone();
        let state = self.state.clone();
        let serving = self.serving.clone();
        let subject = self.subject.clone();
        let serve = async move {
            let sub = client.queue_subscribe(subject.clone(), api::QUEUE_GROUP.to_string()).await?;
            // The subscription only counts once the server has it: flush, then report serving.
            client.flush().await.map_err(|e| std::io::Error::other(e.to_string()))?;
            serving.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(%subject, "API server serving on NATS");
            sub.for_each_concurrent(256, |msg| {
                let client = client.clone();
                let state = state.clone();
                async move {
                    // Answers go to a requester's inbox only: a reply subject is the caller's
                    // choice, and the API server's connection may write to the streams.
                    let Some(reply) = msg.reply.clone().filter(|r| is_client_inbox(r)) else {
                        tracing::debug!(reply = ?msg.reply, "API request without an inbox to answer dropped");
                        return;
                    };
                    let presented = presented(state.nats_channel(), &msg);
                    let resp = match api::decode::<ApiRequest>(&msg.payload) {
                        Ok(req) => {
                            let stream_to =
                                crate::request::Query::parse(&req.query).get("streamTo").map(str::to_string);
                            let presented = presented.answered_on([reply.to_string()].into_iter().chain(stream_to));
                            respond(&client, &state, req, &presented).await
                        }
                        Err(e) => status_response(kubus_apimachinery::StatusError::bad_request(e.to_string())),
                    };
                    if let Ok(bytes) = api::encode(&resp) {
                        let _ = client.publish(reply, Bytes::from(bytes)).await;
                    }
                }
            })
            .await;
            serving.store(false, std::sync::atomic::Ordering::Relaxed);
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        ctx.spawn(serve.into_actor(self).map(|res, _, ctx| {
            if let Err(e) = res {
                tracing::warn!(error = %e, "NATS API service failed; restarting");
            }
            ACTOR_RESTARTS.with_label_values(&["apiserver-nats"]).inc();
            ctx.stop();
        }));
    }
}

impl Supervised for NatsService {}

fn status_response(e: kubus_apimachinery::StatusError) -> ApiResponse {
    ApiResponse {
        status: e.code,
        content_type: "application/json".into(),
        body: e.to_status().to_string().into_bytes(),
    }
}

/// What a request over NATS presents: its caller's credential and impersonation, in the
/// message's headers as HTTP headers carry them.
pub fn presented(channel: crate::authn::Channel, msg: &async_nats::Message) -> Presented {
    let headers = msg
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(name, values)| values.iter().map(move |v| (name.as_ref(), v.as_str())));
    Presented::from_headers(channel, headers)
}

/// Whether `subject` is a requester's inbox (`_INBOX.` and concrete tokens), the only place the
/// API server sends answers and watch events: the caller names it, and a subject of a stream
/// or of the JetStream API (`$JS.API.STREAM.PURGE.…`) would have the API server write there.
pub fn is_client_inbox(subject: &str) -> bool {
    subject.strip_prefix("_INBOX.").is_some_and(|rest| {
        !rest.is_empty()
            && rest.split('.').all(|t| !t.is_empty() && t != "*" && t != ">")
            && !rest.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    })
}

/// Watches over NATS stream their events to the subject named in `stream_to` (query
/// parameter), one JSON line per message, then an empty message at the end.
async fn respond(client: &async_nats::Client, state: &ApiState, req: ApiRequest, presented: &Presented) -> ApiResponse {
    let stream_to = crate::request::Query::parse(&req.query).get("streamTo").map(str::to_string);
    let resp = state.handle_presented(req, "nats", presented).await;
    match resp.body {
        Body::Full(b) => ApiResponse { status: resp.status, content_type: resp.content_type, body: b.to_vec() },
        Body::Stream(mut s) => {
            let Some(subject) = stream_to else {
                return status_response(kubus_apimachinery::StatusError::bad_request(
                    "a watch over NATS needs the streamTo query parameter",
                ));
            };
            // The events go where the caller says: only to an inbox of its own, never to a
            // subject that reaches a stream or the JetStream API (a purge is one publish).
            if !is_client_inbox(&subject) {
                return status_response(kubus_apimachinery::StatusError::bad_request(
                    "streamTo must be an inbox subject (_INBOX.<token>...) without wildcards",
                ));
            }
            let client = client.clone();
            tokio::spawn(async move {
                while let Some(chunk) = s.next().await {
                    if client.publish(subject.clone(), chunk).await.is_err() {
                        return;
                    }
                }
                let _ = client.publish(subject, Bytes::new()).await;
            });
            ApiResponse { status: resp.status, content_type: resp.content_type, body: Vec::new() }
        }
    }
}

impl Handler<crate::Shutdown> for NatsService {
    type Result = ();
    fn handle(&mut self, _: crate::Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::is_client_inbox;

    #[test]
    fn answers_go_only_to_inboxes() {
        assert!(is_client_inbox("_INBOX.abc123"));
        assert!(is_client_inbox("_INBOX.abc.def"));
        for subject in [
            "$JS.API.STREAM.PURGE.KUBUS_c_OBJECTS",
            "kubus.c.obj.core.v1.secrets.default.x",
            "_INBOX.",
            "_INBOX.>",
            "_INBOX.a.*",
            "_INBOX..a",
            "_INBOX.a b",
            "_INBOXa",
            "",
        ] {
            assert!(!is_client_inbox(subject), "{subject}");
        }
    }
}
