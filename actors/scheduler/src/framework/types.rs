//! Parsed views of pods and nodes kept by the snapshot, so that the per-node hot loop works on
//! numbers and small structs instead of walking JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::selector::{AffinityTerm, LabelSelector, WeightedAffinityTerm};
use super::{labels_of, parse_quantity_value, slice, str_of, DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST};

/// Aggregated amounts as upstream's `framework.Resource`: cpu in millicores, everything else
/// in whole units (bytes, pods, devices).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended resources, hugepages and anything else named in a resource list.
    pub scalar: BTreeMap<String, i64>,
}

fn to_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Resource {
    /// Builds from a `ResourceList` object; unparsable quantities are ignored because the API
    /// server has validated them already.
    pub fn from_list(list: Option<&Value>) -> Self {
        let mut r = Resource::default();
        r.add_list(list);
        r
    }

    pub fn add_list(&mut self, list: Option<&Value>) {
        let Some(list) = list.and_then(Value::as_object) else {
            return;
        };
        for (name, q) in list {
            let Ok(q) = parse_quantity_value(q) else {
                continue;
            };
            match name.as_str() {
                "cpu" => self.milli_cpu += to_i64(q.milli_value()),
                "memory" => self.memory += to_i64(q.value()),
                "ephemeral-storage" => self.ephemeral_storage += to_i64(q.value()),
                "pods" => self.allowed_pod_number += to_i64(q.value()),
                other => *self.scalar.entry(other.to_string()).or_insert(0) += to_i64(q.value()),
            }
        }
    }

    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pod_number += o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pod_number -= o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    pub fn set_max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(o.allowed_pod_number);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Value, non_missing_defaults: bool) -> Resource {
    let list = c.get("resources").and_then(|r| r.get("requests"));
    let mut r = Resource::from_list(list);
    if non_missing_defaults {
        // Only a missing request is defaulted; an explicit zero stays zero (as upstream).
        let has = |k: &str| list.and_then(|l| l.get(k)).is_some();
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// Upstream's `resource.PodRequests`: containers summed, then the max with each init
/// container, where sidecars (init containers with `restartPolicy: Always`) keep running and
/// so add to everything after them; overhead on top.
pub fn pod_requests(pod: &Value, non_missing_defaults: bool) -> Resource {
    let spec = pod.get("spec");
    let mut reqs = Resource::default();
    for c in slice(spec.and_then(|s| s.get("containers"))) {
        reqs.add(&container_requests(c, non_missing_defaults));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in slice(spec.and_then(|s| s.get("initContainers"))) {
        let mut r = container_requests(c, non_missing_defaults);
        if str_of(c, "restartPolicy") == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.set_max(&sidecars);
        } else {
            r.add(&sidecars);
            init_max.set_max(&r);
        }
    }
    reqs.set_max(&init_max);
    reqs.add_list(spec.and_then(|s| s.get("overhead")));
    reqs
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    pub fn from_json(v: &Value) -> Self {
        Taint {
            key: str_of(v, "key").unwrap_or_default().to_string(),
            value: str_of(v, "value").unwrap_or_default().to_string(),
            effect: str_of(v, "effect").unwrap_or_default().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
}

impl Toleration {
    pub fn from_json(v: &Value) -> Self {
        Toleration {
            key: str_of(v, "key").unwrap_or_default().to_string(),
            operator: str_of(v, "operator").unwrap_or_default().to_string(),
            value: str_of(v, "value").unwrap_or_default().to_string(),
            effect: str_of(v, "effect").unwrap_or_default().to_string(),
        }
    }

    /// Upstream's `Toleration.ToleratesTaint`: empty effect or key match any, empty operator
    /// means Equal.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == taint.value,
            "Exists" => true,
            _ => false,
        }
    }
}

pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// A `hostPort` claim, defaulted as upstream's `HostPortInfo` does (0.0.0.0, TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i64,
}

impl HostPort {
    const ANY_IP: &'static str = "0.0.0.0";

    /// Same protocol and port clash when either side binds all addresses or both bind the
    /// same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == Self::ANY_IP || other.ip == Self::ANY_IP || self.ip == other.ip)
    }
}

