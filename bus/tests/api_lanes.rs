//! The API protocol's priority lane against a real nats-server: Lease requests reach the
//! priority service even when the main service is stuck, and fall back to the main service
//! when no API server serves the lane.

use bytes::Bytes;
use futures::StreamExt;
use kubus_bus::api::{self, ApiClient, ApiRequest, ApiResponse};
use kubus_bus::EmbeddedNats;
use std::time::Duration;

const CLUSTER: &str = "lanes";

fn request(path: &str) -> ApiRequest {
    ApiRequest {
        method: "GET".into(),
        path: path.into(),
        query: String::new(),
        content_type: None,
        accept: None,
        body: vec![],
        user_agent: "test".into(),
    }
}

/// Answers every request on `subject` with `body`, after `delay`.
async fn serve(client: async_nats::Client, subject: String, body: &'static str, delay: Duration) {
    let mut sub = client.queue_subscribe(subject, api::QUEUE_GROUP.into()).await.unwrap();
    client.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let (client, reply) = (client.clone(), msg.reply.clone().unwrap());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let resp = ApiResponse { status: 200, content_type: "text/plain".into(), body: body.into() };
                let _ = client.publish(reply, Bytes::from(api::encode(&resp).unwrap())).await;
            });
        }
    });
}

#[tokio::test]
async fn leases_take_the_priority_lane_and_fall_back_to_the_main_one() {
    let dir = std::env::temp_dir().join(format!("kubus-bus-lanes-{}", std::process::id()));
    let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.expect("nats-server starts");
    let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
    let lease = request("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1");
    assert!(api::is_priority(&lease) && !api::is_priority(&request("/api/v1/pods")));

    // An API server without the lane: its main service answers Leases.
    let old = ApiClient::new(client.clone(), "old", "test");
    serve(client.clone(), api::api_subject("old"), "main", Duration::ZERO).await;
    assert_eq!(old.send(lease.clone()).await.expect("the main service answers").body, b"main");

    // A main service stuck behind bulk work: Leases still go through at once.
    let api = ApiClient::new(client.clone(), CLUSTER, "test");
    serve(client.clone(), api::api_subject(CLUSTER), "main", Duration::from_secs(60)).await;
    serve(client.clone(), api::api_priority_subject(CLUSTER), "priority", Duration::ZERO).await;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(api.send(lease.clone()).await.unwrap().body, b"priority");
        assert!(started.elapsed() < Duration::from_secs(5), "a Lease request waited {:?}", started.elapsed());
    }
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
