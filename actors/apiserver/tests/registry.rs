//! The kinds' write rules through the whole API server (a real nats-server as the store): the
//! QoS class a pod is created with, binding, graceful pod deletion, scale, namespace
//! finalization and Service allocations.

use futures::StreamExt;
use kubus_apiserver::request::{ApiRequest, Body};
use kubus_apiserver::{ApiServer, ApiServerConfig, ApiState};
use kubus_bus::{EmbeddedNats, Store, StoreConfig};
use serde_json::{json, Value};
use std::time::Duration;

const MERGE: Option<&str> = Some("application/merge-patch+json");
const PODS: &str = "/api/v1/namespaces/default/pods";

fn temp_dir() -> std::path::PathBuf {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let p = std::env::temp_dir().join(format!("kubus-registry-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

async fn call(api: &ApiState, method: &str, path: &str, ct: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let req = ApiRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        content_type: ct.map(str::to_string).or(body.as_ref().map(|_| "application/json".to_string())),
        accept: Some("application/json".into()),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        user_agent: "registry-test".into(),
    };
    let resp = api.handle(req, "test").await;
    let Body::Full(bytes) = resp.body else { panic!("{method} {path} streamed") };
    (resp.status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The status code of a GET.
async fn status_of(api: &ApiState, path: &str) -> u16 {
    call(api, "GET", path, None, None).await.0
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
}

/// Runs `test` against a fresh API server, on a thread with room for the handler's futures
/// (debug builds keep them large).
fn with_api_server<F: std::future::Future<Output = ()>>(test: impl FnOnce(ApiState) -> F + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let dir = temp_dir();
            actix::System::new().block_on(async {
                let nats = EmbeddedNats::start(&dir, "127.0.0.1:0", None).await.unwrap();
                let client = kubus_bus::connect(nats.url(), "test").await.unwrap();
                let config = StoreConfig { cluster: "r".into(), ..Default::default() };
                let store = Store::open(client.clone(), config).await.unwrap();
                let api = ApiServer::start(
                    store,
                    client,
                    ApiServerConfig {
                        bind: "127.0.0.1:0".parse().unwrap(),
                        cluster: "r".into(),
                        watch_cache_events: 1000,
                        http_workers: 1,
                        tombstone_retention: Duration::from_secs(3600),
                        event_ttl: std::time::Duration::from_secs(3600),
                        tls: None,
                        advertise: None,
                        audit: None,
                        service_ranges: Default::default(),
                    },
                )
                .await
                .unwrap();
                test(api.state.clone()).await;
                api.stop().await;
                nats.stop().await;
            });
            let _ = std::fs::remove_dir_all(dir);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn pods_qos_binding_and_graceful_deletion() {
    with_api_server(|state| async move {
        let api = &state;
        // The QoS class is the kubelet's, computed from the defaulted spec.
        for (name, resources, class) in [
            ("none", json!({}), "BestEffort"),
            ("limits", json!({"limits": {"cpu": "1", "memory": "1Gi"}}), "Guaranteed"),
            ("request", json!({"requests": {"cpu": "1"}}), "Burstable"),
            ("zero", json!({"requests": {"cpu": "0"}}), "BestEffort"),
            (
                "spelled",
                json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
                "Guaranteed",
            ),
        ] {
            let (code, p) = call(api, "POST", PODS, None, Some(pod(name, resources))).await;
            assert_eq!(code, 201, "{p}");
            assert_eq!(p["status"], json!({"phase": "Pending", "qosClass": class}), "{name}");
        }
        // The class never changes once set, and a main-resource write keeps the status.
        let (code, s) = call(
            api,
            "PATCH",
            &format!("{PODS}/zero/status"),
            MERGE,
            Some(json!({"status": {"qosClass": "Burstable"}})),
        )
        .await;
        assert_eq!(code, 422, "{s}");
        assert_eq!(
            s["message"],
            "Pod \"zero\" is invalid: status.qosClass: Invalid value: \"Burstable\": field is immutable"
        );
        let (code, p) =
            call(api, "PATCH", &format!("{PODS}/zero"), MERGE, Some(json!({"status": {"phase": "Running"}}))).await;
        assert_eq!((code, p["status"]["phase"].as_str()), (200, Some("Pending")));

        // Binding: once, and never a pod being deleted.
        let binding = |node: &str| json!({"metadata": {"name": "request"}, "target": {"kind": "Node", "name": node}});
        let (code, s) = call(api, "POST", &format!("{PODS}/request/binding"), None, Some(binding(""))).await;
        assert_eq!(
            (code, s["message"].as_str()),
            (422, Some("Binding \"request\" is invalid: target.name: Required value"))
        );
        let (code, s) = call(api, "POST", &format!("{PODS}/request/binding"), None, Some(binding("n1"))).await;
        assert_eq!((code, s["status"].as_str(), s["code"].as_i64()), (201, Some("Success"), Some(201)));
        let (code, s) = call(api, "POST", &format!("{PODS}/request/binding"), None, Some(binding("n2"))).await;
        assert_eq!(code, 409);
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on pods \"request\": pod request is already assigned to node \"n1\""
        );
        let (_, p) = call(api, "GET", &format!("{PODS}/request"), None, None).await;
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(status_of(api, &format!("{PODS}/request/binding")).await, 405);

        // A pod a node runs is marked and stays; one no node runs goes at once.
        let (code, p) = call(api, "DELETE", &format!("{PODS}/request"), None, None).await;
        assert_eq!((code, p["metadata"]["deletionGracePeriodSeconds"].as_i64()), (200, Some(30)));
        assert!(p["metadata"]["deletionTimestamp"].is_string());
        let (code, _) = call(api, "POST", &format!("{PODS}/request/binding"), None, Some(binding("n3"))).await;
        assert_eq!(code, 409);
        assert_eq!(status_of(api, &format!("{PODS}/request")).await, 200);
        let (code, _) =
            call(api, "DELETE", &format!("{PODS}/request"), None, Some(json!({"gracePeriodSeconds": 0}))).await;
        assert_eq!(code, 200);
        assert_eq!(status_of(api, &format!("{PODS}/request")).await, 404);
        let (code, _) = call(api, "DELETE", &format!("{PODS}/none"), None, None).await;
        assert_eq!(code, 200);
        assert_eq!(status_of(api, &format!("{PODS}/none")).await, 404);
    });
}

#[test]
fn scale_generation_and_namespace_finalization() {
    with_api_server(|state| async move {
        let api = &state;
        let deployments = "/apis/apps/v1/namespaces/default/deployments";
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let body = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}, "status": {"replicas": 9}});
        let (code, d) = call(api, "POST", deployments, None, Some(body)).await;
        assert_eq!((code, d["metadata"]["generation"].as_i64(), &d["status"]), (201, Some(1), &json!({})));
        let (code, scale) = call(api, "GET", &format!("{deployments}/web/scale"), None, None).await;
        assert_eq!(code, 200);
        assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(1)));
        assert_eq!(scale["status"]["selector"], "app=web");
        let (code, scale) =
            call(api, "PATCH", &format!("{deployments}/web/scale"), MERGE, Some(json!({"spec": {"replicas": 4}})))
                .await;
        assert_eq!((code, scale["spec"]["replicas"].as_i64()), (200, Some(4)));
        let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 5}});
        let (code, _) = call(api, "PUT", &format!("{deployments}/web/scale"), None, Some(stale)).await;
        assert_eq!(code, 409);
        let (code, s) =
            call(api, "PUT", &format!("{deployments}/web/scale"), None, Some(json!({"spec": {"replicas": -1}}))).await;
        assert_eq!(code, 422, "{s}");
        let (_, d) = call(api, "GET", &format!("{deployments}/web"), None, None).await;
        assert_eq!((d["spec"]["replicas"].as_i64(), d["metadata"]["generation"].as_i64()), (Some(4), Some(2)));
        let status = json!({"spec": {"replicas": 7}, "status": {"replicas": 4, "observedGeneration": 2}});
        let (code, d) = call(api, "PATCH", &format!("{deployments}/web/status"), MERGE, Some(status)).await;
        assert_eq!(code, 200, "{d}");
        assert_eq!((d["spec"]["replicas"].as_i64(), d["metadata"]["generation"].as_i64()), (Some(4), Some(2)));
        assert_eq!(d["status"]["replicas"], 4);

        // Namespaces: the initial ones stay; others wait for their finalizers.
        let (code, s) = call(api, "DELETE", "/api/v1/namespaces/default", None, None).await;
        assert_eq!((code, s["reason"].as_str()), (403, Some("Forbidden")));
        let (code, ns) =
            call(api, "POST", "/api/v1/namespaces", None, Some(json!({"metadata": {"name": "team"}}))).await;
        assert_eq!((code, ns["status"]["phase"].as_str()), (201, Some("Active")));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        let (code, ns) = call(api, "DELETE", "/api/v1/namespaces/team", None, None).await;
        assert_eq!((code, ns["status"]["phase"].as_str()), (200, Some("Terminating")));
        let replace = json!({"metadata": {"name": "team"}, "spec": {"finalizers": []}});
        let (code, ns) = call(api, "PUT", "/api/v1/namespaces/team", None, Some(replace)).await;
        assert_eq!((code, &ns["spec"]["finalizers"]), (200, &json!(["kubernetes"])));
        assert_eq!(status_of(api, "/api/v1/namespaces/team/finalize").await, 405);
        let finalize = json!({"metadata": {"name": "team"}, "spec": {"finalizers": []}});
        let (code, _) = call(api, "PUT", "/api/v1/namespaces/team/finalize", None, Some(finalize)).await;
        assert_eq!(code, 200);
        assert_eq!(status_of(api, "/api/v1/namespaces/team").await, 404);
    });
}

