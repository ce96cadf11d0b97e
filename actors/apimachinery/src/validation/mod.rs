//! Validation and defaulting of API objects as Kubernetes does them, over `serde_json::Value`.
//!
//! The server runs [`apply_defaults`] on every incoming object and then one of the
//! `validate_*` functions; like upstream, validation expects a defaulted object, so fields
//! the defaulter always fills (a pod's `restartPolicy`, a service's `sessionAffinity`, ...)
//! are required. Causes carry upstream's field paths and messages, ready for
//! `StatusError::invalid`.
//!
//! Kinds covered: core Namespace, Pod, Service, Endpoints, ConfigMap, Secret,
//! ServiceAccount, Node, Event and ReplicationController; events.k8s.io Event;
//! coordination.k8s.io Lease; apps Deployment, ReplicaSet, DaemonSet, StatefulSet and
//! ControllerRevision;
//! batch Job and CronJob; PersistentVolume, PersistentVolumeClaim and storage.k8s.io
//! StorageClass; policy PodDisruptionBudget; autoscaling HorizontalPodAutoscaler; scheduling.k8s.io
//! PriorityClass; ResourceQuota and LimitRange. Other kinds get the generic metadata checks only.

mod apps;
mod autoscaling;
pub mod batch;
mod config;
mod defaults;
mod meta;
mod misc;
pub mod names;
mod pod;
mod policy;
mod quota;
mod rbac;
pub mod scheduling;
mod service;
mod storage;
#[cfg(test)]
mod tests;
mod util;

use serde_json::Value;

use crate::status::Cause;
use meta::{NameRule, Scope};

pub use crate::quantity::{self, parse_quantity, Quantity};
pub use defaults::{apply_defaults, carry_over_for_update};
pub use names::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_cidr,
    is_valid_ip, is_valid_label_value, is_valid_port_name,
};

/// The kinds this module knows, with the group spelled canonically ("" for core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Namespace,
    Pod,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Node,
    Event,
    EventsV1Event,
    Lease,
    Deployment,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    PriorityClass,
    ResourceQuota,
    LimitRange,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

fn kind_of(group: &str, kind: &str) -> Option<Kind> {
    let k = match (group, kind) {
        ("" | "core", "Namespace") => Kind::Namespace,
        ("" | "core", "Pod") => Kind::Pod,
        ("" | "core", "Service") => Kind::Service,
        ("" | "core", "Endpoints") => Kind::Endpoints,
        ("" | "core", "ConfigMap") => Kind::ConfigMap,
        ("" | "core", "Secret") => Kind::Secret,
        ("" | "core", "ServiceAccount") => Kind::ServiceAccount,
        ("" | "core", "Node") => Kind::Node,
        ("" | "core", "Event") => Kind::Event,
        ("events.k8s.io", "Event") => Kind::EventsV1Event,
        ("coordination.k8s.io", "Lease") => Kind::Lease,
        ("apps", "Deployment") => Kind::Deployment,
        ("apps", "ReplicaSet") => Kind::ReplicaSet,
        ("" | "core", "ReplicationController") => Kind::ReplicationController,
        ("batch", "Job") => Kind::Job,
        ("batch", "CronJob") => Kind::CronJob,
        ("apps", "DaemonSet") => Kind::DaemonSet,
        ("apps", "StatefulSet") => Kind::StatefulSet,
        ("apps", "ControllerRevision") => Kind::ControllerRevision,
        ("" | "core", "PersistentVolume") => Kind::PersistentVolume,
        ("" | "core", "PersistentVolumeClaim") => Kind::PersistentVolumeClaim,
        ("storage.k8s.io", "StorageClass") => Kind::StorageClass,
        ("policy", "PodDisruptionBudget") => Kind::PodDisruptionBudget,
        ("autoscaling", "HorizontalPodAutoscaler") => Kind::HorizontalPodAutoscaler,
        ("scheduling.k8s.io", "PriorityClass") => Kind::PriorityClass,
        ("" | "core", "ResourceQuota") => Kind::ResourceQuota,
        ("" | "core", "LimitRange") => Kind::LimitRange,
        ("rbac.authorization.k8s.io", "Role") => Kind::Role,
        ("rbac.authorization.k8s.io", "ClusterRole") => Kind::ClusterRole,
        ("rbac.authorization.k8s.io", "RoleBinding") => Kind::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Kind::ClusterRoleBinding,
        _ => return None,
    };
    Some(k)
}

/// Whether objects of a known kind live in a namespace; `None` for kinds this module does
/// not know.
pub fn is_namespaced(group: &str, kind: &str) -> Option<bool> {
    kind_of(group, kind).map(|k| {
        !matches!(
            k,
            Kind::Namespace
                | Kind::Node
                | Kind::PersistentVolume
                | Kind::StorageClass
                | Kind::PriorityClass
                | Kind::ClusterRole
                | Kind::ClusterRoleBinding
        )
    })
}

/// Everything checked on create. Expects a defaulted object whose `generateName` has
/// already been turned into a name.
pub fn validate_create(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let causes = match kind_of(group, kind) {
        Some(k) => validate_kind(k, obj),
        None => meta::validate_object_meta(obj, Scope::Unknown, NameRule::PathSegment),
    };
    util::dedup(causes)
}

