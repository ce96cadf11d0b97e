//! Deleted objects' history is compacted from the objects stream once older than the
//! retention: the API server keeps serving, a relist reads only what the cluster holds, a
//! name is created again, and the compaction is counted.

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

#[test]
fn deleted_objects_are_compacted_after_the_retention() {
    let dir = temp_dir();
    actix::System::new().block_on(async {
        let nats = EmbeddedNats::start(&dir, "127.0.0.1:0").await.unwrap();
        let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
        let store =
            Store::open(client.clone(), StoreConfig { cluster: "t".into(), ..Default::default() }).await.unwrap();
        let config = ApiServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            cluster: "t".into(),
            watch_cache_events: 1000,
            http_workers: 1,
            tombstone_retention: Duration::from_secs(1),
            service_ranges: Default::default(),
        };
        let server = ApiServer::start(store.clone(), client.clone(), config).await.unwrap();
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
