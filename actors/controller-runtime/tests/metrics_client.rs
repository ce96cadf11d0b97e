//! The resource metrics API through the typed client, against a real nats-server and API
//! server: a node's usage report published on the bus becomes PodMetrics and NodeMetrics that
//! `Client::list` and `Client::get` read over NATS (as the HorizontalPodAutoscaler controller
//! will) and that HTTP serves alike; a pod without metrics is upstream's 404.

use k8s_openapi::api::core::v1::{Node, Pod};
use kubus_apimachinery::metrics_api::{NodeMetrics, PodMetrics};
use kubus_apimachinery::ObjectExt;
use kubus_apiserver::{ApiServer, ApiServerConfig};
use kubus_bus::api::ApiClient;
use kubus_bus::usage::{ContainerUsage, PodUsage, Usage, UsageReport};
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use kubus_controller_runtime::{Client, ListParams};
use serde_json::json;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLUSTER: &str = "m";

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn api_server(client: async_nats::Client) -> ApiServer {
    // A small archive: JetStream refuses a stream whose size the disk cannot reserve.
    let archive = kubus_bus::store::archive::ArchiveConfig { max_bytes: 64 << 20, ..Default::default() };
    let store = Store::open(client.clone(), StoreConfig { cluster: CLUSTER.into(), archive, ..Default::default() })
        .await
        .unwrap();
    let config = ApiServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        cluster: CLUSTER.into(),
        watch_cache_events: 1000,
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

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(body).unwrap())
}

fn report(uid: &str) -> UsageReport {
    let u = |cpu, mem| Usage { cpu_nanocores: cpu, memory_working_set_bytes: mem };
    UsageReport {
        timestamp_ms: 1_700_000_000_000,
        window_ms: 10_003,
        node: u(1_500_000_000, 2 << 30),
        pods: vec![
            PodUsage {
                namespace: "default".into(),
                name: "web".into(),
                uid: uid.into(),
                containers: vec![
                    ContainerUsage { name: "app".into(), usage: u(250_000_123, 10 << 20), ..Default::default() },
                    ContainerUsage { name: "side".into(), usage: u(0, 1024), ..Default::default() },
                ],
                ..Default::default()
            },
            // Reported, but the pod is gone (or another one has its name): no metrics.
            PodUsage {
                namespace: "default".into(),
                name: "gone".into(),
                uid: "old".into(),
                containers: vec![],
                ..Default::default()
            },
        ],
    }
}

#[test]
fn pod_and_node_metrics_through_the_typed_client() {
    let tok = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let dir = TempDir(std::env::temp_dir().join(format!("kubus-metrics-client-{tok}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    actix::System::new().block_on(async {
        let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
        let nc = kubus_bus::connect(nats.url(), "metrics-client-test").await.unwrap();
        let api = api_server(kubus_bus::connect(nats.url(), "apiserver").await.unwrap()).await;
        let client = Client::new(ApiClient::new(nc.clone(), CLUSTER, "metrics-client-test"));
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}})).unwrap();
        client.create(&node).await.unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]},
        }))
        .unwrap();
        let pod = client.create(&pod).await.unwrap();

        // Nothing reported yet: an empty list, and upstream's 404 for the pod.
        assert!(client.list::<PodMetrics>(Some("default"), &ListParams::default()).await.unwrap().is_empty());
        let err = client.get::<PodMetrics>("default", "web").await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.to_string(), "podmetrics.metrics.k8s.io \"default/web\" not found");

        // A report on another node's subject names that node, whatever it carries.
        let payload = report(pod.uid()).encode().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let pods = loop {
            nc.publish(kubus_bus::usage::subject(CLUSTER, "n1"), payload.clone().into()).await.unwrap();
            let pods = client.list::<PodMetrics>(Some("default"), &ListParams::labels("app=web")).await.unwrap();
            if !pods.is_empty() || Instant::now() > deadline {
                break pods;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(pods.len(), 1, "{pods:?}");
        let m = &pods[0];
        assert_eq!((m.metadata.name.as_deref(), m.metadata.namespace.as_deref()), (Some("web"), Some("default")));
        assert_eq!(m.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(m.window, "10.003s");
        assert_eq!(m.window_duration(), Some(Duration::from_millis(10_003)));
        assert_eq!(m.timestamp.0.timestamp(), 1_700_000_000);
        let usage: Vec<(&str, &str, &str)> =
            m.containers.iter().map(|c| (c.name.as_str(), c.usage["cpu"].0.as_str(), c.usage["memory"].0.as_str())).collect();
        assert_eq!(usage, vec![("app", "250000123n", "10Mi"), ("side", "0", "1Ki")]);

        // Selectors, all namespaces, one object.
        assert!(client.list::<PodMetrics>(Some("default"), &ListParams::labels("app=db")).await.unwrap().is_empty());
        assert_eq!(client.list::<PodMetrics>(None, &ListParams::default()).await.unwrap().len(), 1);
        assert!(client.list::<PodMetrics>(Some("other"), &ListParams::default()).await.unwrap().is_empty());
        let fields = ListParams { field_selector: Some("metadata.name=web".into()), ..Default::default() };
        assert_eq!(client.list::<PodMetrics>(None, &fields).await.unwrap().len(), 1);
        assert_eq!(client.get::<PodMetrics>("default", "web").await.unwrap().containers.len(), 2);
        let gone = client.get::<PodMetrics>("default", "gone").await.unwrap_err();
        assert_eq!(gone.to_string(), "podmetrics.metrics.k8s.io \"default/gone\" not found");

        let nodes = client.list::<NodeMetrics>(None, &ListParams::labels("zone=a")).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].usage["cpu"].0, "1500m");
        assert_eq!(nodes[0].usage["memory"].0, "2Gi");
        let n1 = client.get::<NodeMetrics>("", "n1").await.unwrap();
        assert_eq!(n1.metadata.name.as_deref(), Some("n1"));
        assert!(client.get::<NodeMetrics>("", "n2").await.unwrap_err().is_not_found());

        // The same over HTTP, and what the API refuses.
        let (code, list) = http_get(api.addr, "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb");
        assert_eq!((code, list["kind"].as_str(), list["items"][0]["metadata"]["name"].as_str()), (200, Some("PodMetricsList"), Some("web")));
        let (code, status) = http_get(api.addr, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope");
        assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
        assert_eq!(status["message"], "podmetrics.metrics.k8s.io \"default/nope\" not found");
        let (code, status) = http_get(api.addr, "/apis/metrics.k8s.io/v1beta1/pods?watch=true");
        assert_eq!((code, status["reason"].as_str()), (405, Some("MethodNotAllowed")));
        let (code, discovery) = http_get(api.addr, "/apis/metrics.k8s.io/v1beta1");
        assert_eq!(code, 200);
        let names: Vec<&str> = discovery["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(names, vec!["nodes", "pods"]);
        let status = client.request("DELETE", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web", "", None, None).await;
        assert_eq!(status.unwrap_err().code(), Some(405));

        // A deleted pod's metrics are gone at once, whatever the node last reported.
        client.delete::<Pod>("default", "web", &kubus_controller_runtime::DeleteParams::grace_period(0)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.list::<PodMetrics>(None, &ListParams::default()).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "metrics of a deleted pod still served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api.stop().await;
    });
}
