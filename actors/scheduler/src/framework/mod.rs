//! The scheduling framework: filter and score plugins over typed pods and nodes, modelled on
//! kube-scheduler's framework (PreFilter, Filter, PreScore, Score, NormalizeScore) with the
//! same plugin names, reason strings and scoring arithmetic, so that decisions and
//! `FailedScheduling` messages read as a Kubernetes engineer expects.
//!
//! Pure library: no I/O, no clocks. The caller keeps a [`ClusterSnapshot`] up to date and asks
//! a [`Profile`] where a pod should go.

use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

pub mod default_spreading;
pub mod plugins;
pub mod pod_groups;
pub mod profile;
pub mod selector;
pub mod snapshot;
pub mod types;

#[cfg(test)]
mod testutil;

pub use default_spreading::with_default_spreading;
pub use pod_groups::{GroupId, PodGroup, PodGroups};
pub use profile::{FitError, Profile};
pub use selector::{label_selector, AffinityTerm, NodeSelectorTerm, RequiredNodeAffinity, WeightedAffinityTerm};
pub use snapshot::ClusterSnapshot;
pub use types::{HostPort, NodeInfo, PodInfo};

/// Highest score a plugin may give a node, as upstream's `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// Outcome of a PreFilter, Filter or PreScore call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// From PreFilter/PreScore: this plugin has nothing to do for this pod in this cycle.
    Skip,
    /// The node does not fit now, but evicting pods might change that.
    Unschedulable(Vec<Cow<'static, str>>),
    /// The node cannot fit the pod whatever is evicted (taints, node affinity, ...).
    UnschedulableAndUnresolvable(Vec<Cow<'static, str>>),
}

impl Status {
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::Unschedulable(vec![reason.into()])
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::UnschedulableAndUnresolvable(vec![reason.into()])
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok)
    }

    pub fn is_skip(&self) -> bool {
        matches!(self, Status::Skip)
    }

    pub fn is_rejection(&self) -> bool {
        matches!(self, Status::Unschedulable(_) | Status::UnschedulableAndUnresolvable(_))
    }

    pub fn reasons(&self) -> &[Cow<'static, str>] {
        match self {
            Status::Unschedulable(r) | Status::UnschedulableAndUnresolvable(r) => r,
            _ => &[],
        }
    }

    /// Reasons joined as upstream's `Status.Message()` does.
    pub fn message(&self) -> String {
        self.reasons().join(", ")
    }
}

/// What a plugin keeps in the [`CycleState`]: cloneable, as upstream's `StateData`, so that a
/// cycle's state can be copied and changed for one node (pods nominated there added).
pub trait StateData: Any + Send + Sync {
    fn clone_data(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Send + Sync + Clone> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Per-cycle scratch space: the incoming pod parsed once, plus whatever plugins compute in
/// PreFilter/PreScore for their Filter/Score calls on every node.
pub struct CycleState {
    pod: Arc<PodInfo>,
    node_affinity: RequiredNodeAffinity,
    data: Vec<(&'static str, Box<dyn StateData>)>,
    skipped_filters: Vec<&'static str>,
    skipped_scores: Vec<&'static str>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            pod: self.pod.clone(),
            node_affinity: self.node_affinity.clone(),
            data: self.data.iter().map(|(k, v)| (*k, (**v).clone_data())).collect(),
            skipped_filters: self.skipped_filters.clone(),
            skipped_scores: self.skipped_scores.clone(),
        }
    }
}

impl CycleState {
    pub fn new(pod: &Pod) -> Self {
        Self::from_pod_info(Arc::new(PodInfo::new(Arc::new(pod.clone()))))
    }

    pub fn from_pod_info(pod: Arc<PodInfo>) -> Self {
        let node_affinity = RequiredNodeAffinity::from_pod(pod.pod());
        CycleState { pod, node_affinity, data: Vec::new(), skipped_filters: Vec::new(), skipped_scores: Vec::new() }
    }

    /// The incoming pod, with requests, ports, tolerations and affinity terms parsed.
    pub fn pod_info(&self) -> &PodInfo {
        &self.pod
    }

    pub fn pod_info_arc(&self) -> &Arc<PodInfo> {
        &self.pod
    }

    /// The pod's nodeSelector and required node affinity, shared by NodeAffinity and
    /// PodTopologySpread (node inclusion policy).
    pub fn required_node_affinity(&self) -> &RequiredNodeAffinity {
        &self.node_affinity
    }

    pub fn write<T: Any + Send + Sync + Clone>(&mut self, key: &'static str, value: T) {
        if let Some(slot) = self.data.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = Box::new(value);
        } else {
            self.data.push((key, Box::new(value)));
        }
    }

    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.iter().find(|(k, _)| *k == key).and_then(|(_, v)| (**v).as_any().downcast_ref::<T>())
    }

    /// For PreFilter extensions, which update what PreFilter computed as pods are added to or
    /// removed from a node.
    pub fn read_mut<T: Any + Send + Sync>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data.iter_mut().find(|(k, _)| *k == key).and_then(|(_, v)| (**v).as_any_mut().downcast_mut::<T>())
    }

    /// Records that a plugin's PreFilter returned `Skip`: its Filter does not run.
    pub fn skip_filter(&mut self, plugin: &'static str) {
        self.skipped_filters.push(plugin);
    }

    pub fn is_filter_skipped(&self, plugin: &'static str) -> bool {
        self.skipped_filters.contains(&plugin)
    }

    /// Records that a plugin's PreScore returned `Skip`: its Score does not run.
    pub fn skip_score(&mut self, plugin: &'static str) {
        self.skipped_scores.push(plugin);
    }

    pub fn is_score_skipped(&self, plugin: &'static str) -> bool {
        self.skipped_scores.contains(&plugin)
    }
}

/// Every plugin has the upstream name, used in state keys and diagnostics.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

pub trait PreFilterPlugin: Plugin {
    /// Computes per-cycle data over the whole snapshot. `Skip` disables this plugin's Filter
    /// for the cycle; a rejection fails the pod on every node.
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &ClusterSnapshot) -> Status;

    /// Upstream's PreFilterExtensions AddPod: `pod` now counts on `node` (as it holds it
    /// after the change). Plugins whose PreFilter state depends on other pods update it, so
    /// that preemption's victims and nominated pods are seen by their Filter; the others do
    /// nothing. Not called for a plugin whose PreFilter returned `Skip`.
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &NodeInfo, _snapshot: &ClusterSnapshot) {}

    /// Upstream's PreFilterExtensions RemovePod: `pod` no longer counts on `node`.
    fn remove_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &NodeInfo, _snapshot: &ClusterSnapshot) {}
}

pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

pub trait PreScorePlugin: Plugin {
    /// Computes per-cycle scoring data; `nodes` are the feasible nodes. `Skip` disables this
    /// plugin's Score for the cycle.
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[&NodeInfo], snapshot: &ClusterSnapshot) -> Status;
}

pub trait ScorePlugin: Plugin {
    /// A score in `0..=MAX_NODE_SCORE` once normalized; raw scores may be any value the
    /// plugin's `normalize` understands.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64;

    /// Rescales the raw scores of all feasible nodes (same order as scored).
    fn normalize(&self, _state: &CycleState, _scores: &mut [i64]) {}
}

/// Upstream's `DefaultNormalizeScore`: scale to the maximum, optionally reversed so that the
/// lowest raw count scores highest.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max_count = scores.iter().copied().max().unwrap_or(0).max(0);
    if max_count == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = max_priority * *s / max_count;
        *s = if reverse { max_priority - scaled } else { scaled };
    }
}
