//! Builders for test nodes and pods: written as JSON (as a user would), read into the typed
//! objects the framework works on.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kubus_apimachinery::Object;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::{ClusterSnapshot, CycleState, NodeInfo, PodInfo};

/// Reads a JSON fixture into its typed form.
pub fn typed<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture matches its type")
}

/// A ready node with the given allocatable cpu/memory and 110 pods.
pub fn node(name: &str, cpu: &str, memory: &str) -> Node {
    typed(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    }))
}

/// A pod with one container requesting cpu/memory (None leaves the request out).
pub fn pod(name: &str, cpu: Option<&str>, memory: Option<&str>) -> Pod {
    let mut req = serde_json::Map::new();
    if let Some(c) = cpu {
        req.insert("cpu".into(), json!(c));
    }
    if let Some(m) = memory {
        req.insert("memory".into(), json!(m));
    }
    typed(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": req}}]}
    }))
}

/// Sets `value` at a JSON pointer of the object's JSON form, creating objects along the way
/// (numeric tokens index existing arrays).
pub fn set<T: Serialize + DeserializeOwned>(obj: T, pointer: &str, value: Value) -> T {
    let mut v = serde_json::to_value(obj).expect("serializes");
    let mut cur = &mut v;
    for part in pointer.trim_start_matches('/').split('/') {
        let part = part.replace("~1", "/").replace("~0", "~");
        if cur.is_array() {
            let i: usize = part.parse().expect("array index");
            cur = &mut cur[i];
            continue;
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur.as_object_mut().unwrap().entry(part).or_insert(Value::Null);
    }
    *cur = value;
    typed(v)
}

pub fn label<T: Object>(mut obj: T, key: &str, value: &str) -> T {
    obj.metadata_mut().labels.get_or_insert_with(Default::default).insert(key.to_string(), value.to_string());
    obj
}

/// Places `pod` on `node_name` (sets spec.nodeName) and returns it.
pub fn on(mut pod: Pod, node_name: &str) -> Pod {
    pod.spec.get_or_insert_with(Default::default).node_name = Some(node_name.to_string());
    pod
}

pub fn info(pod: &Pod) -> Arc<PodInfo> {
    Arc::new(PodInfo::new(Arc::new(pod.clone())))
}

pub fn state(pod: &Pod) -> CycleState {
    CycleState::new(pod)
}

pub fn node_info(node: Node, pods: &[Pod]) -> NodeInfo {
    let mut n = NodeInfo::new(node);
    for p in pods {
        n.add_pod(p.clone());
    }
    n
}

pub fn snapshot(nodes: Vec<Node>, pods: &[Pod]) -> ClusterSnapshot {
    ClusterSnapshot::from_objects(nodes, pods.iter().cloned())
}
