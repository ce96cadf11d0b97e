//! An informer fed through the API server with a field selector (a kubelet's own pods),
//! against a real nats-server and API server: it holds only the pods bound to its node, sees
//! theirs updates, bindings and deletions, and after its API server is replaced while the
//! store moved on (410 Gone), relists to exactly what a fresh filtered list returns.

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::api::ApiClient;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use kubus_controller_runtime::informer::{ApiSource, Source};
use kubus_controller_runtime::{Change, Client, DeleteParams, Informer};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLUSTER: &str = "t";

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn api_server(client: async_nats::Client) -> ApiServer {
    let store =
        Store::open(client.clone(), StoreConfig { cluster: CLUSTER.into(), ..Default::default() }).await.unwrap();
    let config = ApiServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        cluster: CLUSTER.into(),
        // A short ring, so a watch resumed after a restart that missed writes gets 410 Gone.
        watch_cache_events: 100,
        http_workers: 1,
        tombstone_retention: Duration::from_secs(3600),
        event_ttl: Duration::from_secs(3600),
        tls: None,
        advertise: None,
        audit: None,
        service_ranges: Default::default(),
    };
    ApiServer::start(store, client, config).await.unwrap()
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn names(informer: &Informer<Pod>) -> BTreeSet<String> {
    informer.list().iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Waits up to 20 s for `f`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pods of `node` a fresh consistent LIST with the selector finds, with their versions.
async fn fresh_list(client: &Client, node: &str) -> BTreeSet<(String, String)> {
    let query = format!("fieldSelector=spec.nodeName%3D{node}");
    let list = client.request("GET", "/api/v1/pods", &query, None, None).await.unwrap();
    let list: k8s_openapi::List<Pod> = serde_json::from_value(list).unwrap();
    list.items
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap(), p.metadata.resource_version.clone().unwrap()))
        .collect()
}

fn cached(informer: &Informer<Pod>) -> BTreeSet<(String, String)> {
    informer
        .list()
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap(), p.metadata.resource_version.clone().unwrap()))
        .collect()
}

fn relists() -> u64 {
    kubus_controller_runtime::metrics::INFORMER_RELISTS.with_label_values(&["pods"]).get()
}

