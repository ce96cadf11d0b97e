//! The resource registry: every kind the API serves, with what discovery, routing, storage
//! and validation need to know about it.

use serde_json::Value;

/// How an object of a kind is decoded and re-encoded through its typed form (k8s-openapi), so
/// that malformed fields are refused and unknown fields found.
pub type RoundTrip = fn(Value) -> Result<Value, serde_json::Error>;

/// The kind's JSON schema (with the definitions it references added to the generator).
pub type SchemaFn = fn(&mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Finalize,
    /// `serviceaccounts/{name}/token` (TokenRequest).
    Token,
    /// `pods/{name}/eviction` (policy/v1 Eviction).
    Eviction,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
            Subresource::Eviction => "eviction",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    /// Plural lowercase name used in paths.
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Where objects are stored: several API versions of one resource share storage
    /// (events.k8s.io/v1 events are core/v1 events).
    pub storage_group: &'static str,
    /// The version objects are stored in (autoscaling/v1 HorizontalPodAutoscalers are stored
    /// as autoscaling/v2 ones).
    pub storage_version: &'static str,
    pub storage_resource: &'static str,
    /// OpenAPI definition name of the kind (e.g. `io.k8s.api.core.v1.Pod`).
    pub definition: &'static str,
    pub round_trip: RoundTrip,
    pub schema: SchemaFn,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
    /// `pods` or `deployments.apps`, as upstream names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
    /// Whether this is the version objects are stored in (the one informers, the garbage
    /// collector and the namespace controller use); other versions are views of it.
    pub fn is_storage(&self) -> bool {
        (self.storage_group, self.storage_version, self.storage_resource) == (self.group, self.version, self.resource)
    }
    pub const VERBS: &'static [&'static str] =
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(v)?;
    serde_json::to_value(typed)
}

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscalingv1, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use Subresource::*;

macro_rules! resource {
    ($group:expr, $version:expr, $resource:expr, $singular:expr, $kind:expr, $namespaced:expr,
     $short:expr, $cat:expr, $subs:expr, $def:expr, $ty:ty) => {
        ResourceInfo {
            group: $group,
            version: $version,
            resource: $resource,
            singular: $singular,
            kind: $kind,
            namespaced: $namespaced,
            short_names: $short,
            categories: $cat,
            subresources: $subs,
            storage_group: $group,
            storage_version: $version,
            storage_resource: $resource,
            definition: $def,
            round_trip: round_trip::<$ty>,
            schema: |g| g.subschema_for::<$ty>(),
        }
    };
}

/// Declares every served resource once: the registry `all()` and the typed visit
/// `for_each_type()` both come from this list, so a new kind is one entry.
macro_rules! registry {
    ($( ($($arg:expr),* ; $ty:ty) ),* $(,)?) => {
        fn build() -> Vec<ResourceInfo> {
            vec![$( resource!($($arg),*, $ty) ),*]
        }

        /// Calls `visitor` with every served resource and its k8s-openapi type, in discovery
        /// order (for code that handles every kind alike, such as the garbage collector's
        /// informers).
        pub fn for_each_type(visitor: &mut impl TypeVisitor) {
            let mut infos = all().iter();
            $( visitor.visit::<$ty>(infos.next().expect("one info per entry")); )*
        }
    };
}

