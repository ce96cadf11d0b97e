//! Parsed views of pods and nodes kept by the snapshot, so that the per-node hot loop works on
//! numbers and small structs instead of walking the objects. The views share the informer's
//! `Arc<Pod>` / `Arc<Node>`: what they do not precompute they read from there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, Toleration, WeightedPodAffinityTerm};
use kubus_apimachinery::pod;
use kubus_apimachinery::resources::{pod_requests, Resources};
use kubus_apimachinery::ObjectExt;

use super::pod_groups::GroupId;
use super::selector::{AffinityTerm, WeightedAffinityTerm};

pub use kubus_apimachinery::taints::{tolerates, tolerations_tolerate};

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
pub(crate) fn namespace_of(pod: &Pod) -> &str {
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
    pub terminating: bool,
    /// `spec.priority` as the Priority admission set it (0 when absent).
    pub priority: i32,
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
            terminating: pod.is_deleting(),
            priority: spec.priority.unwrap_or(0),
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
    used_ports: Vec<HostPort>,
    /// Image name → size in bytes, from `status.images` (every listed name of an image).
    images: HashMap<String, i64>,
    /// Pods per [`PodGroup`](super::pod_groups::PodGroup), kept by the snapshot that holds
    /// this node (empty for a node outside a snapshot).
    groups: Vec<(GroupId, u32)>,
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
            used_ports: Vec::new(),
            images,
            groups: Vec::new(),
        }
    }

    /// Replaces the node object (labels, taints, allocatable) keeping its pods: what the pods
    /// use does not depend on the node, so a heartbeat costs no walk over them.
    pub fn set_node(&mut self, node: impl Into<Arc<Node>>) {
        let fresh = NodeInfo::new(node);
        self.node = fresh.node;
        self.allocatable = fresh.allocatable;
        self.images = fresh.images;
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn node_arc(&self) -> &Arc<Node> {
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
        self.take_pod(pod).is_some()
    }

    /// As [`NodeInfo::remove_pod`], returning the pod as it was held here.
    pub fn take_pod(&mut self, pod: &Pod) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.is(pod))?;
        let removed = self.pods.swap_remove(i);
        self.account(&removed, -1);
        Some(removed)
    }

    /// This node's pods of group `id`.
    pub fn group_count(&self, id: GroupId) -> i64 {
        self.groups.iter().find(|(g, _)| *g == id).map_or(0, |(_, n)| i64::from(*n))
    }

    pub(crate) fn groups(&self) -> &[(GroupId, u32)] {
        &self.groups
    }

    pub(crate) fn clear_groups(&mut self) {
        self.groups.clear();
    }

    /// Counts one pod in (`add`) or out of group `id` on this node.
    pub(crate) fn count_group(&mut self, id: GroupId, add: bool) {
        match self.groups.iter().position(|(g, _)| *g == id) {
            Some(i) if add => self.groups[i].1 += 1,
            Some(i) => {
                self.groups[i].1 -= 1;
                if self.groups[i].1 == 0 {
                    self.groups.swap_remove(i);
                }
            }
            None if add => self.groups.push((id, 1)),
            None => {}
        }
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
}
