//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per node that the pod
//! template fits (its node selector and required node affinity, and every NoSchedule and
//! NoExecute taint tolerated, with the tolerations upstream adds to daemon pods), on nodes
//! that join later too; pods on nodes that no longer fit go. Pods reach their node through the
//! scheduler, pinned by a `metadata.name` node affinity term, as upstream's do.
//!
//! Template changes roll out by the update strategy: RollingUpdate replaces old pods while at
//! most maxUnavailable nodes lack an available pod (or, with maxSurge, starts the new pod
//! beside the old one and deletes the old once the new is available); OnDelete waits for the
//! user to delete them. The template history is kept as ControllerRevisions (see
//! [`crate::history`]).

use crate::adoption::{self, selector_of, selects};
use crate::expectations::Expectations;
use crate::history::{self, REVISION_HASH};
use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubus_apimachinery::meta::controller_ref;
use kubus_apimachinery::selector::node::RequiredNodeAffinity;
use kubus_apimachinery::taints::tolerations_tolerate;
use kubus_apimachinery::{pod, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Change, Client, DeleteParams, Informer, InformerFactory, Recorder};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Upstream's `--concurrent-daemonset-syncs` default.
pub const WORKERS: usize = 2;
const COALESCE: Duration = Duration::from_millis(100);
/// Most pods created or deleted in one sync.
const BURST: usize = 500;

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let daemonsets = factory.get::<DaemonSet>();
    let (pods, nodes, revisions) = (factory.get::<Pod>(), factory.get::<Node>(), factory.get::<ControllerRevision>());
    adoption::index_orphans(&pods);
    let expectations = Arc::new(Expectations::default());
    let on_pod = {
        let (daemonsets, expectations) = (daemonsets.clone(), expectations.clone());
        move |change: &Change<Pod>| pod_change(&daemonsets, &expectations, change)
    };
    // Only what decides where daemon pods belong: a node's arrival or departure, its labels,
    // taints or name; not the status heartbeats of every node.
    let on_node = {
        let daemonsets = daemonsets.clone();
        move |change: &Change<Node>| {
            let moved = match change {
                Change::Applied { old: Some(old), new } => {
                    old.labels() != new.labels()
                        || old.spec.as_ref().map(|s| &s.taints) != new.spec.as_ref().map(|s| &s.taints)
                }
                _ => true,
            };
            if moved {
                daemonsets.keys()
            } else {
                Vec::new()
            }
        }
    };
    let ctrl = Controller::new("daemonset", daemonsets.clone())
        .watches_changes(pods.clone(), on_pod)
        .watches_changes(nodes.clone(), on_node)
        .owns(revisions.clone())
        .coalesce(COALESCE)
        .workers(workers);
    let events = Recorder::new(client.clone(), "daemonset-controller");
    let failures = Default::default();
    ctrl.run(Arc::new(DaemonSetsController {
        client,
        events,
        daemonsets,
        pods,
        nodes,
        revisions,
        expectations,
        failures,
    }))
}

fn pod_change(daemonsets: &Informer<DaemonSet>, expectations: &Expectations, change: &Change<Pod>) -> Vec<ObjectKey> {
    adoption::observe_child(daemonsets, expectations, change, |d: &DaemonSet| {
        selector_of(d.spec.as_ref().map(|s| &s.selector))
    })
}

struct DaemonSetsController {
    client: Client,
    events: Recorder,
    daemonsets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    expectations: Arc<Expectations>,
    /// Failed pods replaced per (DaemonSet uid, node): how many in a row and when the next
    /// may be (upstream's failedPodsBackoff, 1 s doubling to 15 min), so a pod the node keeps
    /// failing is not made and deleted in a tight loop.
    failures: std::sync::Mutex<HashMap<(String, String), (u32, Instant)>>,
}

const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(900);

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// The tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`), so
/// agents keep running on nodes that are not ready, unreachable, under pressure or cordoned.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        if !list.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            list.push(t);
        }
    }
}

/// Whether a daemon pod of `spec` should run on the node (upstream's `NodeShouldRunDaemonPod`),
/// and whether one already there may stay: it fits the node's labels, and every NoSchedule
/// taint (to start) and NoExecute taint (to start or stay) is tolerated.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if !RequiredNodeAffinity::from_spec(spec).matches(node) {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    let untolerated = |effect: &str| taints.iter().any(|t| t.effect == effect && !tolerations_tolerate(tolerations, t));
    let no_execute = untolerated("NoExecute");
    (!no_execute && !untolerated("NoSchedule"), !no_execute)
}

