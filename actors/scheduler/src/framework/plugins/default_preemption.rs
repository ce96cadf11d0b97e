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
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::{pod, ObjectExt};

use crate::framework::profile::{filter_node, FitError, Profile};
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

/// Upstream's SelectVictimsOnNode: remove every lower-priority pod; if the pod then fits, add
/// them back most important first (budget-protected ones before the others) while it still
/// fits. The ones that could not come back are the victims.
fn select_victims(
    filters: &[&Arc<dyn FilterPlugin>],
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    snapshot: &ClusterSnapshot,
    budgets: &[Budget],
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let mut potential: Vec<Arc<PodInfo>> = node.pods().iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(Status::unresolvable("No preemption victims found for incoming pod"));
    }
    let mut info = node.clone();
    for p in &potential {
        info.remove_pod_info(p);
    }
    if let Some((_, rejected)) = filter_node(filters, state, pod.pod(), &info, snapshot) {
        return Err(rejected);
    }
    potential.sort_by(|a, b| importance(a, b));
    let (violating, other) = split_by_budgets(&potential, budgets);
    let mut victims = Vec::new();
    let mut reprieve = |p: &Arc<PodInfo>, info: &mut NodeInfo| {
        info.add_pod_info(p.clone());
        let fits = filter_node(filters, state, pod.pod(), info, snapshot).is_none();
        if !fits {
            info.remove_pod_info(p);
            victims.push(p.clone());
        }
        fits
    };
    let mut violations = 0;
    for p in &violating {
        if !reprieve(p, &mut info) {
            violations += 1;
        }
    }
    for p in &other {
        reprieve(p, &mut info);
    }
    if !violating.is_empty() && !other.is_empty() {
        victims.sort_by(|a, b| importance(a, b));
    }
    if victims.is_empty() {
        return Err(Status::unschedulable(format!("expected at least one victim pod on node {}", node.name())));
    }
    Ok((victims, violations))
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

impl Profile {
    /// The PostFilter of a pod that fit no node (`fit`): the node to nominate and the pods
    /// to evict there, or upstream's message of why preemption cannot help (already prefixed
    /// with "preemption: "). `budgets` are the cluster's PodDisruptionBudgets.
    pub fn preempt(
        &self,
        pod: &Arc<PodInfo>,
        snapshot: &ClusterSnapshot,
        fit: &FitError,
        budgets: &[Budget],
    ) -> Result<Candidate, String> {
        eligible(pod, snapshot, fit).map_err(|m| format!("preemption: {m}"))?;
        let unhelpful = |n: &str| (n.to_string(), Status::unresolvable("Preemption is not helpful for scheduling"));
        let mut statuses: Vec<(String, Status)> = Vec::new();
        let mut potential: Vec<&NodeInfo> = Vec::new();
        for (name, status) in &fit.node_to_status {
            match (status, snapshot.node(name)) {
                (Status::Unschedulable(_), Some(node)) => potential.push(node),
                _ => statuses.push(unhelpful(name)),
            }
        }
        let state = self.pre_filter(pod.clone(), snapshot).map_err(|(_, s)| format!("preemption: {}", s.message()))?;
        let filters = self.filters(&state);
        let n = potential.len();
        let wanted = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(n);
        let offset = if n == 0 { 0 } else { (self.next_random() % n as u64) as usize };
        let (mut clean, mut violating) = (Vec::new(), Vec::new());
        for i in 0..n {
            let node = potential[(offset + i) % n];
            match select_victims(&filters, &state, pod, node, snapshot, budgets) {
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
                unschedulable_plugins: BTreeSet::new(),
            };
            return Err(format!("preemption: {inner}"));
        }
        pick_one(clean).ok_or_else(|| "preemption: no candidate node for preemption".to_string())
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
        profile.preempt(&info(p), snap, &fit, budgets)
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

    #[test]
    fn victims_terminating_on_the_nominated_node_are_waited_for() {
        let mut victim = on(prio(pod("low", Some("2"), None), 0), "n1");
        victim = set(victim, "/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
        victim = set(
            victim,
            "/status/conditions",
            json!([{"type": DISRUPTION_TARGET, "status": "True", "reason": PREEMPTION_BY_SCHEDULER}]),
        );
        let snap = snapshot(vec![node("n1", "2", "8Gi")], &[victim]);
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
