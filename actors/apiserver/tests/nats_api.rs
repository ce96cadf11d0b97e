//! Internal actors reach the API over NATS request/reply: the same verbs, validation and
//! errors as over HTTP, served by every API server of the queue group.

use futures::StreamExt;
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::api::ApiClient;
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use serde_json::json;

fn temp_dir() -> std::path::PathBuf {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let p = std::env::temp_dir().join(format!("kubus-natsapi-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

async fn api_server(client: async_nats::Client) -> ApiServer {
    let store = Store::open(client.clone(), StoreConfig { cluster: "t".into(), ..Default::default() }).await.unwrap();
    ApiServer::start(
        store,
        client,
        ApiServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            cluster: "t".into(),
            watch_cache_events: 1000,
            http_workers: 1,
            tombstone_retention: std::time::Duration::from_secs(3600),
            event_ttl: std::time::Duration::from_secs(3600),
            tls: None,
            advertise: None,
            audit: None,
            service_ranges: Default::default(),
        },
    )
    .await
    .unwrap()
}

#[test]
fn verbs_errors_and_watch_over_nats_with_two_api_servers() {
    let dir = temp_dir();
    actix::System::new().block_on(async {
        let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.unwrap();
        let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
        let a = api_server(client.clone()).await;
        let b = api_server(kubus_bus::connect(nats.url(), "test-b").await.unwrap()).await;
        let api = ApiClient::new(client.clone(), "t", "nats-test");
        let cms = "/api/v1/namespaces/default/configmaps";

        // A watch over NATS streams its events to the subject the caller names.
        let inbox = client.new_inbox();
        let mut events = client.subscribe(inbox.clone()).await.unwrap();
        let (code, _) = api.json("GET", cms, &format!("watch=true&timeoutSeconds=3&streamTo={inbox}"), None, None).await.unwrap();
        assert_eq!(code, 200);

        for i in 0..20 {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}, "data": {"i": i.to_string()}});
            let (code, obj) = api.json("POST", cms, "", None, Some(&body)).await.unwrap();
            assert_eq!(code, 201, "{obj}");
        }
        let (code, list) = api.json("GET", cms, "", None, None).await.unwrap();
        assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 20));
        let (code, status) = api.json("POST", cms, "", None, Some(&json!({"metadata": {"name": "c0"}}))).await.unwrap();
        assert_eq!((code, status["reason"].as_str()), (409, Some("AlreadyExists")));
        let (code, status) = api.json("POST", cms, "", None, Some(&json!({"metadata": {"name": "Not Valid"}}))).await.unwrap();
        assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
        let stale = json!({"metadata": {"name": "c1", "resourceVersion": "1"}, "data": {"x": "y"}});
        let (code, status) = api.json("PUT", &format!("{cms}/c1"), "", None, Some(&stale)).await.unwrap();
        assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
        let (code, _) = api.json("PATCH", &format!("{cms}/c1"), "", Some("application/merge-patch+json"), Some(&json!({"data": {"x": "z"}}))).await.unwrap();
        assert_eq!(code, 200);

        let mut added = 0;
        while let Ok(Some(msg)) = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await {
            if msg.payload.is_empty() {
                break; // end of the watch
            }
            let ev: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            if ev["type"] == "ADDED" {
                added += 1;
            }
        }
        assert_eq!(added, 20);

        // Events go to an inbox only: a watch that names a JetStream API subject (a purge of
        // the objects stream is one publish there) is refused, and the objects stay.
        for target in ["$JS.API.STREAM.PURGE.KUBUS_t_OBJECTS", "kubus.t.obj.core.v1.configmaps.default.c0", "_INBOX.>"] {
            let query = format!("watch=true&timeoutSeconds=1&streamTo={target}");
            let (code, status) = api.json("GET", cms, &query, None, None).await.unwrap();
            assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{target}: {status}");
        }
        // A request whose reply subject is a stream's gets no answer written there.
        let js = async_nats::jetstream::new(client.clone());
        let stored = || async { js.get_stream("KUBUS_t_OBJECTS").await.unwrap().info().await.unwrap().state.messages };
        let before = stored().await;
        assert!(before >= 20);
        let req = kubus_bus::api::encode(&kubus_apiserver::request::ApiRequest {
            method: "GET".into(),
            path: cms.into(),
            query: String::new(),
            content_type: None,
            accept: None,
            body: Vec::new(),
            user_agent: "test".into(),
        })
        .unwrap();
        client
            .publish_with_reply(kubus_bus::api::api_subject("t"), "$JS.API.STREAM.PURGE.KUBUS_t_OBJECTS", req.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(stored().await, before, "the objects stream is as it was");

        // With one API server gone, the other serves every request.
        a.stop().await;
        for i in 0..10 {
            let (code, _) = api.json("GET", &format!("{cms}/c{i}"), "", None, None).await.unwrap();
            assert_eq!(code, 200);
        }
        b.stop().await;
        nats.stop().await;
    });
    let _ = std::fs::remove_dir_all(dir);
}