/// The node a daemon pod is for: where it is bound, else the node its affinity pins.
fn target_node(p: &Pod) -> Option<String> {
    if let Some(n) = pod::node_name(p) {
        return Some(n.to_string());
    }
    let terms = &pod::spec(p)
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|f| {
        (f.key == "metadata.name" && f.operator == "In").then(|| f.values.as_ref()?.first().cloned()).flatten()
    })
}

/// Pins a pod spec to one node: its required node affinity keeps the terms' label
/// expressions and gains `metadata.name In [node]` (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`).
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector { node_selector_terms: Vec::new() });
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
}

/// The daemon pod for a node: the template with its revision's hash, the daemon
/// tolerations, pinned to the node.
fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut metadata = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    metadata.generate_name = Some(format!("{}-", ds.name()));
    metadata.namespace = Some(ds.namespace().to_string());
    metadata.owner_references = Some(vec![controller_ref(ds)]);
    metadata.labels.get_or_insert_with(BTreeMap::new).insert(REVISION_HASH.into(), hash.to_string());
    add_daemon_tolerations(&mut spec);
    pin_to_node(&mut spec, node);
    Pod { metadata, spec: Some(spec), status: None }
}

/// An int-or-percent of `total` (percentages round up, as upstream's for DaemonSets).
fn resolve(v: Option<&IntOrString>, total: i64) -> i64 {
    match v {
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * total + 99) / 100
        }
        None => 0,
    }
}

/// What one node has of the DaemonSet.
#[derive(Default)]
struct NodePods {
    should_run: bool,
    may_stay: bool,
    pods: Vec<Arc<Pod>>,
}