#[test]
fn services_allocate_and_give_back() {
    with_api_server(|state| async move {
        let api = &state;
        let services = "/api/v1/namespaces/default/services";
        let svc = |name: &str, spec: Value| json!({"metadata": {"name": name}, "spec": spec});
        let (code, s) = call(api, "POST", services, None, Some(svc("a", json!({"ports": [{"port": 80}]})))).await;
        assert_eq!((code, &s["status"]), (201, &json!({"loadBalancer": {}})));
        let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10."), "{ip}");
        let fixed = json!({"clusterIP": "10.96.0.50", "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]});
        let (code, s) = call(api, "POST", services, None, Some(svc("b", fixed.clone()))).await;
        assert_eq!((code, s["spec"]["clusterIPs"].clone()), (201, json!(["10.96.0.50"])));
        let (code, s) = call(api, "POST", services, None, Some(svc("c", fixed.clone()))).await;
        assert_eq!(code, 422);
        assert_eq!(s["message"], "Service \"c\" is invalid: spec.clusterIPs: Invalid value: \"10.96.0.50\": failed to allocate IP 10.96.0.50: provided IP is already allocated");
        // A replace that leaves the allocated values out keeps them.
        let replace = svc("b", json!({"type": "NodePort", "ports": [{"port": 81}]}));
        let (code, s) = call(api, "PUT", &format!("{services}/b"), None, Some(replace)).await;
        assert_eq!((code, s["spec"]["clusterIP"].as_str()), (200, Some("10.96.0.50")), "{s}");
        // Deleted, its IP and port are free again.
        let (code, _) = call(api, "DELETE", &format!("{services}/b"), None, None).await;
        assert_eq!(code, 200);
        let (code, s) = call(api, "POST", services, None, Some(svc("c", fixed))).await;
        assert_eq!(code, 201, "{s}");
        // So are those of a Service its last finalizer lets go.
        let held = json!({"metadata": {"name": "held", "finalizers": ["example.com/f"]}, "spec": {"clusterIP": "10.96.0.60", "ports": [{"port": 80}]}});
        let (code, _) = call(api, "POST", services, None, Some(held)).await;
        assert_eq!(code, 201);
        let (code, s) = call(api, "DELETE", &format!("{services}/held"), None, None).await;
        assert_eq!((code, s["metadata"]["deletionTimestamp"].is_string()), (200, true));
        let release = json!({"metadata": {"finalizers": null}});
        let (code, _) = call(api, "PATCH", &format!("{services}/held"), MERGE, Some(release)).await;
        assert_eq!(code, 200);
        assert_eq!(status_of(api, &format!("{services}/held")).await, 404);
        let again = svc("again", json!({"clusterIP": "10.96.0.60", "ports": [{"port": 80}]}));
        let (code, s) = call(api, "POST", services, None, Some(again)).await;
        assert_eq!(code, 201, "{s}");
    });
}

/// List, watch and deletecollection refuse a bad selector before anything else.
#[test]
fn collections_check_selectors_first() {
    with_api_server(|state| async move {
        let api = &state;
        for (method, query) in [
            ("GET", "fieldSelector=spec.bogus%3D1"),
            ("GET", "watch=true&fieldSelector=spec.bogus%3D1"),
            ("DELETE", "fieldSelector=spec.bogus%3D1"),
        ] {
            let req = ApiRequest {
                method: method.into(),
                path: "/api/v1/namespaces/default/configmaps".into(),
                query: query.into(),
                content_type: None,
                accept: Some("application/json".into()),
                body: vec![],
                user_agent: "registry-test".into(),
            };
            let resp = api.handle(req, "test").await;
            let bytes = match resp.body {
                Body::Full(b) => b.to_vec(),
                Body::Stream(s) => {
                    s.fold(Vec::new(), |mut all, b| async move {
                        all.extend_from_slice(&b);
                        all
                    })
                    .await
                }
            };
            let s: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(resp.status, 400, "{method} {query}");
            assert_eq!(
                s["message"],
                "\"spec.bogus\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            );
        }
    });
}
