//! DefaultPreemption, upstream's PostFilter plugin (`pkg/scheduler/framework/preemption`):
//! when a pod fits no node, find nodes where evicting pods of lower priority would make it
//! fit, keep as many of those pods as still leave it room (PodDisruptionBudgets' pods kept
//! first), and pick the node whose evictions hurt least. Pure: the scheduler deletes the
//! victims and nominates the node.
//!
//! Victims are found on the snapshot's node infos, never by scanning pods: a node costs a
//! copy of its info and a few Filter runs, and the search stops once enough candidates are
//! found (upstream's 10% of the nodes, at least 100).

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::{pod, ObjectExt};

use crate::framework::profile::{FitError, Profile};
use crate::framework::{ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

pub const NAME: &str = "DefaultPreemption";

/// Upstream's DefaultPreemptionArgs defaults.
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// The condition the scheduler puts on its victims, and its reason.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// A node where evicting `victims` makes room for the pod.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    /// Victims whose eviction goes past a PodDisruptionBudget.
    pub num_pdb_violations: usize,
}

/// A PodDisruptionBudget as preemption reads it.
#[derive(Debug, Clone)]
pub struct Budget {
    namespace: String,
    selector: LabelSelector,
    allowed: i32,
    /// Pods the eviction API already counted against the budget.
    disrupted: BTreeSet<String>,
}

impl Budget {
    /// None for a budget that selects nothing (no selector, an empty or a malformed one).
    pub fn new(pdb: &PodDisruptionBudget) -> Option<Budget> {
        let spec = pdb.spec.as_ref()?;
        let selector = LabelSelector::from_typed(spec.selector.as_ref()).ok()?;
        if selector.is_empty() || selector.matches_nothing() {
            return None;
        }
        let status = pdb.status.as_ref();
        Some(Budget {
            namespace: pdb.namespace().to_string(),
            selector,
            allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        })
    }
}

/// Whether `a` should outlive `b` (upstream's MoreImportantPod): higher priority, then the
/// one running longer. `Less` sorts the more important first.
fn importance(a: &PodInfo, b: &PodInfo) -> Ordering {
    let started = |p: &PodInfo| {
        let t = p.pod().status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        (t.is_none(), t)
    };
    b.priority.cmp(&a.priority).then_with(|| started(a).cmp(&started(b)))
}

/// Splits victims (in order) into those whose eviction would go past a budget and the rest,
/// counting each eviction against the budgets as upstream's filterPodsWithPDBViolation does.
fn split_by_budgets(pods: &[Arc<PodInfo>], budgets: &[Budget]) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violates = false;
        if !p.labels().is_empty() {
            for (b, left) in budgets.iter().zip(allowed.iter_mut()) {
                if b.namespace != p.namespace()
                    || !b.selector.matches_labels(p.labels())
                    || b.disrupted.contains(p.name())
                {
                    continue;
                }
                *left -= 1;
                violates |= *left < 0;
            }
        }
        if violates {
            violating.push(p.clone())
        } else {
            other.push(p.clone())
        }
    }
    (violating, other)
}

/// Terminating because the scheduler preempted it (its DisruptionTarget condition says so).
fn terminating_by_preemption(p: &Pod) -> bool {
    p.is_deleting()
        && pod::condition(p, DISRUPTION_TARGET)
            .is_some_and(|c| c.status == "True" && c.reason.as_deref() == Some(PREEMPTION_BY_SCHEDULER))
}

/// The node the pod preempted on before, from its status or the scheduler's memory.
fn nominated_node<'a>(pod: &'a PodInfo, snapshot: &'a ClusterSnapshot) -> Option<&'a str> {
    pod.pod()
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
        .or_else(|| snapshot.nominated_node(&(pod.namespace().to_string(), pod.name().to_string())))
}

