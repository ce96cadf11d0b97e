//! The controller builder against a real nats-server: typed informers with their indexes, the
//! keys each source queues, resyncs, retries with backoff and delayed requeues.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::ObjectKey;
use kubus_bus::{EmbeddedNats, Key, Store, StoreConfig};
use kubus_controller_runtime::controller::{Action, Controller, Reconciler};
use kubus_controller_runtime::InformerFactory;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store on a nats-server of its own in a temp dir (removed when the guard drops).
async fn store_on_nats(tag: &str) -> (TempDir, EmbeddedNats, Store) {
    let tok = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let dir = TempDir(std::env::temp_dir().join(format!("kubus-{tag}-{tok}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let nats = EmbeddedNats::start(&dir.0, "127.0.0.1:0", None).await.expect("nats-server starts");
    let client = kubus_bus::connect(nats.url(), &format!("{tag}-test")).await.unwrap();
    let store = Store::open(client, StoreConfig::default()).await.unwrap();
    (dir, nats, store)
}

async fn put(store: &Store, group: &str, resource: &str, obj: &Value) {
    let (ns, name) = (obj["metadata"]["namespace"].as_str().unwrap(), obj["metadata"]["name"].as_str().unwrap());
    let key = Key::new(group, resource, Some(ns), name);
    let bytes = bytes::Bytes::from(serde_json::to_vec(obj).unwrap());
    match store.get(&key).await.unwrap() {
        Some(cur) => store.update(&key, bytes, cur.revision).await.unwrap(),
        None => store.create(&key, bytes).await.unwrap(),
    };
}

fn rs(name: &str, uid: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"namespace": "default", "name": name, "uid": uid},
        "spec": {"selector": {"matchLabels": {"app": name}}}})
}

fn pod(name: &str, owner_kind: &str, owner: &str, owner_uid: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "default", "name": name, "uid": format!("uid-{name}"),
            "ownerReferences": [{"apiVersion": if owner_kind == "ReplicaSet" { "apps/v1" } else { "batch/v1" },
                "kind": owner_kind, "name": owner, "uid": owner_uid, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase}})
}

/// Counts reconciles per key; "flaky" fails twice, "timer" asks to be looked at again once.
#[derive(Default)]
struct Recorder {
    seen: Mutex<HashMap<String, usize>>,
}

