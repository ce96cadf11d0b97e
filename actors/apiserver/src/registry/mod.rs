//! Registry strategies: what each kind of object adds to the generic write path, as upstream's
//! `pkg/registry/<group>/<kind>/strategy.go` do. [`crate::storage`] decodes a request, applies
//! the metadata rules every object shares and a CAS write; the kind's [`Strategy`] defaults,
//! prepares, validates, allocates and decides how a deletion proceeds, and names the rules of
//! its subresources besides status ([`SubresourceStrategy`]: scale, binding, finalize).
//!
//! One file per kind with rules of its own: [`pod`], [`service`], [`namespace`], [`workload`]
//! (Deployments, ReplicaSets, ReplicationControllers), [`job`], [`priority_class`]; every other kind gets
//! [`default::DefaultStrategy`].

pub mod default;
pub mod job;
pub mod namespace;
pub mod pod;
pub mod priority_class;
pub mod service;
pub mod storage;
pub mod workload;

use crate::allocator::Allocator;
use crate::convert;
use crate::object::{keep, meta};
use futures::future::BoxFuture;
use kubus_apimachinery::{resource, validation, Cause, ResourceInfo, StatusError, Subresource};
use kubus_bus::Key;
use serde_json::{json, Value};
use std::sync::LazyLock;

/// The rules of one kind of object on the write path. Every method but [`Strategy::info`] has
/// the behaviour most kinds want; a kind overrides what differs.
pub trait Strategy: Send + Sync {
    /// The resource (its storage form) whose objects this strategy writes.
    fn info(&self) -> &'static ResourceInfo;

    /// Whether metadata.generation counts changes of the spec.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Fills what the request left unset, as upstream's defaulting does when it decodes.
    fn set_defaults(&self, obj: &mut Value) {
        validation::apply_defaults(self.info().group, self.info().kind, obj);
    }

    /// Resets what a create may not set (upstream's PrepareForCreate), on the defaulted object.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// The causes a new object is invalid for.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validation::validate_create(self.info().group, self.info().kind, obj)
    }

    /// Reserves what the server assigns to a new object (ClusterIPs, node ports) and writes it
    /// into `obj`; returns the reservations, which a failed create gives back.
    fn allocate<'a>(
        &'a self,
        _allocator: &'a Allocator,
        _obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<Vec<Key>, StatusError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// The reservations an object holds, given back once it is deleted.
    fn reservations(&self, _obj: &Value) -> Vec<Key> {
        Vec::new()
    }

    /// Makes `new` keep from `old` what a write through `sub` (None: the object itself) may not
    /// change, before defaulting. The write path has already restored the identity metadata.
    fn prepare_for_update(&self, sub: Option<Subresource>, new: &mut Value, old: &Value) {
        keep_unwritable(self, sub, new, old);
    }

    /// The causes an update through `sub` is invalid for.
    fn validate_update(&self, sub: Option<Subresource>, new: &Value, old: &Value) -> Vec<Cause> {
        let (group, kind) = (self.info().group, self.info().kind);
        match sub {
            Some(Subresource::Status) => validation::validate_status_update(group, kind, new, old),
            _ => validation::validate_update(group, kind, new, old),
        }
    }

    /// The rules of a subresource other than status, for kinds that serve one.
    fn subresource(&self, _sub: Subresource) -> Option<&'static dyn SubresourceStrategy> {
        None
    }

    /// Refuses to delete objects the cluster cannot do without.
    fn check_delete(&self, _name: &str) -> Result<(), StatusError> {
        Ok(())
    }

    /// Seconds a deleted object is given before it goes; 0 deletes it at once (unless
    /// finalizers hold it).
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Starts a deletion that always waits for a controller, marking `obj` (a namespace turns
    /// Terminating); false for kinds whose deletion follows finalizers and grace periods.
    fn begin_deletion(&self, _obj: &mut Value, _already_deleting: bool) -> bool {
        false
    }

    /// Whether an object being deleted still waits for something besides metadata.finalizers.
    fn deletion_pending(&self, _obj: &Value) -> bool {
        false
    }
}

