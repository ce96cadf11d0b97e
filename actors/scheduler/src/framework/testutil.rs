//! Builders for test nodes and pods.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{ClusterSnapshot, CycleState, NodeInfo, PodInfo};

/// A ready node with the given allocatable cpu/memory and 110 pods.
pub fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    })
}

/// A pod with one container requesting cpu/memory (None leaves the request out).
pub fn pod(name: &str, cpu: Option<&str>, memory: Option<&str>) -> Value {
    let mut req = serde_json::Map::new();
    if let Some(c) = cpu {
        req.insert("cpu".into(), json!(c));
    }
    if let Some(m) = memory {
        req.insert("memory".into(), json!(m));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": req}}]}
    })
}

/// Sets `value` at a JSON pointer, creating objects along the way (numeric tokens index
/// existing arrays).
pub fn set(mut v: Value, pointer: &str, value: Value) -> Value {
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
    v
}

pub fn label(mut v: Value, key: &str, value: &str) -> Value {
    let meta = v["metadata"].as_object_mut().unwrap();
    let labels = meta.entry("labels").or_insert(json!({}));
    labels.as_object_mut().unwrap().insert(key.to_string(), json!(value));
    v
}

/// Places `pod` on `node_name` (sets spec.nodeName) and returns it.
pub fn on(pod: Value, node_name: &str) -> Value {
    set(pod, "/spec/nodeName", json!(node_name))
}

pub fn info(pod: &Value) -> Arc<PodInfo> {
    Arc::new(PodInfo::new(Arc::new(pod.clone())))
}

pub fn state(pod: &Value) -> CycleState {
    CycleState::new(pod)
}

pub fn node_info(node: Value, pods: &[Value]) -> NodeInfo {
    let mut n = NodeInfo::new(node);
    for p in pods {
        n.add_pod(p);
    }
    n
}

pub fn snapshot(nodes: Vec<Value>, pods: &[Value]) -> ClusterSnapshot {
    ClusterSnapshot::from_objects(&nodes, pods)
}
