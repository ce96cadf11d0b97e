//! The resource quota controller (upstream `pkg/controller/resourcequota`): keeps each
//! ResourceQuota's `status.hard` (its spec's) and `status.used` (what its namespace's objects
//! use, with the evaluators the admission plugin charges with), computed from the informer
//! caches through their namespace indexes.
//!
//! As upstream, a quota is recounted when its spec changes or its status lacks something,
//! when an object goes or stops using what it was charged (deleted, finished, or deleted past
//! its grace period), and fully every five minutes; status writes by the admission plugin
//! (charges of new objects) do not trigger a recount, so a recount cannot race a burst of
//! creates whose objects the caches have not seen yet.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service};
use kubus_apimachinery::quota::{self, Evaluator, ResourceList, Target};
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::informer::{Change, DynInformer, MetaChange, BY_NAMESPACE};
use kubus_controller_runtime::{Client, Informer, InformerFactory};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Upstream's --concurrent-resource-quota-syncs.
pub const WORKERS: usize = 5;
/// Upstream's --resource-quota-sync-period: every quota is recounted this often.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How long a recount queued by released objects waits for more of them.
const COALESCE: Duration = Duration::from_millis(200);

/// Quotas that must be recounted on their next reconcile, and when each was last recounted.
#[derive(Default)]
struct Marks {
    dirty: HashSet<ObjectKey>,
    counted: HashMap<ObjectKey, Instant>,
    /// When a counted pod's deletion grace runs out (it stops counting then).
    grace_due: HashMap<ObjectKey, SystemTime>,
}

type SharedMarks = Arc<Mutex<Marks>>;

/// The quotas of a namespace that track one of `names`' resources of `evaluator`, marked for
/// a recount.
fn replenish(quotas: &Informer<ResourceQuota>, marks: &SharedMarks, ns: &str, evaluator: &Evaluator) -> Vec<ObjectKey> {
    let keys: Vec<ObjectKey> = quotas
        .namespace(ns)
        .iter()
        .filter(|q| !evaluator.matching_resources(hard(q).keys()).is_empty())
        .map(|q| q.key())
        .collect();
    if !keys.is_empty() {
        marks.lock().expect("marks lock").dirty.extend(keys.iter().cloned());
    }
    keys
}

fn hard(q: &ResourceQuota) -> ResourceList {
    quota::parse_list(q.spec.as_ref().and_then(|s| s.hard.as_ref()))
}

/// The namespace of a change's object, if the namespace has quotas (most have none, and
/// pods change often: this is the cheap test before any usage is computed).
fn with_quotas<'a, O: ObjectExt>(quotas: &Informer<ResourceQuota>, change: &'a Change<O>) -> Option<&'a O> {
    let o: &O = match change {
        Change::Applied { new, .. } => new,
        Change::Deleted(o) => o,
        Change::Resynced => return None,
    };
    (quotas.count(BY_NAMESPACE, o.namespace()) > 0).then_some(o)
}

