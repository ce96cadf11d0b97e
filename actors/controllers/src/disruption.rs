//! The disruption controller (upstream `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status, which the eviction subresource reads. The expected pods are
//! the scale of the controllers of the selected pods (a Deployment's replicas for its
//! ReplicaSets' pods, a StatefulSet's, a ReplicationController's), or the pods themselves for
//! an integer minAvailable; healthy pods are the Ready ones that are not being deleted or
//! were just evicted (`disruptedPods`, forgotten after two minutes as upstream).

use crate::adoption::selects;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubus_apimachinery::meta::refers_to;
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::time::{system_time, time};
use kubus_apimachinery::{pod, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::{Client, Informer, InformerFactory};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const WORKERS: usize = 2;
/// How long an evicted pod is not counted as healthy while its deletion is under way
/// (upstream's DeletionTimeout).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let pdbs = factory.get::<PodDisruptionBudget>();
    let pods = factory.get::<Pod>();
    let on_pod = {
        let pdbs = pdbs.clone();
        move |p: &Pod| {
            pdbs.namespace(p.namespace())
                .iter()
                .filter(|b| selector(b).is_some_and(|s| selects(&s, p.labels())))
                .map(|b| b.key())
                .collect()
        }
    };
    let ctrl = Controller::new("disruption", pdbs.clone()).watches(pods.clone(), on_pod).workers(workers);
    let this = DisruptionController {
        client,
        pdbs,
        pods,
        replicasets: factory.get::<ReplicaSet>(),
        deployments: factory.get::<Deployment>(),
        statefulsets: factory.get::<StatefulSet>(),
        rcs: factory.get::<ReplicationController>(),
    };
    ctrl.run(Arc::new(this))
}

struct DisruptionController {
    client: Client,
    pdbs: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    rcs: Informer<ReplicationController>,
}

/// policy/v1: a missing selector selects nothing, an empty one every pod of the namespace.
fn selector(pdb: &PodDisruptionBudget) -> Option<LabelSelector> {
    let sel = pdb.spec.as_ref()?.selector.as_ref()?;
    LabelSelector::from_typed(Some(sel)).ok()
}

/// An int-or-percent of `total`, percentages rounded up (upstream's GetScaledValueFromIntOrPercent).
fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(total) + 99) / 100) as i32
        }
    }
}

/// (expected pods, desired healthy) of a budget given its pods and their controllers' scale.
pub fn budget(min: Option<&IntOrString>, max: Option<&IntOrString>, pods: i32, scale: Option<i32>) -> (i32, i32) {
    match (min, max) {
        (Some(IntOrString::Int(n)), _) => (pods, *n),
        (Some(pct), _) => {
            let expected = scale.unwrap_or(pods);
            (expected, scaled(pct, expected))
        }
        (None, Some(m)) => {
            let expected = scale.unwrap_or(pods);
            (expected, (expected - scaled(m, expected)).max(0))
        }
        (None, None) => (pods, pods),
    }
}

