//! What the API server lets go of with time: deleted objects' history is compacted from the
//! objects stream once older than the retention (the API server keeps serving, a relist reads
//! only what the cluster holds, a name is created again), and Events expire a TTL after their
//! last write (`--event-ttl`), seen by watchers as deletions.

use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::api::ApiClient;
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use serde_json::json;
use std::time::Duration;

fn temp_dir() -> std::path::PathBuf {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let p = std::env::temp_dir().join(format!("kubus-compaction-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

async fn stream_messages(store: &Store) -> u64 {
    let mut s = store.context().get_stream(store.config().objects_stream()).await.unwrap();
    s.info().await.unwrap().state.messages
}

async fn start(client: async_nats::Client, retention: Duration, event_ttl: Duration) -> (Store, ApiServer) {
    let store = Store::open(client.clone(), StoreConfig { cluster: "t".into(), ..Default::default() }).await.unwrap();
    let config = ApiServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        cluster: "t".into(),
        watch_cache_events: 1000,
        http_workers: 1,
        tombstone_retention: retention,
        event_ttl,
        tls: None,
        advertise: None,
        audit: None,
        service_ranges: Default::default(),
    };
    let server = ApiServer::start(store.clone(), client, config).await.unwrap();
    (store, server)
}

#[test]
fn deleted_objects_are_compacted_after_the_retention() {
    let dir = temp_dir();
    actix::System::new().block_on(async {
        let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.unwrap();
        let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
        let (store, server) = start(client.clone(), Duration::from_secs(1), Duration::from_secs(3600)).await;
        let api = ApiClient::new(client.clone(), "t", "compaction-test");
        let cms = "/api/v1/namespaces/default/configmaps";
        let baseline = stream_messages(&store).await;
        for i in 0..30 {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}});
            assert_eq!(api.json("POST", cms, "", None, Some(&body)).await.unwrap().0, 201);
        }
        for i in 0..20 {
            assert_eq!(api.json("DELETE", &format!("{cms}/c{i}"), "", None, None).await.unwrap().0, 200);
        }
        assert_eq!(stream_messages(&store).await, baseline + 30 + 20);
        // Within a few compaction rounds after the retention, the 20 objects' history is gone.
        let mut held = 0;
        for _ in 0..50 {
            held = stream_messages(&store).await;
            if held == baseline + 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(held, baseline + 10, "deleted objects' messages still held");
        assert!(store.compacted_revision().await.unwrap() > 0);
        let listing = store.list_all().await.unwrap();
        assert!(listing.tombstones.is_empty(), "{:?}", listing.tombstones);
        // The API server serves on: lists, and a compacted name created again.
        let (code, list) = api.json("GET", cms, "", None, None).await.unwrap();
        assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 10));
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c0"}});
        assert_eq!(api.json("POST", cms, "", None, Some(&body)).await.unwrap().0, 201);
        assert!(kubus_apiserver::metrics::COMPACTED.get() >= 40, "compactions counted");
        server.stop().await;
        nats.stop().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn events_expire_a_ttl_after_their_last_write() {
    let dir = temp_dir();
    actix::System::new().block_on(async {
        let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.unwrap();
        let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
        let (_store, server) = start(client.clone(), Duration::from_secs(3600), Duration::from_secs(2)).await;
        let api = ApiClient::new(client.clone(), "t", "event-ttl-test");
        let events = "/api/v1/namespaces/default/events";
        let now = kubus_apimachinery::time::format_rfc3339(std::time::SystemTime::now());
        let event = |name: &str, last: &str| {
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"},
                "reason": "Tested", "message": name, "type": "Normal", "count": 1,
                "firstTimestamp": last, "lastTimestamp": last})
        };
        // A watch sees the expiries as deletions.
        let inbox = client.new_inbox();
        let mut watch = client.subscribe(inbox.clone()).await.unwrap();
        let query = format!("watch=true&timeoutSeconds=30&streamTo={inbox}");
        assert_eq!(api.json("GET", events, &query, None, None).await.unwrap().0, 200);
        let started = std::time::Instant::now();
        for (name, last) in [("old", "2020-01-01T00:00:00Z"), ("fresh", now.as_str())] {
            assert_eq!(api.json("POST", events, "", None, Some(&event(name, last))).await.unwrap().0, 201);
        }
        let mut deleted = Vec::new();
        while deleted.len() < 2 {
            let msg = tokio::time::timeout(Duration::from_secs(20), futures::StreamExt::next(&mut watch))
                .await
                .expect("both Events expire")
                .unwrap();
            let line: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
            if line["type"] == "DELETED" {
                deleted.push((line["object"]["metadata"]["name"].as_str().unwrap().to_string(), started.elapsed()));
            }
        }
        // Creation is a write: even the Event whose lastTimestamp is years old lives its TTL
        // (2 s, less the second its whole-second timestamps may lose).
        deleted.sort();
        assert_eq!(deleted.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["fresh", "old"]);
        assert!(deleted.iter().all(|d| d.1 >= Duration::from_millis(900)), "{deleted:?}");
        let (code, list) = api.json("GET", events, "", None, None).await.unwrap();
        assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 0));
        server.stop().await;
        nats.stop().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