/// Upstream's PodEligibleToPreemptOthers, past the preemptionPolicy check: a pod whose
/// victims are still terminating on its nominated node waits for them instead of preempting
/// more.
fn eligible(pod: &PodInfo, snapshot: &ClusterSnapshot, fit: &FitError) -> Result<(), &'static str> {
    let Some(nominated) = nominated_node(pod, snapshot) else { return Ok(()) };
    let unresolvable =
        fit.node_to_status.iter().any(|(n, s)| n == nominated && matches!(s, Status::UnschedulableAndUnresolvable(_)));
    if unresolvable {
        return Ok(());
    }
    let node = snapshot.node(nominated);
    if node.is_some_and(|n| n.pods().iter().any(|p| p.priority < pod.priority && terminating_by_preemption(p.pod()))) {
        return Err("not eligible due to a terminating pod on the nominated node.");
    }
    Ok(())
}

/// A copy of one node's info with pods taken off and put back, each change also made to the
/// cycle's PreFilter state (upstream's PreFilterExtensions), so that the Filters of
/// InterPodAffinity and PodTopologySpread judge the node as it would be without them.
struct DryRun<'a> {
    profile: &'a Profile,
    state: &'a mut CycleState,
    snapshot: &'a ClusterSnapshot,
    info: NodeInfo,
    /// Taken off and not put back.
    removed: Vec<Arc<PodInfo>>,
}

impl DryRun<'_> {
    fn remove(&mut self, p: &Arc<PodInfo>) {
        self.info.remove_pod_info(p);
        self.profile.remove_pod_from_state(self.state, p, &self.info, self.snapshot);
        self.removed.push(p.clone());
    }

    fn add_back(&mut self, p: &Arc<PodInfo>) {
        self.info.add_pod_info(p.clone());
        self.profile.add_pod_to_state(self.state, p, &self.info, self.snapshot);
        self.removed.retain(|r| !Arc::ptr_eq(r, p));
    }

    fn fits(&self, filters: &[&Arc<dyn FilterPlugin>]) -> Result<(), Status> {
        match self.profile.filter_node(filters, self.state, &self.info, self.snapshot) {
            Some((_, rejected)) => Err(rejected),
            None => Ok(()),
        }
    }
}

impl Drop for DryRun<'_> {
    /// Puts the state back as every other node must see it. Upstream copies the state per
    /// node instead; undoing the few changes made here costs far less than copying
    /// per-domain counts over thousands of nodes for every candidate.
    fn drop(&mut self) {
        for p in std::mem::take(&mut self.removed) {
            self.profile.add_pod_to_state(self.state, &p, &self.info, self.snapshot);
        }
    }
}

impl Profile {
    /// Upstream's SelectVictimsOnNode: remove every lower-priority pod (from a copy of the
    /// node and from the PreFilter state); if the pod then fits, add them back most important
    /// first (budget-protected ones before the others) while it still fits. The ones that
    /// could not come back are the victims. `state` is as it was when this returns.
    fn select_victims(
        &self,
        filters: &[&Arc<dyn FilterPlugin>],
        state: &mut CycleState,
        node: &NodeInfo,
        snapshot: &ClusterSnapshot,
        budgets: &[Budget],
    ) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
        let priority = state.pod_info().priority;
        let mut potential: Vec<Arc<PodInfo>> = node.pods().iter().filter(|p| p.priority < priority).cloned().collect();
        if potential.is_empty() {
            return Err(Status::unresolvable("No preemption victims found for incoming pod"));
        }
        let mut run = DryRun { profile: self, state, snapshot, info: node.clone(), removed: Vec::new() };
        for p in &potential {
            run.remove(p);
        }
        run.fits(filters)?;
        potential.sort_by(|a, b| importance(a, b));
        let (violating, other) = split_by_budgets(&potential, budgets);
        let mut victims = Vec::new();
        let mut reprieve = |p: &Arc<PodInfo>, run: &mut DryRun| {
            run.add_back(p);
            let fits = run.fits(filters).is_ok();
            if !fits {
                run.remove(p);
                victims.push(p.clone());
            }
            fits
        };
        let mut violations = 0;
        for p in &violating {
            if !reprieve(p, &mut run) {
                violations += 1;
            }
        }
        for p in &other {
            reprieve(p, &mut run);
        }
        if !violating.is_empty() && !other.is_empty() {
            victims.sort_by(|a, b| importance(a, b));
        }
        if victims.is_empty() {
            return Err(Status::unschedulable(format!("expected at least one victim pod on node {}", node.name())));
        }
        Ok((victims, violations))
    }
}