fn host_ports(pod: &Value) -> Vec<HostPort> {
    let spec = pod.get("spec");
    let mut out = Vec::new();
    for c in slice(spec.and_then(|s| s.get("containers"))) {
        for p in slice(c.get("ports")) {
            let port = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if port <= 0 {
                continue;
            }
            let ip = str_of(p, "hostIP").filter(|s| !s.is_empty());
            let protocol = str_of(p, "protocol").filter(|s| !s.is_empty());
            out.push(HostPort {
                ip: ip.unwrap_or(HostPort::ANY_IP).to_string(),
                protocol: protocol.unwrap_or("TCP").to_string(),
                port,
            });
        }
    }
    out
}

/// A pod parsed once: what the plugins need of an incoming or an existing pod.
#[derive(Debug)]
pub struct PodInfo {
    pod: Arc<Value>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Requests for the fit check (missing requests count as zero).
    pub requests: Resource,
    /// Cpu and memory with upstream's non-zero defaults, for LeastAllocated.
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// Has a podAffinity or podAntiAffinity stanza at all (upstream's PodsWithAffinity).
    pub has_pod_affinity: bool,
    pub terminating: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Value>) -> Self {
        let meta = pod.get("metadata");
        let meta_str = |k: &str| meta.and_then(|m| str_of(m, k)).unwrap_or_default().to_string();
        let namespace =
            meta.and_then(|m| str_of(m, "namespace")).filter(|s| !s.is_empty()).unwrap_or("default").to_string();
        let spec = pod.get("spec");
        let non_zero = pod_requests(&pod, true);
        let tolerations = slice(spec.and_then(|s| s.get("tolerations"))).iter().map(Toleration::from_json).collect();
        let affinity = spec.and_then(|s| s.get("affinity"));
        let pa = affinity.and_then(|a| a.get("podAffinity"));
        let paa = affinity.and_then(|a| a.get("podAntiAffinity"));
        let required = |v: Option<&Value>| -> Vec<AffinityTerm> {
            slice(v.and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution")))
                .iter()
                .map(|t| AffinityTerm::from_json(t, &namespace))
                .collect()
        };
        let preferred = |v: Option<&Value>| -> Vec<WeightedAffinityTerm> {
            slice(v.and_then(|a| a.get("preferredDuringSchedulingIgnoredDuringExecution")))
                .iter()
                .map(|t| WeightedAffinityTerm::from_json(t, &namespace))
                .collect()
        };
        PodInfo {
            namespace: namespace.clone(),
            name: meta_str("name"),
            uid: meta_str("uid"),
            requests: pod_requests(&pod, false),
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports: host_ports(&pod),
            tolerations,
            required_affinity_terms: required(pa),
            required_anti_affinity_terms: required(paa),
            preferred_affinity_terms: preferred(pa),
            preferred_anti_affinity_terms: preferred(paa),
            has_pod_affinity: pa.is_some_and(|v| !v.is_null()) || paa.is_some_and(|v| !v.is_null()),
            terminating: meta.is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null())),
            pod,
        }
    }

    pub fn pod(&self) -> &Value {
        &self.pod
    }

    pub fn pod_arc(&self) -> &Arc<Value> {
        &self.pod
    }

    pub fn labels(&self) -> Option<&Map<String, Value>> {
        labels_of(&self.pod)
    }

    /// Same object: by uid when both have one, else by namespace/name.
    pub fn same_pod(&self, other: &PodInfo) -> bool {
        if !self.uid.is_empty() && !other.uid.is_empty() {
            return self.uid == other.uid;
        }
        self.namespace == other.namespace && self.name == other.name
    }
}