/// How a subresource other than status is read and written. The handler runs the verb; the
/// strategy says what the request changes (upstream's ScaleREST, BindingREST, FinalizeREST).
pub trait SubresourceStrategy: Send + Sync {
    /// The verbs it serves and what they answer.
    fn verbs(&self) -> Verbs;

    /// What GET shows of an object and what PUT and PATCH edit, for [`Verbs::View`].
    fn view(&self, obj: &Value) -> Value {
        obj.clone()
    }

    /// Refuses a malformed request before the object is read.
    fn check(&self, _name: &str, _request: &Value) -> Result<(), StatusError> {
        Ok(())
    }

    /// `old` changed as `request` asks (for a view: the view as written), without a
    /// resourceVersion.
    fn apply(&self, name: &str, old: &Value, request: &Value) -> Result<Value, StatusError>;

    /// Whether the write goes through the object's own update rules (scale: a replicas change
    /// is a spec change) rather than the subresource's.
    fn writes_object(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbs {
    /// GET shows a view of the object; PUT and PATCH write the view and answer with it, and
    /// a resourceVersion they carry must match (scale).
    View,
    /// PUT names what to change and answers with the object (finalize).
    Put,
    /// POST names what to change and answers 201 with a Success Status (binding).
    Post,
}

/// The status a new object starts with, as upstream's Go structs serialize an empty one:
/// counts without `omitempty` are present as 0 (typed clients such as Python's `kubernetes`
/// refuse a DaemonSetStatus without `numberReady`).
pub fn empty_status(kind: &str) -> Value {
    match kind {
        "ReplicaSet" | "ReplicationController" => json!({"replicas": 0}),
        "StatefulSet" => json!({"replicas": 0, "availableReplicas": 0}),
        "DaemonSet" => json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0}),
        "PodDisruptionBudget" => json!({"disruptionsAllowed": 0, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0}),
        "HorizontalPodAutoscaler" => json!({"currentReplicas": 0, "desiredReplicas": 0}),
        _ => json!({}),
    }
}

/// Kinds whose status belongs to a controller and starts at zero whatever the creator sent:
/// PodDisruptionBudgets (the disruption controller; the eviction API compares the status's
/// observedGeneration with the generation), HorizontalPodAutoscalers (the autoscaler) and
/// ResourceQuotas (the quota controller and admission: nothing is enforced until the
/// controller has counted what exists).
pub struct ControllerStatusStrategy {
    pub info: &'static ResourceInfo,
    pub generation: bool,
}

impl Strategy for ControllerStatusStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn tracks_generation(&self) -> bool {
        self.generation
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = empty_status(self.info.kind);
    }
}

/// Upstream's split between an object and its status subresource: a status write changes the
/// status only (metadata included: a controller that sends just the status must not wipe
/// labels, annotations, owners or finalizers), any other write changes all but the status and
/// counts a spec change as a new generation.
pub fn keep_unwritable<S: Strategy + ?Sized>(strategy: &S, sub: Option<Subresource>, new: &mut Value, old: &Value) {
    match sub {
        Some(Subresource::Status) => {
            keep(new, old, "spec");
            new["metadata"] = Value::Object(old["metadata"].as_object().cloned().unwrap_or_default());
        }
        _ if strategy.info().has(Subresource::Status) => {
            keep(new, old, "status");
            if strategy.tracks_generation() && new.get("spec") != old.get("spec") {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                meta(new).insert("generation".into(), json!(g + 1));
            }
        }
        _ => {}
    }
}

