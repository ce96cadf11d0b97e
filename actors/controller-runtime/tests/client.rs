//! The typed client's requests as the API server receives them, against a real nats-server
//! with a stand-in API server that records each request and answers it.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::resource;
use kubus_bus::api::{self, ApiClient, ApiRequest, ApiResponse};
use kubus_bus::EmbeddedNats;
use kubus_controller_runtime::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the stand-in API server answers: a list of `items` for a GET, the namespace for a
/// finalize, an empty list for a deletecollection.
fn answer(req: &ApiRequest, items: &Value) -> Value {
    match (req.method.as_str(), req.path.ends_with("/finalize")) {
        ("GET", _) => items.clone(),
        ("PUT", true) => json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "doomed", "resourceVersion": "7"}, "spec": {"finalizers": []}}),
        _ => json!({"apiVersion": "v1", "kind": "List", "items": []}),
    }
}

/// The request the client sends for `method path?query` with an optional JSON body.
fn expected(method: &str, path: &str, query: &str, body: Option<Value>) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        content_type: body.as_ref().map(|_| "application/json".into()),
        accept: Some("application/json".into()),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        user_agent: "client-test".into(),
    }
}

#[tokio::test]
async fn collection_and_subresource_calls_send_the_namespace_controllers_requests() {
    let tok = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let dir = TempDir(std::env::temp_dir().join(format!("kubus-client-{tok}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
    let nc = kubus_bus::connect(nats.url(), "client-test").await.unwrap();
    let cluster = format!("test-{tok}");

    let seen: Arc<Mutex<Vec<ApiRequest>>> = Arc::default();
    let items: Arc<Mutex<Value>> = Arc::new(Mutex::new(json!({"items": [{"metadata": {"name": "a"}}, {}]})));
    let mut requests = nc.subscribe(api::api_subject(&cluster)).await.unwrap();
    let server = {
        let (nc, seen, items) = (nc.clone(), seen.clone(), items.clone());
        tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                let req: ApiRequest = api::decode(&msg.payload).unwrap();
                let body = answer(&req, &items.lock().unwrap());
                seen.lock().unwrap().push(req);
                let resp = ApiResponse {
                    status: 200,
                    content_type: "application/json".into(),
                    body: body.to_string().into_bytes(),
                };
                nc.publish(msg.reply.unwrap(), api::encode(&resp).unwrap().into()).await.unwrap();
            }
        })
    };
    let client = Client::new(ApiClient::new(nc.clone(), &cluster, "client-test"));
    let pods = resource::of::<Pod>();

    client.delete_collection_dynamic(pods, Some("doomed"), "").await.unwrap();
    assert_eq!(client.count_dynamic(pods, Some("doomed"), "").await.unwrap(), 2);
    let finalize = Namespace {
        metadata: ObjectMeta { name: Some("doomed".into()), ..Default::default() },
        spec: Some(NamespaceSpec { finalizers: Some(Vec::new()) }),
        status: None,
    };
    let ns: Namespace = client.replace_subresource("", "doomed", "finalize", &finalize).await.unwrap();
    assert_eq!(ns.metadata.resource_version.as_deref(), Some("7"));
    // Lists without items (absent or null) count nothing; other scopes and queries pass through.
    *items.lock().unwrap() = json!({"items": null});
    assert_eq!(client.count_dynamic(pods, None, "labelSelector=app%3Dweb").await.unwrap(), 0);
    *items.lock().unwrap() = json!({"kind": "PodList"});
    let rs = resource::of::<k8s_openapi::api::apps::v1::ReplicaSet>();
    assert_eq!(client.count_dynamic(rs, Some("doomed"), "").await.unwrap(), 0);
    client.delete_collection_dynamic(rs, None, "labelSelector=x").await.unwrap();

    let want = vec![
        expected("DELETE", "/api/v1/namespaces/doomed/pods", "", None),
        expected("GET", "/api/v1/namespaces/doomed/pods", "", None),
        expected(
            "PUT",
            "/api/v1/namespaces/doomed/finalize",
            "",
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"},
                "spec": {"finalizers": []}})),
        ),
        expected("GET", "/api/v1/pods", "labelSelector=app%3Dweb", None),
        expected("GET", "/apis/apps/v1/namespaces/doomed/replicasets", "", None),
        expected("DELETE", "/apis/apps/v1/replicasets", "labelSelector=x", None),
    ];
    assert_eq!(*seen.lock().unwrap(), want);
    server.abort();
}