impl Recorder {
    fn count(&self, name: &str) -> usize {
        self.seen.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Reconciler for Recorder {
    type Error = String;
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, String> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(key.1.clone()).or_default();
            *n += 1;
            *n
        };
        match key.1.as_str() {
            "flaky" if n <= 2 => Err(format!("attempt {n} failed")),
            "timer" if n == 1 => Ok(Action::RequeueAfter(Duration::from_millis(300))),
            _ => Ok(Action::Done),
        }
    }
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn controller_queues_owners_retries_and_requeues() {
    let (_dir, nats, store) = store_on_nats("controller").await;
    for (name, uid) in [("web", "u-web"), ("flaky", "u-flaky"), ("timer", "u-timer")] {
        put(&store, "apps", "replicasets", &rs(name, uid)).await;
    }
    put(&store, "", "pods", &pod("web-1", "ReplicaSet", "web", "u-web", "Pending")).await;

    let factory = InformerFactory::new(store.clone());
    let (replicasets, pods) = (factory.get::<ReplicaSet>(), factory.get::<Pod>());
    let recorder = Arc::new(Recorder::default());
    let controller = Controller::new("test-replicaset", replicasets.clone()).owns(pods.clone()).workers(2);
    let queue = controller.queue();
    let task = tokio::spawn(controller.run(recorder.clone()));

    // After the caches sync, every ReplicaSet is reconciled; failures are retried with backoff
    // until they succeed; a requeue comes back after its delay.
    eventually("initial reconcile of every key", || recorder.count("web") == 1).await;
    eventually("flaky retried until it succeeds", || recorder.count("flaky") == 3).await;
    eventually("timer requeued", || recorder.count("timer") == 2).await;
    assert_eq!(recorder.count("web"), 1);

    // The indexes see the pods.
    assert_eq!(pods.controlled_by("u-web").len(), 1);
    assert_eq!(pods.namespace("default").len(), 1);
    assert_eq!(replicasets.namespace("default").len(), 3);
    // The factory shares one informer per resource.
    assert_eq!(factory.get::<Pod>().len(), pods.len());
    let pod_now = pods.get("default", "web-1").unwrap();
    assert_eq!(pod_now.metadata.resource_version.as_deref().map(|v| v.parse::<u64>().is_ok()), Some(true));

    // A child's change queues its controller owner of the primary kind...
    put(&store, "", "pods", &pod("web-1", "ReplicaSet", "web", "u-web", "Running")).await;
    eventually("owner reconciled after its pod changed", || recorder.count("web") == 2).await;
    // ...a child of another kind queues nothing...
    put(&store, "", "pods", &pod("job-1", "Job", "web", "u-job", "Running")).await;
    // ...and a primary's own change queues itself.
    put(
        &store,
        "apps",
        "replicasets",
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"namespace": "default", "name": "web", "uid": "u-web", "labels": {"changed": "yes"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
    )
    .await;
    eventually("primary reconciled after its own change", || recorder.count("web") == 3).await;
    eventually("the pod of another kind is in the cache", || pods.get("default", "job-1").is_some()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorder.count("web"), 3, "the Job's pod must not queue the ReplicaSet");
    assert_eq!(pods.controlled_by("u-job").len(), 1);
    assert!(queue.is_empty() && queue.waiting() == 0);

    // Deleting a pod removes it from every index.
    let key = Key::new("", "pods", Some("default"), "web-1");
    let cur = store.get(&key).await.unwrap().unwrap();
    store.delete(&key, cur.value.clone(), cur.revision).await.unwrap();
    eventually("deleted pod leaves the indexes", || pods.controlled_by("u-web").is_empty()).await;
    eventually("owner reconciled after its pod was deleted", || recorder.count("web") == 4).await;

    task.abort();
    nats.stop().await;
}

#[tokio::test]
async fn coalesced_changes_of_children_make_few_reconciles() {
    let (_dir, nats, store) = store_on_nats("coalesce").await;
    put(&store, "apps", "replicasets", &rs("web", "u-web")).await;
    let factory = InformerFactory::new(store.clone());
    let recorder = Arc::new(Recorder::default());
    let controller = Controller::new("test-coalesce", factory.get::<ReplicaSet>())
        .owns(factory.get::<Pod>())
        .coalesce(Duration::from_millis(500));
    let task = tokio::spawn(controller.run(recorder.clone()));
    eventually("initial reconcile", || recorder.count("web") == 1).await;
    // Twenty pod changes within the window: one reconcile, after the window.
    let started = Instant::now();
    for i in 0..20 {
        put(&store, "", "pods", &pod(&format!("web-{i}"), "ReplicaSet", "web", "u-web", "Running")).await;
    }
    eventually("one coalesced reconcile", || recorder.count("web") == 2).await;
    assert!(started.elapsed() >= Duration::from_millis(450), "reconciled before the window closed");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(recorder.count("web"), 2, "the burst made more than one reconcile");
    task.abort();
    nats.stop().await;
}

#[tokio::test]
async fn a_primary_filter_keeps_unwanted_changes_from_reconciling() {
    let (_dir, nats, store) = store_on_nats("primary-filter").await;
    put(&store, "apps", "replicasets", &rs("web", "u-web")).await;
    let factory = InformerFactory::new(store.clone());
    let recorder = Arc::new(Recorder::default());
    // Only ReplicaSets labelled wanted=yes are worth a reconcile (as the node IPAM controller
    // wants only nodes without a pod CIDR).
    let wanted = |change: &kubus_controller_runtime::Change<ReplicaSet>| match change {
        kubus_controller_runtime::Change::Applied { new, .. } => {
            new.metadata.labels.as_ref().is_some_and(|l| l.get("wanted").is_some_and(|v| v == "yes"))
        }
        _ => false,
    };
    let controller = Controller::new("test-primary-filter", factory.get::<ReplicaSet>()).primary_changes(wanted);
    let task = tokio::spawn(controller.run(recorder.clone()));
    // The first sync queues every key, filter or not.
    eventually("initial reconcile", || recorder.count("web") == 1).await;
    let labelled = |value: &str| {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"namespace": "default", "name": "web", "uid": "u-web", "labels": {"wanted": value}},
            "spec": {"selector": {"matchLabels": {"app": "web"}}}})
    };
    put(&store, "apps", "replicasets", &labelled("no")).await;
    put(&store, "apps", "replicasets", &labelled("yes")).await;
    eventually("the wanted change reconciled", || recorder.count("web") == 2).await;
    put(&store, "apps", "replicasets", &labelled("no")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorder.count("web"), 2, "an unwanted change reconciled");
    task.abort();
    nats.stop().await;
}