/// Upstream's pickOneNodeForPreemption: fewest budget violations, then the lowest highest
/// victim priority, the lowest sum of priorities, the fewest victims, and the node whose
/// most important victims started last; the first of what remains.
pub fn pick_one(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    if let Some(i) = candidates.iter().position(|c| c.victims.is_empty()) {
        return Some(candidates.swap_remove(i));
    }
    fn keep_best<K: Ord>(candidates: &mut Vec<Candidate>, key: impl Fn(&Candidate) -> K) {
        if let Some(best) = candidates.iter().map(&key).min() {
            candidates.retain(|c| key(c) == best);
        }
    }
    keep_best(&mut candidates, |c| c.num_pdb_violations);
    keep_best(&mut candidates, |c| c.victims[0].priority);
    // Shifted so that every term is positive, as upstream adds MaxInt32+1.
    keep_best(&mut candidates, |c| c.victims.iter().map(|v| i64::from(v.priority) + (1 << 31)).sum::<i64>());
    keep_best(&mut candidates, |c| c.victims.len());
    keep_best(&mut candidates, |c| {
        let top = c.victims[0].priority;
        let earliest = c
            .victims
            .iter()
            .filter(|v| v.priority == top)
            .filter_map(|v| v.pod().status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0))
            .min();
        Reverse(earliest)
    });
    candidates.into_iter().next()
}

/// Why preemption did not help a pod, and what that does to its nominated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhelpful {
    /// Upstream's message, prefixed with "preemption: ".
    pub message: String,
    /// No node can be made to fit the pod: its nomination is cleared (upstream's
    /// PostFilterResult with an empty nominated node). Otherwise, as when it is not eligible
    /// to preempt now, the nomination is left alone.
    pub clear_nomination: bool,
}

impl Unhelpful {
    fn keep(message: impl fmt::Display) -> Self {
        Unhelpful { message: format!("preemption: {message}"), clear_nomination: false }
    }

    fn clear(message: impl fmt::Display) -> Self {
        Unhelpful { message: format!("preemption: {message}"), clear_nomination: true }
    }
}