impl DisruptionController {
    /// The summed scale of the pods' controllers, each counted once; None when a pod has no
    /// controller with a scale.
    fn scale(&self, pods: &[Arc<Pod>]) -> Option<i32> {
        let mut seen = HashSet::new();
        let mut total = 0;
        for p in pods {
            let r = p.controller_ref()?;
            let ns = p.namespace();
            let (uid, replicas) = if refers_to::<ReplicaSet>(r) {
                let rs = self.replicasets.get(ns, &r.name)?;
                // A Deployment's ReplicaSets count as the Deployment.
                match rs.controller_ref().filter(|d| refers_to::<Deployment>(d)) {
                    Some(d) => {
                        let dep = self.deployments.get(ns, &d.name)?;
                        (dep.uid().to_string(), dep.spec.as_ref()?.replicas.unwrap_or(1))
                    }
                    None => (rs.uid().to_string(), rs.spec.as_ref()?.replicas.unwrap_or(1)),
                }
            } else if refers_to::<StatefulSet>(r) {
                let s = self.statefulsets.get(ns, &r.name)?;
                (s.uid().to_string(), s.spec.as_ref()?.replicas.unwrap_or(1))
            } else if refers_to::<ReplicationController>(r) {
                let rc = self.rcs.get(ns, &r.name)?;
                (rc.uid().to_string(), rc.spec.as_ref()?.replicas.unwrap_or(1))
            } else {
                return None;
            };
            if seen.insert(uid) {
                total += replicas;
            }
        }
        Some(total)
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(pdb) = self.pdbs.get_key(key) else { return Ok(Action::Done) };
        if pdb.is_deleting() {
            return Ok(Action::Done);
        }
        let now = SystemTime::now();
        let pods: Vec<Arc<Pod>> = match selector(&pdb) {
            Some(sel) => {
                self.pods.namespace(pdb.namespace()).into_iter().filter(|p| sel.matches_labels(p.labels())).collect()
            }
            None => Vec::new(),
        };
        let spec = pdb.spec.clone().unwrap_or_default();
        let scale = self.scale(&pods);
        let (expected, desired) =
            budget(spec.min_available.as_ref(), spec.max_unavailable.as_ref(), pods.len() as i32, scale);
        // Evicted pods stay out of the healthy count until they are gone, or for two minutes.
        let old = pdb.status.clone().unwrap_or_default();
        let live: HashSet<&str> = pods.iter().filter(|p| !p.is_deleting()).map(|p| p.name()).collect();
        let disrupted: BTreeMap<String, Time> = old
            .disrupted_pods
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, t)| live.contains(name.as_str()) && system_time(t) + DELETION_TIMEOUT > now)
            .collect();
        let healthy =
            pods.iter().filter(|p| !p.is_deleting() && pod::is_ready(p) && !disrupted.contains_key(p.name())).count()
                as i32;
        let allowed = (healthy - desired).max(0);
        let (status_word, reason) =
            if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
        let previous = old.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
        let transition = match previous {
            Some(c) if c.status == status_word => c.last_transition_time.clone(),
            _ => time(now),
        };
        let status = PodDisruptionBudgetStatus {
            observed_generation: pdb.metadata.generation,
            disrupted_pods: (!disrupted.is_empty()).then(|| disrupted.clone()),
            disruptions_allowed: allowed,
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            conditions: Some(vec![Condition {
                type_: "DisruptionAllowed".into(),
                status: status_word.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: pdb.metadata.generation,
                last_transition_time: transition,
            }]),
        };
        if old != status {
            let mut body = (*pdb).clone();
            body.status = Some(status);
            match self
                .client
                .replace_subresource::<PodDisruptionBudget, _>(pdb.namespace(), pdb.name(), "status", &body)
                .await
            {
                Err(e) if !e.is_not_found() && !e.is_conflict() => return Err(e.into()),
                _ => {}
            }
        }
        let next = disrupted
            .values()
            .map(|t| (system_time(t) + DELETION_TIMEOUT).duration_since(now).unwrap_or_default())
            .min();
        Ok(next.map_or(Action::Done, Action::RequeueAfter))
    }
}

impl Reconciler for DisruptionController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_as_upstream_counts_them() {
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(budget(Some(&int(2)), None, 3, Some(5)), (3, 2), "an integer minAvailable counts the pods");
        assert_eq!(budget(Some(&pct("50%")), None, 3, Some(5)), (5, 3), "50% of 5, rounded up");
        assert_eq!(budget(None, Some(&int(1)), 3, Some(3)), (3, 2));
        assert_eq!(budget(None, Some(&pct("34%")), 3, Some(3)), (3, 1), "34% of 3 rounds up to 2 unavailable");
        assert_eq!(budget(None, Some(&int(5)), 3, Some(3)), (3, 0));
    }
}
