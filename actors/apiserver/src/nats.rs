//! The API server as a NATS service: a queue-group subscriber on `kubus.<cluster>.api`, so any
//! number of API servers share requests. Internal actors send the same requests kubectl sends.
//! A second service on its own thread serves the priority lane (`kubus.<cluster>.api-priority`,
//! Leases), so heartbeats and leader election never wait behind bulk work.

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
                    let Some(reply) = msg.reply.clone() else {
                        return;
                    };
                    let resp = match api::decode::<ApiRequest>(&msg.payload) {
                        Ok(req) => respond(&client, &state, req).await,
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

/// Watches over NATS stream their events to the subject named in `stream_to` (query
/// parameter), one JSON line per message, then an empty message at the end.
async fn respond(client: &async_nats::Client, state: &ApiState, req: ApiRequest) -> ApiResponse {
    let stream_to = crate::request::Query::parse(&req.query).get("streamTo").map(str::to_string);
    let resp = state.handle(req, "nats").await;
    match resp.body {
        Body::Full(b) => ApiResponse { status: resp.status, content_type: resp.content_type, body: b.to_vec() },
        Body::Stream(mut s) => {
            let Some(subject) = stream_to else {
                return status_response(kubus_apimachinery::StatusError::bad_request(
                    "a watch over NATS needs the streamTo query parameter",
                ));
            };
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
