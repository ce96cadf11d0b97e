//! The KubeProxy actor against a real nats-server: Services and EndpointSlices written to the
//! store reach nftables through informers; stopping the actor removes its table.

mod common;

use actix::Actor;
use common::put;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use kubus_controller_runtime::informer::Informer;
use kubus_proxy::{KubeProxy, ProxierConfig, RulesConfig, Shutdown};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deletes the table even if the test fails before the actor could.
struct Table(String);
impl Drop for Table {
    fn drop(&mut self) {
        let script = format!("add table ip {t}\ndelete table ip {t}\n", t = self.0);
        let _ = Command::new("sh").args(["-c", &format!("printf '{script}' | nft -f -")]).status();
    }
}

fn table_text(table: &str) -> String {
    let out = Command::new("nft").args(["list", "table", "ip", table]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn slice(ip: &str) -> EndpointSlice {
    serde_json::from_value(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}]}))
    .unwrap()
}

async fn wait_for(table: &str, what: &str, present: bool) -> Duration {
    let started = Instant::now();
    while table_text(table).contains(what) != present {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} present={present} never held:\n{}",
            table_text(table)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[test]
fn informer_changes_reach_nftables() {
    actix::System::new().block_on(async {
        let tok = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let dir = TempDir(std::env::temp_dir().join(format!("kubus-proxy-actor-{tok}")));
        std::fs::create_dir_all(&dir.0).unwrap();
        let table = Table(format!("kp-actor-{tok}"));
        let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
        let client = kubus_bus::connect(nats.url(), "proxy-test").await.unwrap();
        let store = Store::open(client, StoreConfig::default()).await.unwrap();
        let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}))
        .unwrap();
        put(&store, &svc).await;
        put(&store, &slice("10.244.7.1")).await;

        let services = Informer::<Service>::start(store.clone());
        let slices = Informer::<EndpointSlice>::start(store.clone());
        let config = ProxierConfig {
            rules: RulesConfig { table: table.0.clone(), cluster_cidr: None, localhost_nodeports: false, node_name: None },
            service_cidr: None,
            route_dev: "lo".into(),
            min_sync_period: Duration::from_millis(300),
        };
        let proxy = KubeProxy::new(config, services, slices).start();
        // Objects that existed before the start are programmed by the initial full sync.
        wait_for(&table.0, "dnat to 10.244.7.1:8080", true).await;

        tokio::time::sleep(Duration::from_millis(400)).await;
        let started = Instant::now();
        put(&store, &slice("10.244.7.2")).await;
        wait_for(&table.0, "dnat to 10.244.7.2:8080", true).await;
        let live = started.elapsed();
        wait_for(&table.0, "dnat to 10.244.7.1:8080", false).await;
        println!("endpoint change written to the store -> rule live: {live:?} (includes the 100 ms coalescing)");
        assert!(live < Duration::from_secs(2));

        // A burst of changes is coalesced: far fewer syncs than changes.
        let syncs = |m: &[prometheus::proto::MetricFamily]| -> u64 {
            m.iter()
                .find(|f| f.name() == "kubus_proxy_syncs_total")
                .map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value() as u64).sum())
                .unwrap_or(0)
        };
        let before = syncs(&prometheus::gather());
        for i in 0..20 {
            put(&store, &slice(&format!("10.244.8.{i}"))).await;
        }
        wait_for(&table.0, "dnat to 10.244.8.19:8080", true).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let burst_syncs = syncs(&prometheus::gather()) - before;
        println!("20 changes -> {burst_syncs} syncs");
        assert!((1..=5).contains(&burst_syncs), "{burst_syncs}");

        // A Service created meanwhile is programmed, and a deleted one is removed, the other
        // left in place (each event marks only its own Service).
        let api: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "api"},
            "spec": {"clusterIP": "10.96.7.8", "ports": [{"port": 443, "protocol": "TCP"}]}}))
        .unwrap();
        put(&store, &api).await;
        wait_for(&table.0, "10.96.7.8 . tcp . 443 : goto reject-chain", true).await;
        let key = Key::new("", "services", Some("default"), "web");
        let cur = store.get(&key).await.unwrap().unwrap();
        store.delete(&key, cur.value.clone(), cur.revision).await.unwrap();
        wait_for(&table.0, "dnat to 10.244.8.19:8080", false).await;
        assert!(!table_text(&table.0).contains("10.96.7.7"));
        assert!(table_text(&table.0).contains("10.96.7.8 . tcp . 443 : goto reject-chain"));

        proxy.send(Shutdown).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Command::new("nft").args(["list", "tables"]).output().map(|o| String::from_utf8_lossy(&o.stdout).contains(&table.0)).unwrap() {
            assert!(Instant::now() < deadline, "table not removed on stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nats.stop().await;
    });
}