/// Visits resources with their Rust type (see [`for_each_type`]).
pub trait TypeVisitor {
    fn visit<K: crate::Object>(&mut self, info: &'static ResourceInfo);
}

registry! {
    ("", "v1", "namespaces", "namespace", "Namespace", false, &["ns"], &[], &[Status, Finalize], "io.k8s.api.core.v1.Namespace" ; core::Namespace),
    ("", "v1", "pods", "pod", "Pod", true, &["po"], &["all"], &[Status, Binding, Eviction], "io.k8s.api.core.v1.Pod" ; core::Pod),
    ("", "v1", "services", "service", "Service", true, &["svc"], &["all"], &[Status], "io.k8s.api.core.v1.Service" ; core::Service),
    ("", "v1", "endpoints", "endpoints", "Endpoints", true, &["ep"], &[], &[], "io.k8s.api.core.v1.Endpoints" ; core::Endpoints),
    ("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"], &[], &[], "io.k8s.api.core.v1.ConfigMap" ; core::ConfigMap),
    ("", "v1", "secrets", "secret", "Secret", true, &[], &[], &[], "io.k8s.api.core.v1.Secret" ; core::Secret),
    ("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], &[], &[Token], "io.k8s.api.core.v1.ServiceAccount" ; core::ServiceAccount),
    ("", "v1", "nodes", "node", "Node", false, &["no"], &[], &[Status], "io.k8s.api.core.v1.Node" ; core::Node),
    ("", "v1", "events", "event", "Event", true, &["ev"], &[], &[], "io.k8s.api.core.v1.Event" ; core::Event),
    ("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, &["pv"], &[], &[Status], "io.k8s.api.core.v1.PersistentVolume" ; core::PersistentVolume),
    ("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, &["pvc"], &[], &[Status], "io.k8s.api.core.v1.PersistentVolumeClaim" ; core::PersistentVolumeClaim),
    ("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true, &["quota"], &[], &[Status], "io.k8s.api.core.v1.ResourceQuota" ; core::ResourceQuota),
    ("", "v1", "limitranges", "limitrange", "LimitRange", true, &["limits"], &[], &[], "io.k8s.api.core.v1.LimitRange" ; core::LimitRange),
    ("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", true, &["rc"], &["all"], &[Status, Scale], "io.k8s.api.core.v1.ReplicationController" ; core::ReplicationController),
    ("apps", "v1", "deployments", "deployment", "Deployment", true, &["deploy"], &["all"], &[Status, Scale], "io.k8s.api.apps.v1.Deployment" ; apps::Deployment),
    ("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, &["rs"], &["all"], &[Status, Scale], "io.k8s.api.apps.v1.ReplicaSet" ; apps::ReplicaSet),
    ("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, &["sts"], &["all"], &[Status, Scale], "io.k8s.api.apps.v1.StatefulSet" ; apps::StatefulSet),
    ("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, &["ds"], &["all"], &[Status], "io.k8s.api.apps.v1.DaemonSet" ; apps::DaemonSet),
    ("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, &[], &[], &[], "io.k8s.api.apps.v1.ControllerRevision" ; apps::ControllerRevision),
    ("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, &["hpa"], &["all"], &[Status], "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler" ; autoscaling::HorizontalPodAutoscaler),
    ("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, &["hpa"], &["all"], &[Status], "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler" ; autoscalingv1::HorizontalPodAutoscaler),
    ("batch", "v1", "jobs", "job", "Job", true, &[], &["all"], &[Status], "io.k8s.api.batch.v1.Job" ; batch::Job),
    ("batch", "v1", "cronjobs", "cronjob", "CronJob", true, &["cj"], &["all"], &[Status], "io.k8s.api.batch.v1.CronJob" ; batch::CronJob),
    ("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, &[], &[], &[], "io.k8s.api.coordination.v1.Lease" ; coordination::Lease),
    ("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, &["pdb"], &[], &[Status], "io.k8s.api.policy.v1.PodDisruptionBudget" ; policy::PodDisruptionBudget),
    ("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", false, &["pc"], &[], &[], "io.k8s.api.scheduling.v1.PriorityClass" ; scheduling::PriorityClass),
    ("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false, &["sc"], &[], &[], "io.k8s.api.storage.v1.StorageClass" ; storage::StorageClass),
    ("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, &[], &[], &[], "io.k8s.api.discovery.v1.EndpointSlice" ; discovery::EndpointSlice),
    ("events.k8s.io", "v1", "events", "event", "Event", true, &["ev"], &[], &[], "io.k8s.api.events.v1.Event" ; events::Event),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, &[], &[], &[], "io.k8s.api.rbac.v1.ClusterRoleBinding" ; rbac::ClusterRoleBinding),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false, &[], &[], &[], "io.k8s.api.rbac.v1.ClusterRole" ; rbac::ClusterRole),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true, &[], &[], &[], "io.k8s.api.rbac.v1.RoleBinding" ; rbac::RoleBinding),
    ("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, &[], &[], &[], "io.k8s.api.rbac.v1.Role" ; rbac::Role),
}

/// Every served resource, in discovery order.
pub fn all() -> &'static [ResourceInfo] {
    static ALL: std::sync::LazyLock<Vec<ResourceInfo>> = std::sync::LazyLock::new(|| {
        let mut all = build();
        // events.k8s.io/v1 Events are stored as core/v1 Events.
        for r in all.iter_mut().filter(|r| r.group == "events.k8s.io" && r.resource == "events") {
            r.storage_group = "";
        }
        // autoscaling/v1 is a view of the v2 objects, as upstream stores them.
        for r in all.iter_mut().filter(|r| r.group == "autoscaling" && r.version == "v1") {
            r.storage_version = "v2";
        }
        all
    });
    &ALL
}

/// The resource at `group/version/resource`.
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// The resource of a k8s-openapi type.
pub fn of<K: k8s_openapi::Resource>() -> &'static ResourceInfo {
    find(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
        .unwrap_or_else(|| panic!("{} is not a served resource", K::URL_PATH_SEGMENT))
}

/// The resource serving `kind` in `group`.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.kind == kind && r.is_storage())
}

/// API groups in discovery order with their versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in all() {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_drops_unknown_and_refuses_bad_types() {
        let pods = find("", "v1", "pods").unwrap();
        let ok = serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}]},"bogus":1});
        let out = (pods.round_trip)(ok).unwrap();
        assert!(out.get("bogus").is_none());
        let bad = serde_json::json!({"metadata":{"name":"a"},"spec":{"containers":"x"}});
        assert!((pods.round_trip)(bad).is_err());
    }

    #[test]
    fn every_resource_is_visited_with_its_type() {
        struct Check(usize);
        impl TypeVisitor for Check {
            fn visit<K: crate::Object>(&mut self, info: &'static ResourceInfo) {
                assert_eq!((K::GROUP, K::KIND, K::URL_PATH_SEGMENT), (info.group, info.kind, info.resource));
                assert!(std::ptr::eq(of::<K>(), info));
                self.0 += 1;
            }
        }
        let mut check = Check(0);
        for_each_type(&mut check);
        assert_eq!(check.0, all().len());
    }

    #[test]
    fn events_share_storage() {
        let e = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!((e.storage_group, e.storage_resource), ("", "events"));
        assert_eq!(groups()[0], ("", vec!["v1"]));
    }
}