/// A node and what is already committed to it, kept numerically so that filtering a node is
/// a few integer comparisons.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    node: Arc<Value>,
    name: String,
    pub allocatable: Resource,
    /// Sum of assigned pods' requests (missing requests as zero).
    pub requested: Resource,
    /// Sum with upstream's non-zero cpu/memory defaults; only `milli_cpu`/`memory` are used.
    pub non_zero_requested: Resource,
    pods: Vec<Arc<PodInfo>>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
    used_ports: Vec<HostPort>,
    taints: Vec<Taint>,
    unschedulable: bool,
    /// Image name → size in bytes, from `status.images` (every listed name of an image).
    images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Value) -> Self {
        Self::from_arc(Arc::new(node))
    }

    pub fn from_arc(node: Arc<Value>) -> Self {
        let name = node.get("metadata").and_then(|m| str_of(m, "name")).unwrap_or_default().to_string();
        let spec = node.get("spec");
        let taints = slice(spec.and_then(|s| s.get("taints"))).iter().map(Taint::from_json).collect();
        let unschedulable = spec.and_then(|s| s.get("unschedulable")).and_then(Value::as_bool).unwrap_or(false);
        let status = node.get("status");
        let allocatable = Resource::from_list(status.and_then(|s| s.get("allocatable")));
        let mut images = HashMap::new();
        for img in slice(status.and_then(|s| s.get("images"))) {
            let size = img.get("sizeBytes").and_then(Value::as_i64).unwrap_or(0);
            for name in slice(img.get("names")).iter().filter_map(Value::as_str) {
                images.insert(name.to_string(), size);
            }
        }
        NodeInfo {
            node,
            name,
            allocatable,
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: Vec::new(),
            taints,
            unschedulable,
            images,
        }
    }

    /// Replaces the node object (labels, taints, allocatable) keeping its pods.
    pub fn set_node(&mut self, node: Value) {
        let mut fresh = NodeInfo::new(node);
        std::mem::swap(&mut fresh.pods, &mut self.pods);
        for p in &fresh.pods.clone() {
            fresh.account(p, 1);
        }
        *self = fresh;
    }

    pub fn node(&self) -> &Value {
        &self.node
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> Option<&Map<String, Value>> {
        labels_of(&self.node)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        super::label(self.labels(), key)
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    pub fn pods(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    pub fn has_pods_with_affinity(&self) -> bool {
        self.pods_with_affinity > 0
    }

    pub fn has_pods_with_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }

    pub fn images(&self) -> &HashMap<String, i64> {
        &self.images
    }

    pub fn used_ports(&self) -> &[HostPort] {
        &self.used_ports
    }

    pub fn add_pod(&mut self, pod: &Value) {
        self.add_pod_info(Arc::new(PodInfo::new(Arc::new(pod.clone()))));
    }

    pub fn add_pod_info(&mut self, pod: Arc<PodInfo>) {
        self.account(&pod, 1);
        self.pods.push(pod);
    }

    /// Removes the pod with the same uid (or namespace/name); false if it was not here.
    pub fn remove_pod(&mut self, pod: &Value) -> bool {
        let probe = PodInfo::new(Arc::new(pod.clone()));
        self.remove_pod_info(&probe)
    }

    pub fn remove_pod_info(&mut self, pod: &PodInfo) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.same_pod(pod)) else {
            return false;
        };
        let removed = self.pods.swap_remove(i);
        self.account(&removed, -1);
        true
    }

    fn account(&mut self, pod: &PodInfo, sign: i64) {
        if sign > 0 {
            self.requested.add(&pod.requests);
            self.used_ports.extend(pod.host_ports.iter().cloned());
        } else {
            self.requested.sub(&pod.requests);
            for hp in &pod.host_ports {
                if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                    self.used_ports.swap_remove(i);
                }
            }
        }
        self.non_zero_requested.milli_cpu += sign * pod.non_zero_milli_cpu;
        self.non_zero_requested.memory += sign * pod.non_zero_memory;
        if pod.has_pod_affinity {
            self.pods_with_affinity = self.pods_with_affinity.saturating_add_signed(sign as isize);
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity =
                self.pods_with_required_anti_affinity.saturating_add_signed(sign as isize);
        }
    }
}

/// The scheduler's view of the cluster for one cycle: nodes with their assigned pods, and
/// namespace labels for affinity terms' namespaceSelector.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    namespace_labels: HashMap<String, Map<String, Value>>,
    /// How many nodes hold each image, for ImageLocality's spread factor.
    image_nodes: HashMap<String, usize>,
}