impl Profile {
    /// The PostFilter of a pod that fit no node (`fit`): the node to nominate and the pods
    /// to evict there, or why preemption cannot help. `budgets` are the cluster's
    /// PodDisruptionBudgets.
    pub fn preempt(
        &self,
        pod: &Arc<PodInfo>,
        snapshot: &ClusterSnapshot,
        fit: &FitError,
        budgets: &[Budget],
    ) -> Result<Candidate, Unhelpful> {
        eligible(pod, snapshot, fit).map_err(Unhelpful::keep)?;
        let unhelpful = |n: &str| (n.to_string(), Status::unresolvable("Preemption is not helpful for scheduling"));
        let mut statuses: Vec<(String, Status)> = Vec::new();
        let mut potential: Vec<&NodeInfo> = Vec::new();
        for (name, status) in &fit.node_to_status {
            match (status, snapshot.node(name)) {
                (Status::Unschedulable(_), Some(node)) => potential.push(node),
                _ => statuses.push(unhelpful(name)),
            }
        }
        // The cycle's PreFilter passed on this same snapshot: a rejection here is not expected,
        // and says nothing about other nodes, so the nomination is left alone.
        let mut state = self.pre_filter(pod.clone(), snapshot).map_err(|(_, s)| Unhelpful::keep(s.message()))?;
        let filters = self.filters(&state);
        let n = potential.len();
        let wanted = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(n);
        let offset = if n == 0 { 0 } else { (self.next_random() % n as u64) as usize };
        let (mut clean, mut violating) = (Vec::new(), Vec::new());
        for i in 0..n {
            let node = potential[(offset + i) % n];
            match self.select_victims(&filters, &mut state, node, snapshot, budgets) {
                Ok((victims, 0)) => {
                    clean.push(Candidate { node: node.name().to_string(), victims, num_pdb_violations: 0 })
                }
                Ok((victims, v)) => {
                    violating.push(Candidate { node: node.name().to_string(), victims, num_pdb_violations: v })
                }
                Err(s) => statuses.push((node.name().to_string(), s)),
            }
            if !clean.is_empty() && clean.len() + violating.len() >= wanted {
                break;
            }
        }
        clean.extend(violating);
        if clean.is_empty() {
            let inner = FitError {
                num_all_nodes: fit.num_all_nodes,
                pre_filter_msg: None,
                node_to_status: statuses,
                post_filter_msg: None,
                clear_nomination: false,
                unschedulable_plugins: BTreeSet::new(),
            };
            return Err(Unhelpful::clear(inner));
        }
        pick_one(clean).ok_or_else(|| Unhelpful::keep("no candidate node for preemption"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::json;

    fn prio(p: Pod, priority: i32) -> Pod {
        set(p, "/spec/priority", json!(priority))
    }

    fn started(p: Pod, at: &str) -> Pod {
        set(p, "/status/startTime", json!(at))
    }

    fn names(c: &Candidate) -> Vec<&str> {
        c.victims.iter().map(|v| v.name()).collect()
    }

    fn budget(selector: serde_json::Value, allowed: i32) -> Budget {
        let pdb: PodDisruptionBudget = typed(json!({"metadata": {"name": "b", "namespace": "default"},
            "spec": {"selector": selector}, "status": {"disruptionsAllowed": allowed, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0}}));
        Budget::new(&pdb).unwrap()
    }

    /// Schedules `p` and, as the scheduler does when it fits nowhere, asks preemption.
    fn preempt(snap: &ClusterSnapshot, p: &Pod, budgets: &[Budget]) -> Result<Candidate, String> {
        let profile = Profile::default();
        let fit = profile.schedule(info(p), snap).expect_err("does not fit");
        if let Some(msg) = fit.post_filter_msg {
            return Err(msg);
        }
        profile.preempt(&info(p), snap, &fit, budgets).map_err(|u| u.message)
    }

    #[test]
    fn fewest_and_least_important_victims_are_chosen() {
        // n1: one big low pod; n2: two small pods of lower priority still.
        let pods = vec![
            on(prio(pod("big", Some("3"), None), 10), "n1"),
            on(prio(pod("a", Some("1500m"), None), 5), "n2"),
            on(prio(pod("b", Some("1500m"), None), 5), "n2"),
        ];
        let snap = snapshot(vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi")], &pods);
        // Needs 2 cpu: n1 frees 3 with one victim of priority 10; n2 needs one of its two (5).
        let c = preempt(&snap, &prio(pod("high", Some("2"), None), 100), &[]).unwrap();
        assert_eq!(c.node, "n2");
        assert_eq!(c.victims.len(), 1, "the other pod is reprieved");
        // Equal priority never preempts.
        let err = preempt(&snap, &prio(pod("peer", Some("2"), None), 5), &[]).unwrap_err();
        assert_eq!(err, "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.");
        // Removing every lower-priority pod is not enough on n2: the filter says why.
        let pods = vec![
            on(prio(pod("big", Some("3"), None), 10), "n1"),
            on(prio(pod("a", Some("1500m"), None), 5), "n2"),
            on(prio(pod("c", Some("2500m"), None), 50), "n2"),
        ];
        let snap = snapshot(vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi")], &pods);
        let err = preempt(&snap, &prio(pod("m", Some("2"), None), 7), &[]).unwrap_err();
        assert_eq!(
            err,
            "preemption: 0/2 nodes are available: 1 Insufficient cpu, 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn the_longest_running_pod_is_kept() {
        let pods = vec![
            on(started(prio(pod("old", Some("1"), None), 1), "2024-01-01T00:00:00Z"), "n1"),
            on(started(prio(pod("new", Some("1"), None), 1), "2024-06-01T00:00:00Z"), "n1"),
        ];
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &pods);
        let c = preempt(&snap, &prio(pod("high", Some("1"), None), 2), &[]).unwrap();
        assert_eq!(names(&c), vec!["new"]);
        // Lower priority goes before a longer run.
        let pods = vec![
            on(started(prio(pod("old", Some("1"), None), 0), "2024-01-01T00:00:00Z"), "n1"),
            on(started(prio(pod("new", Some("1"), None), 1), "2024-06-01T00:00:00Z"), "n1"),
        ];
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &pods);
        assert_eq!(names(&preempt(&snap, &prio(pod("high", Some("1"), None), 2), &[]).unwrap()), vec!["old"]);
    }

    #[test]
    fn budgets_steer_preemption_to_other_nodes() {
        let guarded = |n: &str, node: &str| on(label(prio(pod(n, Some("2"), None), 1), "app", "db"), node);
        let pods = vec![guarded("db-0", "n1"), on(prio(pod("web-0", Some("2"), None), 1), "n2")];
        let snap = snapshot(vec![node("n1", "2", "8Gi"), node("n2", "2", "8Gi")], &pods);
        let high = prio(pod("high", Some("2"), None), 10);
        let full = budget(json!({"matchLabels": {"app": "db"}}), 0);
        let c = preempt(&snap, &high, std::slice::from_ref(&full)).unwrap();
        assert_eq!((c.node.as_str(), c.num_pdb_violations), ("n2", 0));
        // Where every node is guarded, the budget yields (upstream: "where possible").
        let pods = vec![guarded("db-0", "n1"), guarded("db-1", "n2")];
        let snap = snapshot(vec![node("n1", "2", "8Gi"), node("n2", "2", "8Gi")], &pods);
        let c = preempt(&snap, &high, &[full]).unwrap();
        assert_eq!(c.num_pdb_violations, 1);
        // A budget that allows one disruption covers one victim only.
        let (violating, other) = split_by_budgets(
            &[info(&label(pod("x", None, None), "app", "db")), info(&label(pod("y", None, None), "app", "db"))],
            &[budget(json!({"matchLabels": {"app": "db"}}), 1)],
        );
        assert_eq!((violating.len(), other.len()), (1, 1));
        assert_eq!(violating[0].name(), "y");
    }

    #[test]
    fn nominated_room_is_kept_for_its_preemptor() {
        let snap0 = snapshot(vec![node("n1", "2", "8Gi")], &[on(prio(pod("low", Some("2"), None), 0), "n1")]);
        let high = prio(pod("high", Some("2"), None), 100);
        let c = preempt(&snap0, &high, &[]).unwrap();
        assert_eq!((c.node.as_str(), names(&c)), ("n1", vec!["low"]));
        // The victim is gone; the preemptor holds the room against lower priorities.
        let mut snap = snapshot(vec![node("n1", "2", "8Gi")], &[]);
        snap.nominate(info(&high), "n1");
        let profile = Profile::default();
        let err = profile.schedule_one(&prio(pod("mid", Some("1"), None), 50), &snap).unwrap_err();
        assert_eq!(err.to_string(), "0/1 nodes are available: 1 Insufficient cpu.");
        assert_eq!(profile.schedule_one(&prio(pod("top", Some("1"), None), 1000), &snap).unwrap(), "n1");
        assert_eq!(profile.schedule_one(&high, &snap).unwrap(), "n1");
        // Placing it ends the nomination.
        assert!(snap.add_pod(on(high.clone(), "n1")));
        assert!(!snap.has_nominations());
    }

    fn zone_node(name: &str, zone: &str) -> k8s_openapi::api::core::v1::Node {
        label(node(name, "4", "8Gi"), "zone", zone)
    }

    fn required(p: Pod, kind: &str, app: &str, key: &str) -> Pod {
        set(
            p,
            &format!("/spec/affinity/{kind}/requiredDuringSchedulingIgnoredDuringExecution"),
            json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]),
        )
    }

    /// After preemption: the victims gone, the preemptor nominated, it is placed there.
    fn placed_after(snap: &mut ClusterSnapshot, preemptor: &Pod, c: &Candidate) -> String {
        for v in &c.victims {
            assert!(snap.remove_pod(v.pod()));
        }
        snap.nominate(info(preemptor), &c.node);
        Profile::default().schedule_one(preemptor, snap).expect("the preemptor fits once its victims are gone")
    }

    #[test]
    fn anti_affinity_to_lower_priority_pods_is_resolved_by_evicting_them() {
        // The only node has room, but holds a pod the preemptor must not share it with.
        let pods = vec![
            on(label(prio(pod("db", Some("1"), None), 1), "app", "db"), "n1"),
            on(label(prio(pod("web", Some("1"), None), 1), "app", "web"), "n1"),
        ];
        let mut snap = snapshot(vec![node("n1", "4", "8Gi")], &pods);
        let loner =
            required(prio(pod("loner", Some("1"), None), 10), "podAntiAffinity", "db", "kubernetes.io/hostname");
        let c = preempt(&snap, &loner, &[]).unwrap();
        // Only the pod the rule is about goes: the other comes back as the preemptor fits with it.
        assert_eq!((c.node.as_str(), names(&c)), ("n1", vec!["db"]));
        assert_eq!(placed_after(&mut snap, &loner, &c), "n1");

        // The other way round: a lower-priority pod's anti-affinity keeps the preemptor out.
        let guard =
            required(label(prio(pod("guard", Some("1"), None), 1), "app", "guard"), "podAntiAffinity", "web", "zone");
        let pods = vec![on(guard, "a1"), on(prio(pod("other", Some("1"), None), 1), "a2")];
        let mut snap = snapshot(vec![zone_node("a1", "z1"), zone_node("a2", "z1")], &pods);
        let web = label(prio(pod("web", Some("1"), None), 10), "app", "web");
        let err = Profile::default().schedule_one(&web, &snap).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules."
        );
        let c = preempt(&snap, &web, &[]).unwrap();
        assert_eq!(names(&c), vec!["guard"]);
        placed_after(&mut snap, &web, &c);

        // Evicting cannot help against pods of the same priority.
        let pods = vec![on(label(prio(pod("db", Some("1"), None), 10), "app", "db"), "n1")];
        let snap = snapshot(vec![node("n1", "4", "8Gi")], &pods);
        assert_eq!(
            preempt(&snap, &loner, &[]).unwrap_err(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn topology_spread_counts_the_domain_without_its_victims() {
        // z1 holds two replicas and z2 none, but z2's node is cordoned: a third in z1 is a
        // skew of 3 against maxSkew 2, until one of z1's lower-priority replicas goes.
        let web = |name: &str, priority: i32| label(prio(pod(name, Some("1"), None), priority), "app", "web");
        let cordoned = set(zone_node("b", "z2"), "/spec/unschedulable", json!(true));
        let pods = vec![on(web("w-kept", 2), "a"), on(web("w-low", 1), "a")];
        let mut snap = snapshot(vec![zone_node("a", "z1"), cordoned], &pods);
        let spread = json!([{"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let incoming = set(web("w-new", 10), "/spec/topologySpreadConstraints", spread);
        let err = Profile::default().schedule_one(&incoming, &snap).unwrap_err();
        assert!(err.to_string().contains("1 node(s) didn't match pod topology spread constraints"), "{err}");
        let c = preempt(&snap, &incoming, &[]).unwrap();
        // The more important replica is reprieved: with it back, the skew is 2.
        assert_eq!((c.node.as_str(), names(&c)), ("a", vec!["w-low"]));
        assert_eq!(placed_after(&mut snap, &incoming, &c), "a");
    }

    #[test]
    fn the_cycle_state_is_left_as_found_for_the_next_node() {
        // Every node needs the same eviction; each must be judged against the cluster as it is.
        let pods: Vec<Pod> = (0..4)
            .map(|i| on(label(prio(pod(&format!("db-{i}"), None, None), 1), "app", "db"), &format!("n{i}")))
            .collect();
        let snap = snapshot((0..4).map(|i| zone_node(&format!("n{i}"), "z1")).collect(), &pods);
        // Anti-affinity by zone: every db pod of the zone must go, wherever the pod lands.
        let loner = required(prio(pod("loner", None, None), 10), "podAntiAffinity", "db", "zone");
        let err = preempt(&snap, &loner, &[]).unwrap_err();
        assert_eq!(err, "preemption: 0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules.");
        let profile = Profile::default();
        let fit = profile.schedule(info(&loner), &snap).unwrap_err();
        assert!(profile.preempt(&info(&loner), &snap, &fit, &[]).unwrap_err().clear_nomination);
        // By hostname, each node is a candidate on its own.
        let loner = required(prio(pod("loner", None, None), 10), "podAntiAffinity", "db", "kubernetes.io/hostname");
        let mut state = profile.pre_filter(info(&loner), &snap).ok().unwrap();
        let filters = profile.filters(&state);
        for n in snap.nodes() {
            let (victims, _) = profile.select_victims(&filters, &mut state, n, &snap, &[]).unwrap();
            assert_eq!(victims.len(), 1, "on {}", n.name());
        }
    }

    #[test]
    fn nominated_pods_count_in_affinity_but_do_not_satisfy_it() {
        let db = label(prio(pod("db", None, None), 100), "app", "db");
        let mut snap = snapshot(vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi")], &[]);
        snap.nominate(info(&db), "n1");
        let profile = Profile::default();
        // A pod kept away from db does not take the node db waits for.
        let apart = required(prio(pod("apart", None, None), 50), "podAntiAffinity", "db", "kubernetes.io/hostname");
        let state = profile.pre_filter(info(&apart), &snap).ok().unwrap();
        let filters = profile.filters(&state);
        let on_n1 = profile.filter_node(&filters, &state, snap.node("n1").unwrap(), &snap);
        assert_eq!(
            on_n1,
            Some(("InterPodAffinity", Status::unschedulable("node(s) didn't match pod anti-affinity rules")))
        );
        assert_eq!(profile.filter_node(&filters, &state, snap.node("n2").unwrap(), &snap), None);
        assert_eq!(profile.schedule_one(&apart, &snap).unwrap(), "n2");
        // A pod that wants db's company does not go where db is only expected.
        let near = required(prio(pod("near", None, None), 50), "podAffinity", "db", "kubernetes.io/hostname");
        assert_eq!(
            profile.schedule_one(&near, &snap).unwrap_err().to_string(),
            "0/2 nodes are available: 2 node(s) didn't match pod affinity rules. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
        );
    }

    /// A low-priority pod on n1 that an earlier preemption is deleting.
    fn terminating_victim() -> Pod {
        let victim = on(prio(pod("low", Some("2"), None), 0), "n1");
        let victim = set(victim, "/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
        set(
            victim,
            "/status/conditions",
            json!([{"type": DISRUPTION_TARGET, "status": "True", "reason": PREEMPTION_BY_SCHEDULER}]),
        )
    }

    #[test]
    fn nominations_are_cleared_only_when_preemption_cannot_help() {
        let high = set(prio(pod("high", Some("2"), None), 100), "/status/nominatedNodeName", json!("n1"));
        let profile = Profile::default();
        // Its node was cordoned: nothing can be done anywhere, the nomination goes.
        let snap = snapshot(vec![set(node("n1", "2", "8Gi"), "/spec/unschedulable", json!(true))], &[]);
        let fit = profile.schedule(info(&high), &snap).unwrap_err();
        assert!(fit.clear_nomination);
        // Only pods of its own priority are in the way.
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &[on(prio(pod("peer", Some("2"), None), 100), "n1")]);
        let fit = profile.schedule(info(&high), &snap).unwrap_err();
        assert!(!fit.clear_nomination, "left to preemption");
        let unhelpful = profile.preempt(&info(&high), &snap, &fit, &[]).unwrap_err();
        assert!(unhelpful.clear_nomination);
        // Its victims are still terminating there: it waits, nominated.
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &[terminating_victim()]);
        let fit = profile.schedule(info(&high), &snap).unwrap_err();
        assert!(!profile.preempt(&info(&high), &snap, &fit, &[]).unwrap_err().clear_nomination);
        // Opted out: nothing is decided about its nomination.
        let never = set(high.clone(), "/spec/preemptionPolicy", json!("Never"));
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &[on(prio(pod("low", Some("2"), None), 0), "n1")]);
        assert!(!profile.schedule(info(&never), &snap).unwrap_err().clear_nomination);
        // No node at all.
        let fit = profile.schedule(info(&high), &ClusterSnapshot::default()).unwrap_err();
        assert!(fit.clear_nomination);
    }

    #[test]
    fn victims_terminating_on_the_nominated_node_are_waited_for() {
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &[terminating_victim()]);
        let high = set(prio(pod("high", Some("2"), None), 100), "/status/nominatedNodeName", json!("n1"));
        assert_eq!(
            preempt(&snap, &high, &[]).unwrap_err(),
            "preemption: not eligible due to a terminating pod on the nominated node."
        );
        let never = set(prio(pod("never", Some("2"), None), 100), "/spec/preemptionPolicy", json!("Never"));
        assert_eq!(preempt(&snap, &never, &[]).unwrap_err(), "preemption: not eligible due to preemptionPolicy=Never.");
    }

    /// Preemption at upstream's 5,000-node scale, every node full of lower-priority pods: the
    /// search stops at 500 candidates. Run with `--nocapture` to see the time it takes.
    #[test]
    fn preemption_on_5000_full_nodes() {
        let nodes: Vec<_> = (0..5000).map(|i| node(&format!("node-{i}"), "4", "16Gi")).collect();
        let pods: Vec<Pod> = (0..20_000)
            .map(|i| on(prio(pod(&format!("low-{i}"), Some("1"), Some("1Gi")), i % 3), &format!("node-{}", i % 5000)))
            .collect();
        let snap = ClusterSnapshot::from_objects(nodes, pods);
        let high = prio(pod("high", Some("2"), Some("1Gi")), 1000);
        let profile = Profile::default();
        let fit = profile.schedule(info(&high), &snap).expect_err("every node is full");
        assert!(fit.post_filter_msg.is_none());
        let started = std::time::Instant::now();
        let c = profile.preempt(&info(&high), &snap, &fit, &[]).unwrap();
        let took = started.elapsed();
        // Two pods of priority 0 on some node (i % 3 == 0 for two of its four pods) is the best.
        assert_eq!(c.victims.len(), 2);
        assert!(c.victims.iter().all(|v| v.priority == 0), "{:?}", names(&c));
        println!("preemption over 5000 full nodes (20000 pods) in {:.1} ms", took.as_secs_f64() * 1000.0);
    }

    #[test]
    fn pick_one_follows_upstream_order() {
        let v = |name: &str, priority: i32| info(&prio(pod(name, None, None), priority));
        let c = |node: &str, victims: Vec<Arc<PodInfo>>, violations| Candidate {
            node: node.into(),
            victims,
            num_pdb_violations: violations,
        };
        let picked = |cs: Vec<Candidate>| pick_one(cs).unwrap().node;
        assert_eq!(picked(vec![c("a", vec![v("x", 1)], 1), c("b", vec![v("y", 9)], 0)]), "b");
        assert_eq!(picked(vec![c("a", vec![v("x", 5)], 0), c("b", vec![v("y", 3), v("z", 3)], 0)]), "b");
        assert_eq!(picked(vec![c("a", vec![v("x", 3), v("w", 3)], 0), c("b", vec![v("y", 3), v("z", 1)], 0)]), "b");
        // Every victim adds to the shifted sum: fewer victims win over lower priorities.
        assert_eq!(
            picked(vec![c("a", vec![v("x", 3), v("w", 1)], 0), c("b", vec![v("y", 3), v("z", 0), v("q", 0)], 0)]),
            "a"
        );
        assert_eq!(picked(vec![c("a", vec![v("x", 3), v("w", 0)], 0), c("b", vec![v("y", 3), v("z", 0)], 0)]), "a");
    }
}