#[test]
fn a_field_selected_informer_holds_only_its_nodes_pods_through_restarts() {
    let tok = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let dir = TempDir(std::env::temp_dir().join(format!("kubus-apisource-{tok}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    actix::System::new().block_on(async {
        let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
        let nc = kubus_bus::connect(nats.url(), "api-source-test").await.unwrap();
        let a = api_server(kubus_bus::connect(nats.url(), "apiserver-a").await.unwrap()).await;
        let client = Client::new(ApiClient::new(nc.clone(), CLUSTER, "api-source-test"));
        for i in 0..5 {
            client.create(&pod(&format!("mine-{i}"), Some("n1"))).await.unwrap();
        }
        for i in 0..10 {
            client.create(&pod(&format!("other-{i}"), Some("n2"))).await.unwrap();
        }
        client.create(&pod("pending", None)).await.unwrap();

        let source =
            ApiSource::new(kubus_bus::api::ApiClient::new(nc.clone(), CLUSTER, "informer"), "spec.nodeName=n1")
                .with_idle_timeout(Duration::from_secs(2));
        let informer = Informer::<Pod>::start_from(Source::Api(source), None);
        let mut changes = informer.subscribe();
        informer.wait_synced().await;
        assert_eq!(names(&informer), set(&["mine-0", "mine-1", "mine-2", "mine-3", "mine-4"]));
        assert_eq!(cached(&informer), fresh_list(&client, "n1").await);

        // New pods: only the one bound here arrives; an update of it comes with its old state.
        client.create(&pod("other-new", Some("n2"))).await.unwrap();
        client.create(&pod("mine-new", Some("n1"))).await.unwrap();
        eventually("mine-new arrives", || informer.get("default", "mine-new").is_some()).await;
        client.merge_patch::<Pod>("default", "mine-0", &json!({"metadata": {"labels": {"x": "y"}}})).await.unwrap();
        client.merge_patch::<Pod>("default", "other-0", &json!({"metadata": {"labels": {"x": "y"}}})).await.unwrap();
        eventually("mine-0 updated", || informer.get("default", "mine-0").is_some_and(|p| p.metadata.labels.is_some()))
            .await;
        // A pod bound to this node later (the scheduler's binding) arrives as it starts matching.
        let binding = Binding {
            metadata: ObjectMeta { name: Some("pending".into()), ..Default::default() },
            target: ObjectReference { kind: Some("Node".into()), name: Some("n1".into()), ..Default::default() },
        };
        client
            .create_subresource::<Pod, _, serde_json::Value>("default", "pending", "binding", &binding)
            .await
            .unwrap();
        eventually("the bound pod arrives", || informer.get("default", "pending").is_some()).await;
        client.delete::<Pod>("default", "mine-1", &DeleteParams::grace_period(0)).await.unwrap();
        client.delete::<Pod>("default", "other-1", &DeleteParams::grace_period(0)).await.unwrap();
        eventually("mine-1 is gone", || informer.get("default", "mine-1").is_none()).await;
        assert_eq!(names(&informer), set(&["mine-0", "mine-2", "mine-3", "mine-4", "mine-new", "pending"]));
        assert_eq!(cached(&informer), fresh_list(&client, "n1").await);

        // What subscribers saw: only this node's pods, the update with its old state, the
        // binding as an addition, the deletion as a deletion.
        let mut seen = Vec::new();
        while let Ok(ch) = changes.try_recv() {
            match ch {
                Change::Applied { old, new } => seen.push(format!(
                    "{} {}",
                    if old.is_some() { "update" } else { "add" },
                    new.metadata.name.clone().unwrap()
                )),
                Change::Deleted(p) => seen.push(format!("delete {}", p.metadata.name.clone().unwrap())),
                Change::Resynced => seen.push("resync".into()),
            }
        }
        assert_eq!(seen, ["resync", "add mine-new", "update mine-0", "add pending", "delete mine-1"], "{seen:?}");

        // The API server goes away; meanwhile the store moves on past its successor's ring
        // (written straight to the store: no API server serves writes now).
        a.stop().await;
        let store = Store::attach(nc.clone(), CLUSTER).await.unwrap();
        let relists_before = relists();
        let offline = serde_json::to_vec(&pod("offline", Some("n1"))).unwrap();
        store.create(&Key::new("", "pods", Some("default"), "offline"), offline.into()).await.unwrap();
        let gone = store.get(&Key::new("", "pods", Some("default"), "mine-2")).await.unwrap().unwrap();
        let key = Key::new("", "pods", Some("default"), "mine-2");
        store.delete(&key, gone.value.clone(), gone.revision).await.unwrap();
        for i in 0..150 {
            let filler = serde_json::to_vec(&pod(&format!("filler-{i}"), Some("n3"))).unwrap();
            store.create(&Key::new("", "pods", Some("default"), &format!("filler-{i}")), filler.into()).await.unwrap();
        }
        let b = api_server(kubus_bus::connect(nats.url(), "apiserver-b").await.unwrap()).await;
        // More writes through the new API server, after it replaced the old one.
        let late = pod("late", Some("n1"));
        client.create(&late).await.unwrap();
        eventually("the informer caught up through the new API server", || {
            informer.get("default", "late").is_some() && informer.get("default", "mine-2").is_none()
        })
        .await;
        assert!(relists() > relists_before, "a 410 Gone relists");
        assert_eq!(names(&informer), set(&["mine-0", "mine-3", "mine-4", "mine-new", "offline", "pending", "late"]));
        assert_eq!(cached(&informer), fresh_list(&client, "n1").await);
        assert_eq!(informer.len(), 7, "nothing of other nodes is held");

        b.stop().await;
        nats.stop().await;
    });
}
