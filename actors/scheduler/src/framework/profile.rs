//! A scheduling profile: the plugins in upstream's default order and weights, and one
//! scheduling cycle (PreFilter, Filter, PreScore, Score, NormalizeScore, select host).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::{pod, ObjectExt};

use super::plugins::{
    ImageLocality, InterPodAffinity, NodeAffinity, NodeName, NodePorts, NodeResourcesBalancedAllocation,
    NodeResourcesFit, NodeUnschedulable, PodTopologySpread, TaintToleration,
};
use super::{
    ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
};

/// Below this many nodes every node is evaluated (upstream's minFeasibleNodesToFind).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Why a pod fits no node; renders upstream's `FailedScheduling` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Set when a PreFilter rejected the pod outright.
    pub pre_filter_msg: Option<String>,
    /// The rejecting status of each node that was evaluated.
    pub node_to_status: Vec<(String, Status)>,
    /// The PostFilter (preemption) outcome, when known.
    pub post_filter_msg: Option<String>,
    /// The PostFilter outcome clears the pod's nominated node (`status.nominatedNodeName` and
    /// the scheduler's nominator): upstream's NominatingInfo in ModeOverride with no node, as
    /// when preemption cannot help anywhere. Otherwise the nomination is left alone.
    pub clear_nomination: bool,
    /// The plugins that rejected the pod (upstream's UnschedulablePlugins): which cluster
    /// changes could make it fit.
    pub unschedulable_plugins: BTreeSet<&'static str>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(msg) = &self.pre_filter_msg {
            write!(f, " {msg}.")?;
        } else {
            let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, status) in &self.node_to_status {
                for r in status.reasons() {
                    *histogram.entry(r.as_ref()).or_insert(0) += 1;
                }
            }
            // Upstream sorts the rendered "<count> <reason>" strings, count included.
            let mut parts: Vec<String> = histogram.into_iter().map(|(reason, n)| format!("{n} {reason}")).collect();
            parts.sort();
            if !parts.is_empty() {
                write!(f, " {}.", parts.join(", "))?;
            }
        }
        if let Some(msg) = &self.post_filter_msg {
            // msg usually ends with '.', so upstream's messages end with "..": kept as is.
            write!(f, " {msg}.")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

impl FitError {
    /// What upstream's DefaultPreemption reports when it cannot help without trying victims:
    /// the pod opted out (its nomination is left alone), or every node failed for a reason
    /// eviction cannot fix (its nomination is cleared). None when preemption would have to
    /// be attempted (left to the caller).
    fn preemption_message(pod: &Pod, num_all_nodes: usize, statuses: &[(String, Status)]) -> Option<(String, bool)> {
        if pod::spec(pod).preemption_policy.as_deref() == Some("Never") {
            return Some(("preemption: not eligible due to preemptionPolicy=Never.".into(), false));
        }
        let all_unresolvable = statuses.iter().all(|(_, s)| matches!(s, Status::UnschedulableAndUnresolvable(_)));
        if !all_unresolvable {
            return None;
        }
        let inner = FitError {
            num_all_nodes,
            pre_filter_msg: None,
            node_to_status: statuses
                .iter()
                .map(|(n, _)| (n.clone(), Status::unresolvable("Preemption is not helpful for scheduling")))
                .collect(),
            post_filter_msg: None,
            clear_nomination: false,
            unschedulable_plugins: BTreeSet::new(),
        };
        Some((format!("preemption: {inner}"), true))
    }
}

/// Runs `filters` on `node` until one rejects the pod.
fn run_filters(
    filters: &[&Arc<dyn FilterPlugin>],
    state: &CycleState,
    node: &NodeInfo,
) -> Option<(&'static str, Status)> {
    let pod = state.pod_info().pod();
    filters.iter().find_map(|p| {
        let s = p.filter(state, pod, node);
        s.is_rejection().then(|| (p.name(), s))
    })
}

/// Where a pod was placed and how much work it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// The plugin lists of one scheduler profile. Ties between equally scored nodes are broken by
/// a seeded pseudo-random reservoir choice (deterministic for a given seed and call sequence),
/// as upstream picks uniformly among the best.
pub struct Profile {
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    /// Percentage of nodes to evaluate once enough are feasible; 0 means upstream's adaptive
    /// default (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
    pub percentage_of_nodes_to_score: usize,
    next_start_node_index: AtomicUsize,
    rng: AtomicU64,
}

impl Default for Profile {
    /// Upstream's default plugins, in the default profile's order, with its score weights.
    fn default() -> Self {
        let node_unschedulable = Arc::new(NodeUnschedulable);
        let node_name = Arc::new(NodeName);
        let taint_toleration = Arc::new(TaintToleration);
        let node_affinity = Arc::new(NodeAffinity);
        let node_ports = Arc::new(NodePorts);
        let fit = Arc::new(NodeResourcesFit::default());
        let spread = Arc::new(PodTopologySpread);
        let inter_pod = Arc::new(InterPodAffinity::default());
        let balanced = Arc::new(NodeResourcesBalancedAllocation);
        let image = Arc::new(ImageLocality);
        Profile {
            pre_filter: vec![node_affinity.clone(), node_ports.clone(), spread.clone(), inter_pod.clone()],
            filter: vec![
                node_unschedulable,
                node_name,
                taint_toleration.clone(),
                node_affinity.clone(),
                node_ports,
                fit.clone(),
                spread.clone(),
                inter_pod.clone(),
            ],
            pre_score: vec![node_affinity.clone(), spread.clone(), inter_pod.clone(), balanced.clone(), image.clone()],
            score: vec![
                (taint_toleration, 3),
                (node_affinity, 2),
                (fit, 1),
                (spread, 2),
                (inter_pod, 2),
                (balanced, 1),
                (image, 1),
            ],
            percentage_of_nodes_to_score: 0,
            next_start_node_index: AtomicUsize::new(0),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }
}

impl Profile {
    /// The default plugins and VolumeBinding over these caches (upstream's default profile
    /// has it too; it needs the claim, volume and class informers).
    pub fn with_volumes(listers: super::plugins::VolumeListers) -> Self {
        let mut p = Profile::default();
        let vb = Arc::new(super::plugins::VolumeBinding { listers });
        p.pre_filter.push(vb.clone());
        p.filter.push(vb);
        p
    }

    /// Same plugins, with the tie-breaking sequence started from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        let p = Profile::default();
        p.rng.store(seed, Ordering::Relaxed);
        p
    }

    /// Upstream's numFeasibleNodesToFind.
    pub fn num_feasible_nodes_to_find(&self, num_all_nodes: usize) -> usize {
        if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return num_all_nodes;
        }
        let mut percentage = self.percentage_of_nodes_to_score;
        if percentage == 0 {
            percentage = 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
        }
        (num_all_nodes * percentage.min(100) / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Picks a node for `pod`, or explains why none fits.
    pub fn schedule_one(&self, pod: &Pod, snapshot: &ClusterSnapshot) -> Result<String, FitError> {
        let info = Arc::new(PodInfo::new(Arc::new(pod.clone())));
        self.schedule(info, snapshot).map(|r| r.node)
    }

    /// As `schedule_one` for an already parsed pod; the caller can then
    /// `snapshot.assume(pod, &result.node)` without parsing it again.
    pub fn schedule(&self, pod: Arc<PodInfo>, snapshot: &ClusterSnapshot) -> Result<ScheduleResult, FitError> {
        let all = snapshot.nodes();
        let pod_arc = pod.pod_arc().clone();
        let pod_obj: &Pod = &pod_arc;
        let fail = |pre_filter_msg: Option<String>,
                    statuses: Vec<(String, Status)>,
                    unschedulable_plugins: BTreeSet<&'static str>| {
            let post_filter =
                if all.is_empty() { None } else { FitError::preemption_message(pod_obj, all.len(), &statuses) };
            let (post_filter_msg, clear_nomination) = match post_filter {
                Some((msg, clear)) => (Some(msg), clear),
                // No node at all: whatever it was nominated to is gone (upstream's
                // clearNominatedNode on ErrNoNodesAvailable).
                None if all.is_empty() => (None, true),
                None => (None, false),
            };
            FitError {
                num_all_nodes: all.len(),
                pre_filter_msg,
                node_to_status: statuses,
                post_filter_msg,
                clear_nomination,
                unschedulable_plugins,
            }
        };
        if all.is_empty() {
            return Err(fail(None, Vec::new(), BTreeSet::new()));
        }
        let mut state = match self.pre_filter(pod, snapshot) {
            Ok(state) => state,
            Err((plugin, rejected)) => {
                // Every node fails for the same reason; upstream shows it once.
                let statuses = all.iter().map(|n| (n.name().to_string(), rejected.clone())).collect();
                return Err(fail(Some(rejected.message()), statuses, BTreeSet::from([plugin])));
            }
        };
        let filters = self.filters(&state);

        // A pod that preempted goes to the node it nominated if it fits there now (upstream's
        // evaluateNominatedNode), before any other node is looked at.
        let key = || (super::types::namespace_of(pod_obj).to_string(), pod_obj.name().to_string());
        let nominated = pod_obj
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
            .or_else(|| snapshot.has_nominations().then(|| snapshot.nominated_node(&key())).flatten());
        if let Some(node) = nominated.and_then(|n| snapshot.node(n)) {
            if self.filter_node(&filters, &state, node, snapshot).is_none() {
                return Ok(ScheduleResult { node: node.name().to_string(), evaluated_nodes: 1, feasible_nodes: 1 });
            }
        }

        // Rotate the starting node so that stopping early does not always favour the same ones.
        let n = all.len();
        let want = self.num_feasible_nodes_to_find(n);
        let start = self.next_start_node_index.load(Ordering::Relaxed) % n;
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
        let mut statuses: Vec<(String, Status)> = Vec::new();
        let mut rejecting = BTreeSet::new();
        for i in 0..n {
            let node = &all[(start + i) % n];
            match self.filter_node(&filters, &state, node, snapshot) {
                Some((plugin, s)) => {
                    rejecting.insert(plugin);
                    statuses.push((node.name().to_string(), s));
                }
                None => {
                    feasible.push(node);
                    if feasible.len() >= want {
                        break;
                    }
                }
            }
        }
        let evaluated = feasible.len() + statuses.len();
        self.next_start_node_index.store((start + evaluated) % n, Ordering::Relaxed);

        if feasible.is_empty() {
            return Err(fail(None, statuses, rejecting));
        }
        let result = |node: &NodeInfo| ScheduleResult {
            node: node.name().to_string(),
            evaluated_nodes: evaluated,
            feasible_nodes: feasible.len(),
        };
        if feasible.len() == 1 {
            return Ok(result(feasible[0]));
        }

        for p in &self.pre_score {
            if p.pre_score(&mut state, pod_obj, &feasible, snapshot).is_skip() {
                state.skip_score(p.name());
            }
        }
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = vec![0i64; feasible.len()];
        for (p, weight) in &self.score {
            if state.is_score_skipped(p.name()) {
                continue;
            }
            for (s, node) in scores.iter_mut().zip(&feasible) {
                *s = p.score(&state, pod_obj, node);
            }
            p.normalize(&state, &mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        Ok(result(feasible[self.select_host(&totals)]))
    }

    /// Runs the PreFilter plugins: the cycle state their Filters read, or the plugin that
    /// rejected the pod outright.
    pub fn pre_filter(
        &self,
        pod: Arc<PodInfo>,
        snapshot: &ClusterSnapshot,
    ) -> Result<CycleState, (&'static str, Status)> {
        let pod_arc = pod.pod_arc().clone();
        let mut state = CycleState::from_pod_info(pod);
        for p in &self.pre_filter {
            match p.pre_filter(&mut state, &pod_arc, snapshot) {
                Status::Ok => {}
                Status::Skip => state.skip_filter(p.name()),
                rejected => return Err((p.name(), rejected)),
            }
        }
        Ok(state)
    }

    /// The Filter plugins that run in this cycle (those whose PreFilter did not skip them).
    pub fn filters(&self, state: &CycleState) -> Vec<&Arc<dyn FilterPlugin>> {
        self.filter.iter().filter(|p| !state.is_filter_skipped(p.name())).collect()
    }

    /// Upstream's RunPreFilterExtensionAddPod: `pod` now counts on `node` for the PreFilter
    /// state of every plugin that did not skip this cycle.
    pub fn add_pod_to_state(&self, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &ClusterSnapshot) {
        for p in &self.pre_filter {
            if !state.is_filter_skipped(p.name()) {
                p.add_pod(state, pod, node, snapshot);
            }
        }
    }

    /// Upstream's RunPreFilterExtensionRemovePod.
    pub fn remove_pod_from_state(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snapshot: &ClusterSnapshot,
    ) {
        for p in &self.pre_filter {
            if !state.is_filter_skipped(p.name()) {
                p.remove_pod(state, pod, node, snapshot);
            }
        }
    }

    /// Runs `filters` on `node` until one rejects the pod (upstream's
    /// RunFilterPluginsWithNominatedPods). Pods nominated to the node with at least the pod's
    /// priority count as placed there, in the node and in the PreFilter state (a copy), so the
    /// room made by preemption goes to its preemptor; if the pod fits with them, it must fit
    /// without them too, as they may yet go elsewhere (an affinity they satisfy is no reason
    /// to come).
    pub fn filter_node(
        &self,
        filters: &[&Arc<dyn FilterPlugin>],
        state: &CycleState,
        node: &NodeInfo,
        snapshot: &ClusterSnapshot,
    ) -> Option<(&'static str, Status)> {
        if snapshot.has_nominations() {
            let me = state.pod_info();
            let mut held =
                snapshot.nominated_pods(node.name()).iter().filter(|p| p.priority >= me.priority && !p.same_pod(me));
            if let Some(first) = held.next() {
                let (mut with, mut with_state) = (node.clone(), state.clone());
                for p in std::iter::once(first).chain(held) {
                    with.add_pod_info(p.clone());
                    self.add_pod_to_state(&mut with_state, p, &with, snapshot);
                }
                if let Some(rejected) = run_filters(filters, &with_state, &with) {
                    return Some(rejected);
                }
            }
        }
        run_filters(filters, state, node)
    }

    /// Index of a highest total, uniformly among ties via reservoir sampling on a seeded
    /// SplitMix64 sequence.
    fn select_host(&self, totals: &[i64]) -> usize {
        let mut best = 0;
        let mut ties = 0u64;
        for (i, &t) in totals.iter().enumerate() {
            if t > totals[best] {
                best = i;
                ties = 1;
            } else if t == totals[best] {
                ties += 1;
                if ties > 1 && self.next_random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        best
    }

    pub(crate) fn next_random(&self) -> u64 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use crate::framework::with_default_spreading;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::time::Instant;

    fn place(profile: &Profile, snap: &mut ClusterSnapshot, p: &Pod) -> Result<String, FitError> {
        let node = profile.schedule_one(p, snap)?;
        assert!(snap.add_pod(on(p.clone(), &node)));
        Ok(node)
    }

    #[test]
    fn anti_affinity_spreads_one_per_node() {
        let profile = Profile::default();
        let mut snap = snapshot((1..=3).map(|i| node(&format!("n{i}"), "4", "8Gi")).collect(), &[]);
        let replica = |i: usize| {
            let p = label(pod(&format!("web-{i}"), Some("100m"), Some("128Mi")), "app", "web");
            set(
                p,
                "/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                json!([{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]),
            )
        };
        let mut placed: Vec<String> = (0..3).map(|i| place(&profile, &mut snap, &replica(i)).unwrap()).collect();
        placed.sort();
        assert_eq!(placed, vec!["n1", "n2", "n3"]);
        let err = place(&profile, &mut snap, &replica(3)).unwrap_err();
        assert_eq!(err.to_string(), "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
    }

    #[test]
    fn taints_and_tolerations_steer_pods() {
        let profile = Profile::default();
        let gpu = set(
            node("gpu", "8", "32Gi"),
            "/spec/taints",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        );
        let mut snap = snapshot(vec![gpu, node("cpu", "1", "1Gi")], &[]);
        assert_eq!(place(&profile, &mut snap, &pod("a", Some("100m"), None)).unwrap(), "cpu");
        let tolerant = set(
            pod("b", Some("2"), None),
            "/spec/tolerations",
            json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
        );
        assert_eq!(place(&profile, &mut snap, &tolerant).unwrap(), "gpu");
        let err = place(&profile, &mut snap, &pod("c", Some("2"), None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn insufficient_resources_exact_message() {
        let profile = Profile::default();
        let mut nodes: Vec<Node> = (1..=3).map(|i| node(&format!("n{i}"), "1", "2Gi")).collect();
        for i in 4..=5 {
            nodes.push(set(
                node(&format!("n{i}"), "8", "8Gi"),
                "/spec/taints",
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ));
        }
        let snap = snapshot(nodes, &[]);
        let err = profile.schedule_one(&pod("big", Some("2"), Some("1Gi")), &snap).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu. \
             preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.."
        );
        // Fits the allocatable but not what is left: preemption outcome is left to the caller.
        let busy: Vec<Pod> =
            (1..=2).map(|i| on(pod(&format!("x{i}"), Some("800m"), Some("1Gi")), &format!("n{i}"))).collect();
        let snap = snapshot(vec![node("n1", "1", "2Gi"), node("n2", "1", "2Gi")], &busy);
        let err = profile.schedule_one(&pod("p", Some("500m"), Some("1500Mi")), &snap).unwrap_err();
        assert_eq!(err.to_string(), "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.");
        let never = set(pod("p", Some("500m"), None), "/spec/preemptionPolicy", json!("Never"));
        assert_eq!(
            profile.schedule_one(&never, &snap).unwrap_err().to_string(),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
        );
    }

    #[test]
    fn fit_errors_name_the_plugins_that_rejected() {
        let gpu = set(
            node("gpu", "8", "32Gi"),
            "/spec/taints",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        );
        let snap = snapshot(vec![gpu, node("cpu", "1", "1Gi")], &[]);
        let err = Profile::default().schedule_one(&pod("big", Some("2"), None), &snap).unwrap_err();
        assert_eq!(err.unschedulable_plugins, BTreeSet::from(["NodeResourcesFit", "TaintToleration"]));
        let err = Profile::default().schedule_one(&pod("p", None, None), &ClusterSnapshot::default()).unwrap_err();
        assert!(err.unschedulable_plugins.is_empty());
    }

    #[test]
    fn no_nodes_message() {
        let err = Profile::default().schedule_one(&pod("p", None, None), &ClusterSnapshot::default()).unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn least_allocated_spreads_load() {
        let profile = Profile::default();
        let mut snap = snapshot(vec![node("a", "4", "8Gi"), node("b", "4", "8Gi")], &[]);
        let first = place(&profile, &mut snap, &pod("p1", Some("1"), Some("1Gi"))).unwrap();
        let second = place(&profile, &mut snap, &pod("p2", Some("1"), Some("1Gi"))).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn node_affinity_and_preferences_in_profile() {
        let profile = Profile::default();
        let mut snap = snapshot(vec![label(node("a", "4", "8Gi"), "disk", "ssd"), node("b", "4", "8Gi")], &[]);
        let p = set(
            pod("p", Some("100m"), None),
            "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution",
            json!([{"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]),
        );
        for i in 0..3 {
            let p = set(p.clone(), "/metadata/name", json!(format!("p{i}")));
            assert_eq!(place(&profile, &mut snap, &p).unwrap(), "a");
        }
        let q = set(pod("q", None, None), "/spec/nodeSelector", json!({"disk": "hdd"}));
        assert_eq!(
            profile.schedule_one(&q, &snap).unwrap_err().to_string(),
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn topology_spread_balances_zones() {
        let profile = Profile::default();
        let nodes = (0..4)
            .map(|i| label(node(&format!("n{i}"), "8", "16Gi"), "zone", if i < 3 { "z1" } else { "z2" }))
            .collect();
        let mut snap = snapshot(nodes, &[]);
        let mut per_zone = [0, 0];
        for i in 0..4 {
            let p = label(pod(&format!("w{i}"), Some("100m"), None), "app", "web");
            let p = set(
                p,
                "/spec/topologySpreadConstraints",
                json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "web"}}}]),
            );
            let n = place(&profile, &mut snap, &p).unwrap();
            per_zone[usize::from(n == "n3")] += 1;
        }
        assert_eq!(per_zone, [2, 2]);
    }

    #[test]
    fn feasible_node_search_stops_early_and_rotates() {
        let profile = Profile::default();
        assert_eq!(profile.num_feasible_nodes_to_find(50), 50);
        assert_eq!(profile.num_feasible_nodes_to_find(1000), 420);
        assert_eq!(profile.num_feasible_nodes_to_find(5000), 500);
        assert_eq!(profile.num_feasible_nodes_to_find(10000), 500);
        let snap = snapshot((0..1000).map(|i| node(&format!("n{i}"), "4", "8Gi")).collect(), &[]);
        let r = profile.schedule(info(&pod("p", None, None)), &snap).unwrap();
        assert_eq!((r.evaluated_nodes, r.feasible_nodes), (420, 420));
        assert_eq!(profile.next_start_node_index.load(Ordering::Relaxed), 420);
    }

    #[test]
    fn ties_are_deterministic_per_seed() {
        let snap = snapshot((0..10).map(|i| node(&format!("n{i}"), "4", "8Gi")).collect(), &[]);
        let run = |seed| {
            let profile = Profile::with_seed(seed);
            (0..5).map(|i| profile.schedule_one(&pod(&format!("p{i}"), None, None), &snap).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let picks: std::collections::HashSet<String> = run(7).into_iter().chain(run(8)).collect();
        assert!(picks.len() > 1, "ties should not always pick the same node");
    }

    /// Throughput at upstream's 5,000-node scale; run with `--nocapture` to see the rate.
    #[test]
    fn throughput_1000_pods_on_5000_nodes() {
        let nodes: Vec<NodeInfo> = (0..5000)
            .map(|i| {
                let n = label(
                    node(&format!("node-{i}"), "32", "128Gi"),
                    "topology.kubernetes.io/zone",
                    &format!("zone-{}", i % 3),
                );
                NodeInfo::new(n)
            })
            .collect();
        let pods: Vec<Arc<PodInfo>> = (0..1000)
            .map(|i| {
                let mut p =
                    label(pod(&format!("pod-{i}"), Some("250m"), Some("512Mi")), "app", &format!("app-{}", i % 10));
                if i % 10 == 0 {
                    // Some pods also carry soft zone spreading, as Deployments often do.
                    p = set(
                        p,
                        "/spec/topologySpreadConstraints",
                        json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": {"app": format!("app-{}", i % 10)}}}]),
                    );
                }
                if i % 20 == 5 {
                    // And some keep replicas apart, which scans every node's pods in PreFilter.
                    p = set(
                        p,
                        "/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                        json!([{"labelSelector": {"matchLabels": {"app": format!("app-{}", i % 10)}},
                                "topologyKey": "kubernetes.io/hostname"}]),
                    );
                }
                info(&p)
            })
            .collect();
        // Upstream's adaptive sampling (500 feasible nodes at this size), then every node.
        for percentage in [0, 100] {
            let mut snap = ClusterSnapshot::new(nodes.clone());
            let profile = Profile { percentage_of_nodes_to_score: percentage, ..Profile::default() };
            let started = Instant::now();
            for p in &pods {
                let r = profile.schedule(p.clone(), &snap).unwrap();
                assert!(snap.assume(p.clone(), &r.node));
            }
            let secs = started.elapsed().as_secs_f64();
            let placed: usize = snap.nodes().iter().map(|n| n.pods().len()).sum();
            assert_eq!(placed, 1000);
            println!(
                "percentageOfNodesToScore={percentage}: 1000 pods on 5000 nodes in {secs:.3}s = {:.0} pods/s",
                1000.0 / secs
            );
        }
    }

    /// Pods of one ReplicaSet, with upstream's default spreading, onto 5,000 nodes already
    /// holding 30,000 of its replicas: a cycle's cost must not grow with the pods placed. Run
    /// with `--release -- --nocapture` to see the rate.
    #[test]
    fn throughput_replicaset_pods_on_5000_nodes_holding_30000() {
        let nodes: Vec<Node> = (0..5000)
            .map(|i| {
                let n = node(&format!("node-{i}"), "32", "128Gi");
                label(n, "topology.kubernetes.io/zone", &format!("zone-{}", i % 3))
            })
            .collect();
        let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "big-5d8f", "uid": "rs-uid",
            "controller": true}]);
        let replica = |i: usize| {
            let p = pod(&format!("big-5d8f-{i}"), Some("100m"), Some("128Mi"));
            let p = label(label(p, "app", "big"), "pod-template-hash", "5d8f");
            (*with_default_spreading(&Arc::new(set(p, "/metadata/ownerReferences", owner.clone())))).clone()
        };
        let placed: Vec<Pod> = (0..30_000).map(|i| on(replica(i), &format!("node-{}", i % 5000))).collect();
        let mut snap = ClusterSnapshot::from_objects(nodes, placed);
        let incoming: Vec<Arc<PodInfo>> = (30_000..31_000).map(|i| info(&replica(i))).collect();
        let profile = Profile::default();
        let started = Instant::now();
        for p in &incoming {
            let r = profile.schedule(p.clone(), &snap).unwrap();
            assert!(snap.assume(p.clone(), &r.node));
        }
        let secs = started.elapsed().as_secs_f64();
        let most = snap.nodes().iter().map(|n| n.pods().len()).max().unwrap();
        assert_eq!(snap.nodes().iter().map(|n| n.pods().len()).sum::<usize>(), 31_000);
        // Spread softly: no node takes a second new replica while others have none.
        assert!(most <= 7, "a node holds {most} pods");
        println!("1000 ReplicaSet pods on 5000 nodes holding 30000 in {secs:.3}s = {:.0} pods/s", 1000.0 / secs);
    }
}