/// One strategy per served resource, built once.
static STRATEGIES: LazyLock<Vec<(&'static ResourceInfo, Box<dyn Strategy>)>> = LazyLock::new(|| {
    resource::all()
        .iter()
        .map(|info| -> (&'static ResourceInfo, Box<dyn Strategy>) {
            let strategy: Box<dyn Strategy> = match (info.group, info.resource) {
                ("", "pods") => Box::new(pod::PodStrategy),
                ("", "services") => Box::new(service::ServiceStrategy),
                ("", "namespaces") => Box::new(namespace::NamespaceStrategy),
                ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets")
                | ("", "replicationcontrollers") => Box::new(workload::WorkloadStrategy { info }),
                ("batch", "jobs") => Box::new(job::JobStrategy { info }),
                ("", "persistentvolumeclaims") => {
                    Box::new(storage::StorageStrategy { info, finalizer: storage::PVC_PROTECTION })
                }
                ("", "persistentvolumes") => {
                    Box::new(storage::StorageStrategy { info, finalizer: storage::PV_PROTECTION })
                }
                ("batch", "cronjobs") => Box::new(job::CronJobStrategy { info }),
                ("policy", "poddisruptionbudgets") => Box::new(ControllerStatusStrategy { info, generation: true }),
                ("autoscaling", "horizontalpodautoscalers") => {
                    Box::new(ControllerStatusStrategy { info, generation: false })
                }
                ("scheduling.k8s.io", "priorityclasses") => Box::new(priority_class::PriorityClassStrategy { info }),
                ("", "resourcequotas") => Box::new(ControllerStatusStrategy { info, generation: false }),
                _ => Box::new(default::DefaultStrategy { info }),
            };
            (info, strategy)
        })
        .collect()
});

/// The strategy for objects of `info` (versions sharing a storage share its strategy).
pub fn strategy(info: &'static ResourceInfo) -> &'static dyn Strategy {
    let info = convert::storage_info(info);
    STRATEGIES
        .iter()
        .find(|(i, _)| std::ptr::eq(*i, info))
        .map(|(_, s)| s.as_ref())
        .expect("every served resource has a strategy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_its_strategy() {
        for info in resource::all() {
            let s = strategy(info);
            assert!(std::ptr::eq(s.info(), convert::storage_info(info)), "{}", info.resource);
            // Generations count spec changes of the workloads only (the strategies say so alone).
            let workload = matches!(
                (info.group, info.resource),
                ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets")
                    | ("", "replicationcontrollers")
                    | ("batch", "jobs" | "cronjobs")
                    | ("policy", "poddisruptionbudgets")
            );
            assert_eq!(s.tracks_generation(), workload, "{}", info.resource);
            for sub in info.subresources {
                let served = s.subresource(*sub).is_some();
                let expected = matches!(sub, Subresource::Scale | Subresource::Binding | Subresource::Finalize);
                assert_eq!(served, expected, "{}/{}", info.resource, sub.name());
            }
        }
        let events_v1 = resource::find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(strategy(events_v1).info().group, "");
    }

    #[test]
    fn status_writes_keep_spec_and_metadata_others_keep_status() {
        let deployments = resource::find("apps", "v1", "deployments").unwrap();
        let s = strategy(deployments);
        let old = json!({"metadata": {"name": "d", "labels": {"a": "1"}, "generation": 4}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut status_write = json!({"metadata": {"name": "d"}, "spec": {"replicas": 9}, "status": {"replicas": 2}});
        s.prepare_for_update(Some(Subresource::Status), &mut status_write, &old);
        assert_eq!(status_write["spec"], old["spec"]);
        assert_eq!(status_write["metadata"], old["metadata"]);
        assert_eq!(status_write["status"]["replicas"], 2);
        let mut spec_write =
            json!({"metadata": {"name": "d", "generation": 4}, "spec": {"replicas": 3}, "status": {"replicas": 7}});
        s.prepare_for_update(None, &mut spec_write, &old);
        assert_eq!(spec_write["status"], old["status"]);
        assert_eq!(spec_write["metadata"]["generation"], 5);
        let mut same_spec = json!({"metadata": {"name": "d", "generation": 4}, "spec": {"replicas": 1}});
        s.prepare_for_update(None, &mut same_spec, &old);
        assert_eq!(same_spec["metadata"]["generation"], 4);
        // Kinds without a status subresource write everything.
        let cms = resource::find("", "v1", "configmaps").unwrap();
        let mut cm = json!({"data": {"a": "b"}, "status": {"x": 1}});
        strategy(cms).prepare_for_update(None, &mut cm, &json!({}));
        assert_eq!(cm["status"]["x"], 1);
    }
}
