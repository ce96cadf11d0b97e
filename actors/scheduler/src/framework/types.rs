//! Parsed views of pods and nodes kept by the snapshot, so that the per-node hot loop works on
//! numbers and small structs instead of walking the objects. The views share the informer's
//! `Arc<Pod>` / `Arc<Node>`: what they do not precompute they read from there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, Toleration, WeightedPodAffinityTerm};
use kubus_apimachinery::pod;
use kubus_apimachinery::resources::{pod_requests, Resources};
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::ObjectExt;

use super::selector::{AffinityTerm, WeightedAffinityTerm};

/// Upstream's `Toleration.ToleratesTaint`: empty effect or key match any, empty operator
/// means Equal.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// A `hostPort` claim, defaulted as upstream's `HostPortInfo` does (0.0.0.0, TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
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

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    for c in &pod::spec(pod).containers {
        for p in c.ports.iter().flatten() {
            let port = p.host_port.unwrap_or(0);
            if port <= 0 {
                continue;
            }
            let ip = p.host_ip.as_deref().filter(|s| !s.is_empty());
            let protocol = p.protocol.as_deref().filter(|s| !s.is_empty());
            out.push(HostPort {
                ip: ip.unwrap_or(HostPort::ANY_IP).to_string(),
                protocol: protocol.unwrap_or("TCP").to_string(),
                port,
            });
        }
    }
    out
}

/// The namespace the scheduler files a pod under ("default" when the object names none).
fn namespace_of(pod: &Pod) -> &str {
    match pod.namespace() {
        "" => "default",
        ns => ns,
    }
}

/// The (required, preferred) terms of a podAffinity or podAntiAffinity stanza, with
/// namespaces resolved against the owning pod's.
fn affinity_terms(
    required: Option<&Vec<PodAffinityTerm>>,
    preferred: Option<&Vec<WeightedPodAffinityTerm>>,
    namespace: &str,
) -> (Vec<AffinityTerm>, Vec<WeightedAffinityTerm>) {
    (
        required.into_iter().flatten().map(|t| AffinityTerm::from_typed(t, namespace)).collect(),
        preferred.into_iter().flatten().map(|t| WeightedAffinityTerm::from_typed(t, namespace)).collect(),
    )
}

/// A pod parsed once: what the plugins need of an incoming or an existing pod.
#[derive(Debug)]
pub struct PodInfo {
    pod: Arc<Pod>,
    /// Requests for the fit check (missing requests count as zero).
    pub requests: Resources,
    /// Cpu and memory with upstream's non-zero defaults, for LeastAllocated.
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// Has a podAffinity or podAntiAffinity stanza at all (upstream's PodsWithAffinity).
    pub has_pod_affinity: bool,
    pub terminating: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let namespace = namespace_of(&pod);
        let spec = pod::spec(&pod);
        let non_zero = pod_requests(spec, true);
        let pa = spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
        let paa = spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref());
        let (required_affinity_terms, preferred_affinity_terms) = affinity_terms(
            pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            namespace,
        );
        let (required_anti_affinity_terms, preferred_anti_affinity_terms) = affinity_terms(
            paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            namespace,
        );
        PodInfo {
            requests: pod_requests(spec, false),
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports: host_ports(&pod),
            required_affinity_terms,
            required_anti_affinity_terms,
            preferred_affinity_terms,
            preferred_anti_affinity_terms,
            has_pod_affinity: pa.is_some() || paa.is_some(),
            terminating: pod.is_deleting(),
            pod,
        }
    }

    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    pub fn pod_arc(&self) -> &Arc<Pod> {
        &self.pod
    }

    /// The pod's namespace ("default" when the object names none).
    pub fn namespace(&self) -> &str {
        namespace_of(&self.pod)
    }

    pub fn name(&self) -> &str {
        self.pod.name()
    }

    pub fn uid(&self) -> &str {
        self.pod.uid()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.labels()
    }

    pub fn tolerations(&self) -> &[Toleration] {
        pod::spec(&self.pod).tolerations.as_deref().unwrap_or(&[])
    }

    /// Whether `pod` is this pod: by uid when both have one, else by namespace/name.
    pub fn is(&self, pod: &Pod) -> bool {
        if !self.uid().is_empty() && !pod.uid().is_empty() {
            return self.uid() == pod.uid();
        }
        self.namespace() == namespace_of(pod) && self.name() == pod.name()
    }

    /// Same object (see [`PodInfo::is`]).
    pub fn same_pod(&self, other: &PodInfo) -> bool {
        self.is(&other.pod)
    }
}