impl ClusterSnapshot {
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name().to_string(), i)).collect();
        let mut s =
            ClusterSnapshot { nodes: Vec::new(), index, namespace_labels: HashMap::new(), image_nodes: HashMap::new() };
        for n in &nodes {
            s.count_images(n, 1);
        }
        s.nodes = nodes;
        s
    }

    fn count_images(&mut self, node: &NodeInfo, sign: isize) {
        for name in node.images().keys() {
            let c = self.image_nodes.entry(name.clone()).or_insert(0);
            *c = c.saturating_add_signed(sign);
        }
    }

    /// Number of nodes that have pulled `image` (exact name as the kubelet reports it).
    pub fn image_num_nodes(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Builds from raw objects: pods are placed on their `spec.nodeName`; unassigned pods and
    /// finished ones (Succeeded/Failed) are left out, as upstream's informer filters them.
    pub fn from_objects(nodes: &[Value], pods: &[Value]) -> Self {
        let mut s = ClusterSnapshot::new(nodes.iter().cloned().map(NodeInfo::new).collect());
        for p in pods {
            s.add_pod(p);
        }
        s
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.index.get(name).map(|&i| &mut self.nodes[i])
    }

    /// Adds or replaces a node (by name), keeping its pods on replace.
    pub fn upsert_node(&mut self, node: Value) {
        let name = node.get("metadata").and_then(|m| str_of(m, "name")).unwrap_or_default().to_string();
        match self.index.get(&name).copied() {
            Some(i) => {
                let old = std::mem::replace(&mut self.nodes[i], NodeInfo::new(Value::Null));
                self.count_images(&old, -1);
                let mut updated = old;
                updated.set_node(node);
                self.count_images(&updated, 1);
                self.nodes[i] = updated;
            }
            None => {
                let n = NodeInfo::new(node);
                self.count_images(&n, 1);
                self.index.insert(name, self.nodes.len());
                self.nodes.push(n);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) -> Option<NodeInfo> {
        let i = self.index.remove(name)?;
        let removed = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name().to_string(), i);
        }
        self.count_images(&removed, -1);
        Some(removed)
    }

    /// Accounts an assigned pod on its node; false if unassigned, finished or the node is
    /// unknown.
    pub fn add_pod(&mut self, pod: &Value) -> bool {
        let phase = pod.get("status").and_then(|s| str_of(s, "phase"));
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return false;
        }
        let Some(node) = pod.get("spec").and_then(|s| str_of(s, "nodeName")) else {
            return false;
        };
        let node = node.to_string();
        match self.node_mut(&node) {
            Some(n) => {
                n.add_pod(pod);
                true
            }
            None => false,
        }
    }

    /// Records a scheduling decision (upstream's "assume") without re-parsing the pod.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) -> bool {
        match self.node_mut(node) {
            Some(n) => {
                n.add_pod_info(pod);
                true
            }
            None => false,
        }
    }

    /// Removes a pod from whichever node holds it.
    pub fn remove_pod(&mut self, pod: &Value) -> bool {
        let probe = PodInfo::new(Arc::new(pod.clone()));
        let hint = pod.get("spec").and_then(|s| str_of(s, "nodeName"));
        if let Some(n) = hint.and_then(|h| self.index.get(h).copied()) {
            if self.nodes[n].remove_pod_info(&probe) {
                return true;
            }
        }
        self.nodes.iter_mut().any(|n| n.remove_pod_info(&probe))
    }

    pub fn set_namespace_labels(&mut self, namespace: &str, labels: Map<String, Value>) {
        self.namespace_labels.insert(namespace.to_string(), labels);
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&Map<String, Value>> {
        self.namespace_labels.get(namespace)
    }

    /// Pods in `namespace` (any when None) whose labels match `selector`, with their nodes.
    pub fn pods_matching<'a>(
        &'a self,
        selector: &'a LabelSelector,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a NodeInfo, &'a Arc<PodInfo>)> + 'a {
        self.nodes.iter().flat_map(move |n| {
            n.pods()
                .iter()
                .filter(move |p| namespace.is_none_or(|ns| p.namespace == ns) && selector.matches(p.labels()))
                .map(move |p| (n, p))
        })
    }
}