impl DaemonSetsController {
    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(ds) = self.daemonsets.get_key(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        if ds.is_deleting() {
            return Ok(Action::Done);
        }
        let spec = ds.spec.clone().unwrap_or_default();
        let selector = selector_of(Some(&spec.selector));
        let template = spec.template.clone();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let revisions = history::owned(&self.revisions, &*ds);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        let (current, hash) =
            history::ensure_current(&self.client, &revisions, &*ds, &template, &labels, collisions).await?;

        for orphan in adoption::orphans(&self.pods, ds.namespace(), &selector) {
            if pod::is_active(&orphan) {
                let patch = adoption::adopt_patch(&*orphan, &*ds);
                match self.client.merge_patch::<Pod>(orphan.namespace(), orphan.name(), &patch).await {
                    Err(e) if !e.is_not_found() && !e.is_conflict() => return Err(e.into()),
                    _ => {}
                }
            }
        }
        let owned: Vec<Arc<Pod>> = self
            .pods
            .controlled_by(ds.uid())
            .into_iter()
            .filter(|p| selects(&selector, p.labels()) && !p.is_deleting())
            .collect();
        let mut template_spec = template.spec.clone().unwrap_or_default();
        add_daemon_tolerations(&mut template_spec);
        let mut by_node: BTreeMap<String, NodePods> = BTreeMap::new();
        for node in self.nodes.list() {
            let (should_run, may_stay) = should_run(&template_spec, &node);
            by_node.insert(node.name().to_string(), NodePods { should_run, may_stay, pods: Vec::new() });
        }
        let mut strays: Vec<Arc<Pod>> = Vec::new();
        for p in owned {
            match target_node(&p).and_then(|n| by_node.get_mut(&n)) {
                Some(np) => np.pods.push(p),
                // Its node is gone.
                None => strays.push(p),
            }
        }

        let now = SystemTime::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let (mut create_on, mut victims): (Vec<String>, Vec<Arc<Pod>>) = (Vec::new(), strays);
        let mut wait: Option<Duration> = None;
        for (node, np) in &mut by_node {
            // Failed pods are replaced, after a back-off per node; of several, the oldest stays.
            let (failed, mut live): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) =
                np.pods.drain(..).partition(|p| pod::phase(p) == "Failed");
            let fkey = (ds.uid().to_string(), node.clone());
            if !failed.is_empty() {
                let mut failures = self.failures.lock().expect("failures lock");
                let (count, until) = failures.get(&fkey).copied().unwrap_or((0, Instant::now()));
                let left = until.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    wait = Some(wait.map_or(left, |w| w.min(left)));
                    np.pods = live;
                    continue;
                }
                let delay = Duration::from_secs(1).saturating_mul(1 << count.min(10)).min(FAILED_BACKOFF_MAX);
                failures.insert(fkey, (count + 1, Instant::now() + delay));
                victims.extend(failed);
            } else if live.iter().any(|p| pod::is_ready(p)) {
                self.failures.lock().expect("failures lock").remove(&fkey);
            }
            live.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            if np.should_run {
                if live.is_empty() {
                    create_on.push(node.clone());
                }
            } else if !np.may_stay {
                victims.append(&mut live);
            }
            np.pods = live;
        }
        if spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("OnDelete") {
            let ru = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
            let desired = by_node.values().filter(|n| n.should_run).count() as i64;
            let max_surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), desired);
            let max_unavailable = match resolve(ru.and_then(|r| r.max_unavailable.as_ref()), desired) {
                0 if max_surge == 0 => 1,
                n => n,
            };
            let (surge_on, replaced) = rolling_update(&by_node, &hash, max_surge, max_unavailable, min_ready, now);
            create_on.extend(surge_on);
            victims.extend(replaced);
        }
        // Two pods of one revision on a node: the newer goes (with surge, an old and a new
        // pod stand side by side on purpose).
        for np in by_node.values() {
            let mut hashes = HashSet::new();
            for p in &np.pods {
                if !hashes.insert(p.labels().get(REVISION_HASH).cloned().unwrap_or_default()) {
                    victims.push(p.clone());
                }
            }
        }
        let mut seen = HashSet::new();
        victims.retain(|p| seen.insert(p.uid().to_string()));

        if self.expectations.satisfied(key) {
            create_on.truncate(BURST);
            victims.truncate(BURST);
            self.expectations.expect(key, create_on.len() as i64, victims.len() as i64);
            // Both run whatever the other did: a failed creation must not leave the expected
            // deletions pending (the DaemonSet would wait for the expectations' timeout).
            let created = self.create_pods(&ds, key, &create_on, &hash).await;
            let deleted = self.delete_pods(&ds, key, &victims).await;
            created?;
            deleted?;
        }

        let in_use: HashSet<String> = by_node
            .values()
            .flat_map(|n| n.pods.iter())
            .filter_map(|p| p.labels().get(REVISION_HASH).cloned())
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let revisions = history::owned(&self.revisions, &*ds);
        history::prune(&self.client, &revisions, current.name(), &in_use, limit).await?;
        let action = self.update_status(&ds, &by_node, &hash, min_ready, now).await?;
        Ok(match (action, wait) {
            (Action::RequeueAfter(a), Some(w)) => Action::RequeueAfter(a.min(w)),
            (_, Some(w)) => Action::RequeueAfter(w),
            (a, None) => a,
        })
    }

    async fn create_pods(&self, ds: &DaemonSet, key: &ObjectKey, nodes: &[String], hash: &str) -> Result<(), Error> {
        let pods: Vec<Pod> = nodes.iter().map(|n| pod_for_node(ds, n, hash)).collect();
        let results = join_all(pods.iter().map(|p| self.client.create(p))).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(p) => {
                    let msg = format!("Created pod: {}", p.name());
                    self.events.record(ds, EventType::Normal, "SuccessfulCreate", &msg).await;
                }
                Err(e) => {
                    self.expectations.failed(key, 1, 0);
                    let msg = format!("Error creating: {e}");
                    self.events.record(ds, EventType::Warning, "FailedCreate", &msg).await;
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }

    async fn delete_pods(&self, ds: &DaemonSet, key: &ObjectKey, pods: &[Arc<Pod>]) -> Result<(), Error> {
        let params = DeleteParams::default();
        let results = join_all(pods.iter().map(|p| self.client.delete::<Pod>(p.namespace(), p.name(), &params))).await;
        let mut first_err = None;
        for (r, p) in results.into_iter().zip(pods) {
            match r {
                Ok(()) => {
                    let msg = format!("Deleted pod: {}", p.name());
                    self.events.record(ds, EventType::Normal, "SuccessfulDelete", &msg).await;
                }
                Err(e) => {
                    self.expectations.failed(key, 0, 1);
                    if !e.is_not_found() {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }

    async fn update_status(
        &self,
        ds: &DaemonSet,
        by_node: &BTreeMap<String, NodePods>,
        hash: &str,
        min_ready: i32,
        now: SystemTime,
    ) -> ReconcileResult {
        let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) = (0, 0, 0, 0, 0, 0);
        let mut next_available: Option<Duration> = None;
        for np in by_node.values() {
            let running = np.pods.first();
            match (np.should_run, running) {
                (true, Some(p)) => {
                    current += 1;
                    if pod::is_ready(p) {
                        ready += 1;
                    }
                    // Judged on the oldest pod, as ready and available are: a surge pod beside it
                    // does not make the node updated before it has replaced it.
                    if p.labels().get(REVISION_HASH).map(String::as_str) == Some(hash) {
                        updated += 1;
                    }
                    if pod::is_available(p, min_ready, now) {
                        available += 1;
                    } else if let Some(d) = pod::available_in(p, min_ready, now) {
                        next_available = Some(next_available.map_or(d, |n| n.min(d)));
                    }
                }
                (false, Some(_)) => misscheduled += 1,
                _ => {}
            }
            if np.should_run {
                desired += 1;
            }
        }
        let status = DaemonSetStatus {
            current_number_scheduled: current,
            number_misscheduled: misscheduled,
            desired_number_scheduled: desired,
            number_ready: ready,
            updated_number_scheduled: Some(updated),
            number_available: Some(available),
            number_unavailable: Some(desired - available),
            observed_generation: ds.metadata.generation,
            collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
            conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        if ds.status.as_ref() != Some(&status) {
            let patch = json!({"status": status});
            match self.client.merge_patch_status::<DaemonSet>(ds.namespace(), ds.name(), &patch).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        Ok(next_available.map_or(Action::Done, Action::RequeueAfter))
    }
}

/// One step of a rolling update over the nodes' pods: the nodes to start a surge pod on, and
/// the old pods to delete (upstream's `rollingUpdate`). Without surge, old pods go while at
/// most `max_unavailable` nodes lack an available pod, unavailable old pods first (they cost
/// nothing); with surge, a new pod starts beside an available old one (at most `max_surge`
/// new pods not yet available at once; beside an unavailable old one at any time) and the old
/// one goes once the new is available.
fn rolling_update(
    by_node: &BTreeMap<String, NodePods>,
    hash: &str,
    max_surge: i64,
    max_unavailable: i64,
    min_ready: i32,
    now: SystemTime,
) -> (Vec<String>, Vec<Arc<Pod>>) {
    let is_new = |p: &Pod| p.labels().get(REVISION_HASH).map(String::as_str) == Some(hash);
    let available = |p: &Pod| pod::is_available(p, min_ready, now);
    let (mut surge_on, mut victims) = (Vec::new(), Vec::new());
    let nodes: Vec<(&String, &NodePods)> = by_node.iter().filter(|(_, n)| n.should_run).collect();
    if max_surge == 0 {
        let unavailable = nodes.iter().filter(|(_, n)| !n.pods.iter().any(|p| available(p))).count() as i64;
        let mut budget = (max_unavailable - unavailable).max(0);
        let old = |n: &NodePods| n.pods.iter().find(|p| !is_new(p)).cloned();
        // Unavailable old pods first: deleting them makes nothing less available.
        for (_, n) in &nodes {
            if let Some(p) = old(n).filter(|p| !available(p)) {
                victims.push(p);
            }
        }
        for (_, n) in &nodes {
            if budget == 0 {
                break;
            }
            if let Some(p) = old(n).filter(|p| available(p)) {
                if !n.pods.iter().any(|q| is_new(q)) {
                    victims.push(p);
                    budget -= 1;
                }
            }
        }
        return (surge_on, victims);
    }
    // Nodes whose new pod is not available yet use the surge budget.
    let mut surging = nodes
        .iter()
        .filter(|(_, n)| n.pods.iter().any(|p| is_new(p) && !available(p)) && n.pods.iter().any(|p| !is_new(p)))
        .count() as i64;
    let mut candidates = Vec::new();
    for (node, n) in &nodes {
        let new = n.pods.iter().find(|p| is_new(p));
        let olds: Vec<&Arc<Pod>> = n.pods.iter().filter(|p| !is_new(p)).collect();
        if olds.is_empty() {
            continue;
        }
        match new {
            Some(new) if available(new) => victims.extend(olds.into_iter().cloned()),
            Some(_) => {}
            // An unavailable old pod is replaced whatever the budget (it serves nothing).
            None if !olds.iter().any(|p| available(p)) => {
                surge_on.push((*node).clone());
                surging += 1;
            }
            None => candidates.push((*node).clone()),
        }
    }
    let room = (max_surge - surging).max(0) as usize;
    surge_on.extend(candidates.into_iter().take(room));
    (surge_on, victims)
}

impl Reconciler for DaemonSetsController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            value: None,
                            time_added: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn daemon_pods_fit_selectors_and_tolerate_what_upstream_adds() {
        let mut spec = PodSpec { node_selector: Some([("disk".into(), "ssd".into())].into()), ..Default::default() };
        add_daemon_tolerations(&mut spec);
        assert_eq!(should_run(&spec, &node("a", &[("disk", "ssd")], &[])), (true, true));
        assert_eq!(should_run(&spec, &node("b", &[("disk", "hdd")], &[])), (false, false));
        // Not ready, unreachable, cordoned: daemon pods stay and start.
        let sick = node(
            "c",
            &[("disk", "ssd")],
            &[("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unschedulable", "NoSchedule")],
        );
        assert_eq!(should_run(&spec, &sick), (true, true));
        // A user's NoSchedule taint: no new pod, the old one may stay; NoExecute: neither.
        assert_eq!(should_run(&spec, &node("d", &[("disk", "ssd")], &[("dedicated", "NoSchedule")])), (false, true));
        assert_eq!(should_run(&spec, &node("e", &[("disk", "ssd")], &[("dedicated", "NoExecute")])), (false, false));
        let twice = spec.tolerations.as_ref().unwrap().len();
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), twice, "added once");
    }

    fn daemon_pod(name: &str, hash: &str, ready: bool) -> Arc<Pod> {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        use kubus_apimachinery::time::time;
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                labels: Some([(REVISION_HASH.to_string(), hash.to_string())].into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(time(SystemTime::UNIX_EPOCH)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn nodes_with(pods: Vec<Vec<Arc<Pod>>>) -> BTreeMap<String, NodePods> {
        pods.into_iter()
            .enumerate()
            .map(|(i, pods)| (format!("n{i}"), NodePods { should_run: true, may_stay: true, pods }))
            .collect()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn rolling_update_without_surge_keeps_max_unavailable() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        // Four nodes on the old revision, all available: two may go at once.
        let nodes = nodes_with((0..4).map(|i| vec![daemon_pod(&format!("old{i}"), "old", true)]).collect());
        let (surge, victims) = rolling_update(&nodes, "new", 0, 2, 0, now);
        assert!(surge.is_empty());
        assert_eq!(names(&victims), ["old0", "old1"]);
        // One node already lacks an available pod: only one more may go, and an unavailable
        // old pod goes first, for free.
        let nodes = nodes_with(vec![
            vec![daemon_pod("old0", "old", true)],
            vec![daemon_pod("sick", "old", false)],
            vec![daemon_pod("new2", "new", true)],
        ]);
        let (_, victims) = rolling_update(&nodes, "new", 0, 2, 0, now);
        assert_eq!(names(&victims), ["sick", "old0"]);
        let (_, victims) = rolling_update(&nodes, "new", 0, 1, 0, now);
        assert_eq!(names(&victims), ["sick"]);
    }

    #[test]
    fn rolling_update_with_surge_starts_new_pods_beside_the_old() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let nodes = nodes_with(vec![
            vec![daemon_pod("old0", "old", true)],
            vec![daemon_pod("old1", "old", true)],
            vec![daemon_pod("old2", "old", true), daemon_pod("new2", "new", true)],
            vec![daemon_pod("old3", "old", true), daemon_pod("new3", "new", false)],
        ]);
        // n3 surges already (its new pod is not ready yet); one more may start.
        let (surge, victims) = rolling_update(&nodes, "new", 2, 0, 0, now);
        assert_eq!(surge, ["n0"]);
        // The old pod beside an available new one goes; the one beside an unready one stays.
        assert_eq!(names(&victims), ["old2"]);
    }

    #[test]
    fn daemon_pods_are_pinned_by_node_affinity() {
        let ds = DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = pod_for_node(&ds, "node-7", "abc");
        assert_eq!(target_node(&p).as_deref(), Some("node-7"));
        assert_eq!(p.labels()[REVISION_HASH], "abc");
        assert!(pod::node_name(&p).is_none(), "the scheduler binds it");
        let n = node("node-7", &[], &[]);
        assert!(RequiredNodeAffinity::from_pod(&p).matches(&n));
        assert!(!RequiredNodeAffinity::from_pod(&p).matches(&node("node-8", &[], &[])));
    }
}