/// Whether a change can lower what the object uses: a deletion, or an update after which it
/// counts less (a pod finishing or being deleted, a service or claim shrinking).
fn releases<O>(change: &Change<O>, usage: impl Fn(&O) -> ResourceList, deleting: impl Fn(&O) -> bool) -> Option<&O> {
    match change {
        Change::Deleted(o) => Some(o),
        Change::Applied { old: Some(old), new } => {
            let lower = !quota::is_zero(&quota::subtract_non_negative(&usage(old), &usage(new)));
            (lower || deleting(new) != deleting(old)).then_some(&**new)
        }
        _ => None,
    }
}

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let quotas = factory.get::<ResourceQuota>();
    let pods = factory.get::<Pod>();
    let services = factory.get::<Service>();
    let claims = factory.get::<PersistentVolumeClaim>();
    let marks: SharedMarks = Arc::default();
    let typed = ["pods", "services", "persistentvolumeclaims"];
    // Every other stored resource is counted (`count/<resource>.<group>`), by its namespace index.
    let counted: Vec<Arc<dyn DynInformer>> = factory
        .all()
        .into_iter()
        .filter(|i| {
            let info = i.info();
            info.namespaced
                && Evaluator::for_resource(info.group, info.resource).is_some()
                && !(info.group.is_empty() && typed.contains(&info.resource))
        })
        .collect();
    let ctrl = Controller::new("resourcequota", quotas.clone())
        .watches_changes(pods.clone(), {
            let (quotas, marks) = (quotas.clone(), marks.clone());
            move |change: &Change<Pod>| {
                if with_quotas(&quotas, change).is_none() {
                    return vec![];
                }
                let now = SystemTime::now();
                let usage = |p: &Pod| Evaluator::Pods.usage(Target::Pod(p), now);
                match releases(change, usage, |p: &Pod| p.metadata.deletion_timestamp.is_some()) {
                    Some(p) => replenish(&quotas, &marks, p.namespace(), &Evaluator::Pods),
                    None => vec![],
                }
            }
        })
        .watches_changes(services.clone(), {
            let (quotas, marks) = (quotas.clone(), marks.clone());
            move |change: &Change<Service>| {
                if with_quotas(&quotas, change).is_none() {
                    return vec![];
                }
                let usage = |s: &Service| Evaluator::Services.usage(Target::Service(s), SystemTime::now());
                match releases(change, usage, |_| false) {
                    Some(s) => replenish(&quotas, &marks, s.namespace(), &Evaluator::Services),
                    None => vec![],
                }
            }
        })
        .watches_changes(claims.clone(), {
            let (quotas, marks) = (quotas.clone(), marks.clone());
            move |change: &Change<PersistentVolumeClaim>| {
                if with_quotas(&quotas, change).is_none() {
                    return vec![];
                }
                let usage = |c: &PersistentVolumeClaim| Evaluator::Claims.usage(Target::Claim(c), SystemTime::now());
                match releases(change, usage, |_| false) {
                    Some(c) => replenish(&quotas, &marks, c.namespace(), &Evaluator::Claims),
                    None => vec![],
                }
            }
        })
        // A burst of deletions (a Deployment scaled down) makes one recount per window.
        .coalesce(COALESCE)
        .workers(workers);
    // Deletions of counted objects queue the quotas that count them.
    let queue = ctrl.queue();
    let mut loops: Vec<BoxFuture<'static, ()>> = counted
        .iter()
        .map(|informer| {
            let info = informer.info();
            let evaluator = Evaluator::for_resource(info.group, info.resource).expect("filtered above");
            let (quotas, marks, queue) = (quotas.clone(), marks.clone(), queue.clone());
            informer.on_change(Box::new(move |change| {
                if let MetaChange::Deleted(meta) = change {
                    let ns = meta.namespace.as_deref().unwrap_or_default();
                    for key in replenish(&quotas, &marks, ns, &evaluator) {
                        queue.add(key);
                    }
                }
            }))
        })
        .collect();
    let this = QuotaController { client, quotas, pods, services, claims, counted, marks };
    loops.push(ctrl.run(Arc::new(this)));
    Box::pin(async move {
        futures::future::join_all(loops).await;
    })
}

struct QuotaController {
    client: Client,
    quotas: Informer<ResourceQuota>,
    pods: Informer<Pod>,
    services: Informer<Service>,
    claims: Informer<PersistentVolumeClaim>,
    counted: Vec<Arc<dyn DynInformer>>,
    marks: SharedMarks,
}