fn validate_kind(k: Kind, obj: &Value) -> Vec<Cause> {
    match k {
        Kind::Namespace => misc::validate_namespace(obj),
        Kind::Pod => pod::validate_pod_create(obj),
        Kind::Service => service::validate_service(obj),
        Kind::Endpoints => service::validate_endpoints(obj),
        Kind::ConfigMap => config::validate_config_map(obj),
        Kind::Secret => config::validate_secret(obj),
        Kind::ServiceAccount => misc::validate_service_account(obj),
        Kind::Node => misc::validate_node(obj),
        Kind::Event => misc::validate_event(obj, false),
        Kind::EventsV1Event => misc::validate_event(obj, true),
        Kind::Lease => misc::validate_lease(obj),
        Kind::Deployment => apps::validate_deployment(obj),
        Kind::ReplicaSet => apps::validate_replica_set(obj),
        Kind::ReplicationController => apps::validate_replication_controller(obj),
        Kind::Job => batch::validate_job(obj),
        Kind::CronJob => batch::validate_cron_job(obj),
        Kind::DaemonSet => apps::validate_daemon_set(obj),
        Kind::StatefulSet => apps::validate_stateful_set(obj),
        Kind::ControllerRevision => apps::validate_controller_revision(obj),
        Kind::PersistentVolume => storage::validate_persistent_volume(obj),
        Kind::PersistentVolumeClaim => storage::validate_persistent_volume_claim(obj),
        Kind::StorageClass => storage::validate_storage_class(obj),
        Kind::PodDisruptionBudget => policy::validate_pod_disruption_budget(obj),
        Kind::HorizontalPodAutoscaler => autoscaling::validate_horizontal_pod_autoscaler(obj),
        Kind::PriorityClass => scheduling::validate_priority_class(obj),
        Kind::ResourceQuota => quota::validate_resource_quota(obj),
        Kind::LimitRange => quota::validate_limit_range(obj),
        Kind::Role => rbac::validate_role(obj, true),
        Kind::ClusterRole => rbac::validate_role(obj, false),
        Kind::RoleBinding => rbac::validate_binding(obj, true),
        Kind::ClusterRoleBinding => rbac::validate_binding(obj, false),
    }
}

/// Everything checked on create, applied to `new`, plus what may not change from `old`.
pub fn validate_update(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<Cause> {
    let Some(k) = kind_of(group, kind) else {
        let mut causes = meta::validate_object_meta_update(new, old);
        causes.extend(meta::validate_object_meta(new, Scope::Unknown, NameRule::PathSegment));
        return util::dedup(causes);
    };
    let mut causes = meta::validate_object_meta_update(new, old);
    causes.extend(match k {
        Kind::Pod => pod::validate_pod_update(new, old),
        Kind::Service => service::validate_service_update(new, old),
        Kind::ConfigMap => config::validate_config_map_update(new, old),
        Kind::Secret => config::validate_secret_update(new, old),
        Kind::Node => misc::validate_node_update(new, old),
        // Core events only ever get the legacy checks, on update as on create.
        Kind::Event => misc::validate_event(new, false),
        Kind::EventsV1Event => misc::validate_event_update(new, old),
        Kind::ControllerRevision => apps::validate_controller_revision_update(new, old),
        Kind::StatefulSet => {
            let mut c = apps::selector_immutable(new, old);
            c.extend(apps::validate_stateful_set_update(new, old));
            c
        }
        Kind::PersistentVolume => storage::validate_persistent_volume_update(new, old),
        Kind::PersistentVolumeClaim => storage::validate_persistent_volume_claim_update(new, old),
        Kind::StorageClass => storage::validate_storage_class_update(new, old),
        Kind::PodDisruptionBudget | Kind::HorizontalPodAutoscaler => validate_kind(k, new),
        Kind::PriorityClass => scheduling::validate_priority_class_update(new, old),
        Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet => {
            let mut c = apps::selector_immutable(new, old);
            c.extend(validate_kind(k, new));
            c
        }
        // Upstream resets a namespace's finalizers and status from the stored object on a
        // plain update, so only metadata and the name rules apply.
        Kind::Namespace => meta::validate_object_meta(new, Scope::Cluster, NameRule::Dns1123Label),
        Kind::Endpoints | Kind::ServiceAccount | Kind::Lease | Kind::ReplicationController => validate_kind(k, new),
        Kind::Job => batch::validate_job_update(new, old),
        Kind::CronJob => validate_kind(k, new),
        Kind::ResourceQuota => quota::validate_resource_quota_update(new, old),
        Kind::LimitRange | Kind::Role | Kind::ClusterRole => validate_kind(k, new),
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            let mut c = validate_kind(k, new);
            c.extend(rbac::role_ref_immutable(new, old));
            c
        }
    });
    util::dedup(causes)
}

/// Checks for writes to the `status` subresource: metadata immutability and contents, and
/// the sanity of the status itself.
pub fn validate_status_update(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = meta::validate_object_meta_update(new, old);
    causes.extend(meta::validate_meta_content(util::sub(new, "metadata")));
    if let Some(k) = kind_of(group, kind) {
        causes.extend(match k {
            Kind::Pod => pod::validate_pod_status_update(new, old),
            Kind::Service => service::validate_service_status(new),
            Kind::Namespace => misc::validate_namespace_status(new),
            Kind::Node => misc::node_status(new),
            Kind::Deployment => apps::validate_deployment_status(new, old),
            Kind::ReplicaSet | Kind::ReplicationController => apps::validate_replica_set_status(new),
            Kind::Job => batch::validate_job_status(new),
            Kind::CronJob => batch::validate_cron_job_status(new),
            Kind::DaemonSet => apps::validate_daemon_set_status(new),
            Kind::StatefulSet => apps::validate_stateful_set_status(new),
            Kind::PodDisruptionBudget => policy::validate_pod_disruption_budget_status(new),
            Kind::HorizontalPodAutoscaler => autoscaling::validate_horizontal_pod_autoscaler_status(new),
            Kind::ResourceQuota => quota::validate_resource_quota_status(new),
            _ => Vec::new(),
        });
    }
    util::dedup(causes)
}