/// A node and what is already committed to it, kept numerically so that filtering a node is
/// a few integer comparisons.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    node: Arc<Node>,
    pub allocatable: Resources,
    /// Sum of assigned pods' requests (missing requests as zero).
    pub requested: Resources,
    /// Sum with upstream's non-zero cpu/memory defaults; only `milli_cpu`/`memory` are used.
    pub non_zero_requested: Resources,
    pods: Vec<Arc<PodInfo>>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
    used_ports: Vec<HostPort>,
    /// Image name → size in bytes, from `status.images` (every listed name of an image).
    images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: impl Into<Arc<Node>>) -> Self {
        let node = node.into();
        let status = node.status.as_ref();
        let allocatable = Resources::from_list(status.and_then(|s| s.allocatable.as_ref()));
        let mut images = HashMap::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            let size = img.size_bytes.unwrap_or(0);
            for name in img.names.iter().flatten() {
                images.insert(name.clone(), size);
            }
        }
        NodeInfo {
            node,
            allocatable,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: Vec::new(),
            images,
        }
    }

    /// Replaces the node object (labels, taints, allocatable) keeping its pods.
    pub fn set_node(&mut self, node: impl Into<Arc<Node>>) {
        let mut fresh = NodeInfo::new(node);
        for p in std::mem::take(&mut self.pods) {
            fresh.add_pod_info(p);
        }
        *self = fresh;
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn name(&self) -> &str {
        self.node.name()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.labels()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.node.label(key)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }

    pub fn unschedulable(&self) -> bool {
        self.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
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

    pub fn add_pod(&mut self, pod: impl Into<Arc<Pod>>) {
        self.add_pod_info(Arc::new(PodInfo::new(pod.into())));
    }

    pub fn add_pod_info(&mut self, pod: Arc<PodInfo>) {
        self.account(&pod, 1);
        self.pods.push(pod);
    }

    /// Removes the pod with the same uid (or namespace/name); false if it was not here.
    pub fn remove_pod(&mut self, pod: &Pod) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.is(pod)) else {
            return false;
        };
        let removed = self.pods.swap_remove(i);
        self.account(&removed, -1);
        true
    }

    pub fn remove_pod_info(&mut self, pod: &PodInfo) -> bool {
        self.remove_pod(pod.pod())
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
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// How many nodes hold each image, for ImageLocality's spread factor.
    image_nodes: HashMap<String, usize>,
}

/// Counts `node`'s images in or out of the per-image node counts.
fn count_images(image_nodes: &mut HashMap<String, usize>, node: &NodeInfo, sign: isize) {
    for name in node.images().keys() {
        let c = image_nodes.entry(name.clone()).or_insert(0);
        *c = c.saturating_add_signed(sign);
    }
}