impl QuotaController {
    /// What the namespace's objects use of the quota's resources; also when the next counted
    /// pod's deletion grace runs out.
    fn usage(&self, q: &ResourceQuota, hard: &ResourceList, now: SystemTime) -> (ResourceList, Option<SystemTime>) {
        let ns = q.namespace();
        let spec = q.spec.clone().unwrap_or_default();
        let scoped = !quota::scope_selectors(&spec).is_empty();
        let mut used = ResourceList::new();
        let mut next_release = None;
        let mut measure = |evaluator: &Evaluator, targets: &mut dyn Iterator<Item = Target>| {
            let names = evaluator.matching_resources(hard.keys());
            if names.is_empty() {
                return;
            }
            let mut sum: ResourceList = names.iter().map(|n| (n.clone(), quota::zero())).collect();
            for t in targets {
                if quota::scope_selectors(&spec).iter().all(|s| evaluator.matches_scope(s, t)) {
                    quota::add_to(&mut sum, &quota::mask(&evaluator.usage(t, now), &names));
                }
            }
            used.extend(sum);
        };
        let pods = self.pods.namespace(ns);
        for p in &pods {
            if let Some(deadline) = quota::grace_deadline(p).filter(|d| *d > now && quota::pod_counts(p, now)) {
                next_release = Some(next_release.map_or(deadline, |n: SystemTime| n.min(deadline)));
            }
        }
        measure(&Evaluator::Pods, &mut pods.iter().map(|p| Target::Pod(p)));
        let services = self.services.namespace(ns);
        measure(&Evaluator::Services, &mut services.iter().map(|s| Target::Service(s)));
        let claims = self.claims.namespace(ns);
        measure(&Evaluator::Claims, &mut claims.iter().map(|c| Target::Claim(c)));
        for informer in &self.counted {
            let info = informer.info();
            let evaluator = Evaluator::for_resource(info.group, info.resource).expect("counted kinds have one");
            let names = evaluator.matching_resources(hard.keys());
            if names.is_empty() {
                continue;
            }
            // Object counts fall under no scope: a scoped quota counts none.
            let n = if scoped { 0 } else { informer.count_in_namespace(ns) };
            let one = evaluator.usage(Target::Other, now);
            for name in names {
                let each = one.get(&name).copied().unwrap_or_else(quota::zero);
                used.insert(name, quota::scale(each, n as i128));
            }
        }
        (used, next_release)
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(q) = self.quotas.get_key(key) else {
            let mut m = self.marks.lock().expect("marks lock");
            m.dirty.remove(key);
            m.counted.remove(key);
            m.grace_due.remove(key);
            return Ok(Action::Done);
        };
        if q.is_deleting() {
            return Ok(Action::Done);
        }
        let now = SystemTime::now();
        let hard = hard(&q);
        let status = q.status.clone().unwrap_or_default();
        let old_hard = quota::parse_list(status.hard.as_ref());
        let old_used = quota::parse_list(status.used.as_ref());
        let stale = !quota::equals(&hard, &old_hard) || hard.keys().any(|k| !old_used.contains_key(k));
        let (due, dirty) = {
            let mut m = self.marks.lock().expect("marks lock");
            let due = m.counted.get(key).is_none_or(|t| t.elapsed() >= RESYNC);
            let grace = m.grace_due.get(key).is_some_and(|d| *d <= now);
            (due, m.dirty.remove(key) || grace)
        };
        if !(stale || due || dirty) {
            let since = self.marks.lock().expect("marks lock").counted.get(key).map(Instant::elapsed);
            return Ok(Action::RequeueAfter(RESYNC.saturating_sub(since.unwrap_or_default())));
        }
        let (usage, next_release) = self.usage(&q, &hard, now);
        // Keep what this controller cannot count; only resources with a hard limit stay.
        let used = quota::mask(&quota::add_replacing(&old_used, &usage), hard.keys());
        if !quota::equals(&hard, &old_hard) || !quota::equals(&used, &old_used) {
            let mut body = (*q).clone();
            body.status =
                Some(ResourceQuotaStatus { hard: Some(quota::to_api(&hard)), used: Some(quota::to_api(&used)) });
            if let Err(e) =
                self.client.replace_subresource::<ResourceQuota, _>(q.namespace(), q.name(), "status", &body).await
            {
                if e.is_not_found() {
                    return Ok(Action::Done);
                }
                // A charge won the race: count again.
                self.marks.lock().expect("marks lock").dirty.insert(key.clone());
                return Err(e.into());
            }
        }
        let mut m = self.marks.lock().expect("marks lock");
        m.counted.insert(key.clone(), Instant::now());
        let wait = match next_release {
            Some(at) => {
                m.grace_due.insert(key.clone(), at);
                at.duration_since(now).unwrap_or_default().min(RESYNC)
            }
            None => {
                m.grace_due.remove(key);
                RESYNC
            }
        };
        Ok(Action::RequeueAfter(wait))
    }
}

impl Reconciler for QuotaController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}