impl ClusterSnapshot {
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name().to_string(), i)).collect();
        let mut image_nodes = HashMap::new();
        for n in &nodes {
            count_images(&mut image_nodes, n, 1);
        }
        ClusterSnapshot { nodes, index, namespace_labels: HashMap::new(), image_nodes }
    }

    /// Number of nodes that have pulled `image` (exact name as the kubelet reports it).
    pub fn image_num_nodes(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Builds from the objects (shared with the informers, not copied): pods are placed on
    /// their `spec.nodeName`; unassigned pods and finished ones (Succeeded/Failed) are left
    /// out, as upstream's informer filters them.
    pub fn from_objects<N, P>(nodes: impl IntoIterator<Item = N>, pods: impl IntoIterator<Item = P>) -> Self
    where
        N: Into<Arc<Node>>,
        P: Into<Arc<Pod>>,
    {
        let mut s = ClusterSnapshot::new(nodes.into_iter().map(NodeInfo::new).collect());
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
    pub fn upsert_node(&mut self, node: impl Into<Arc<Node>>) {
        let node = node.into();
        match self.index.get(node.name()).copied() {
            Some(i) => {
                let existing = &mut self.nodes[i];
                count_images(&mut self.image_nodes, existing, -1);
                existing.set_node(node);
                count_images(&mut self.image_nodes, existing, 1);
            }
            None => {
                let n = NodeInfo::new(node);
                count_images(&mut self.image_nodes, &n, 1);
                self.index.insert(n.name().to_string(), self.nodes.len());
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
        count_images(&mut self.image_nodes, &removed, -1);
        Some(removed)
    }

    /// Accounts an assigned pod on its node; false if unassigned, finished or the node is
    /// unknown.
    pub fn add_pod(&mut self, pod: impl Into<Arc<Pod>>) -> bool {
        let pod = pod.into();
        if pod::is_terminal(&pod) {
            return false;
        }
        let Some(i) = pod::node_name(&pod).and_then(|n| self.index.get(n).copied()) else {
            return false;
        };
        self.nodes[i].add_pod(pod);
        true
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

    /// Removes a pod from whichever node holds it (its `spec.nodeName` is looked at first).
    pub fn remove_pod(&mut self, pod: &Pod) -> bool {
        if let Some(n) = pod::node_name(pod).and_then(|h| self.index.get(h).copied()) {
            if self.nodes[n].remove_pod(pod) {
                return true;
            }
        }
        self.nodes.iter_mut().any(|n| n.remove_pod(pod))
    }

    pub fn set_namespace_labels(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.namespace_labels.insert(namespace.to_string(), labels);
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
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
                .filter(move |p| namespace.is_none_or(|ns| p.namespace() == ns) && selector.matches_labels(p.labels()))
                .map(move |p| (n, p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::json;

    #[test]
    fn toleration_matching_as_upstream() {
        let taint: Taint = typed(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}));
        let tol = |v: serde_json::Value| -> Toleration { typed(v) };
        assert!(tolerates(&tol(json!({"key": "dedicated", "value": "gpu"})), &taint));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(&tol(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})), &taint));
        assert!(!tolerates(&tol(json!({"key": "dedicated", "operator": "Gt", "value": "gpu"})), &taint));
        // A taint without a value is tolerated by an Equal toleration without one.
        let bare: Taint = typed(json!({"key": "k", "effect": "NoSchedule"}));
        assert!(tolerates(&tol(json!({"key": "k", "operator": "Equal"})), &bare));
    }

    #[test]
    fn pods_are_identified_by_uid_then_by_name() {
        let mut n = node_info(node("n1", "4", "8Gi"), &[on(pod("a", Some("1"), None), "n1")]);
        let mut renamed = pod("other", None, None);
        renamed.metadata.uid = Some("uid-a".into());
        assert!(n.remove_pod(&renamed));
        assert_eq!(n.requested.milli_cpu, 0);
        // Without a uid on either side, namespace ("default" when unset) and name decide.
        let mut a = pod("a", Some("1"), None);
        a.metadata.uid = None;
        a.metadata.namespace = None;
        n.add_pod(on(a.clone(), "n1"));
        assert!(!n.remove_pod(&set(a.clone(), "/metadata/namespace", json!("prod"))));
        assert!(n.remove_pod(&set(a, "/metadata/namespace", json!("default"))));
        assert!(n.pods().is_empty());
    }

    #[test]
    fn upsert_node_keeps_pods_and_recounts_images() {
        let with_image = |n| set(n, "/status/images", json!([{"names": ["nginx:latest"], "sizeBytes": 1}]));
        let mut snap = snapshot(vec![with_image(node("a", "4", "8Gi"))], &[on(pod("p", Some("1"), None), "a")]);
        assert_eq!(snap.image_num_nodes("nginx:latest"), 1);
        snap.upsert_node(node("a", "8", "8Gi"));
        let a = snap.node("a").unwrap();
        assert_eq!((a.allocatable.milli_cpu, a.requested.milli_cpu, a.pods().len()), (8000, 1000, 1));
        assert_eq!(snap.image_num_nodes("nginx:latest"), 0);
        snap.upsert_node(with_image(node("b", "4", "8Gi")));
        assert_eq!(snap.image_num_nodes("nginx:latest"), 1);
        assert!(snap.remove_node("a").is_some());
        assert_eq!(snap.node("b").map(NodeInfo::name), Some("b"));
        // Finished and unassigned pods are not accounted.
        assert!(!snap.add_pod(set(on(pod("done", None, None), "b"), "/status/phase", json!("Succeeded"))));
        assert!(!snap.add_pod(pod("pending", None, None)));
    }
}
