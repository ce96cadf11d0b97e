//! Strategic-merge metadata of the built-in Kubernetes types.
//!
//! Upstream declares how a field merges with Go struct tags (`patchStrategy:"merge"
//! patchMergeKey:"name"`) and the API server reads them by reflection. Kubus has no Go
//! structs, so the tags of the kinds it serves are copied here by hand, as of Kubernetes
//! 1.32. Types are named like their OpenAPI definitions so the same table can decorate the
//! published OpenAPI documents.
//!
//! A row either carries patch metadata or leads from a struct to a child struct type that
//! (transitively) carries some, which is what lets the merge walk from a root kind down to,
//! say, `spec.template.spec.containers[].ports`. Fields absent from the table behave like
//! upstream fields without tags: objects merge key by key and lists are replaced whole.

/// How a field merges, after upstream's `patchStrategy` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// No tag: objects merge key by key, lists are replaced whole.
    #[default]
    None,
    /// `merge`: list items are merged (by merge key for objects, as a set for primitives).
    Merge,
    /// `replace`: the patch value replaces the field whole, even for objects.
    Replace,
    /// `retainKeys` on a struct, `merge,retainKeys` on a list: merges like [`Strategy::Merge`]
    /// for lists, and tells clients to send a `$retainKeys` directive so that keys dropped
    /// from a union (e.g. a volume's source) are cleared.
    RetainKeys,
}

impl Strategy {
    /// Whether items of a list with this strategy are merged rather than replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::RetainKeys)
    }
}

/// What the table says about one field of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldMeta {
    /// The struct type of the field, or of its items when it is a list, when that type
    /// has rows of its own.
    pub child_type: Option<&'static str>,
    /// Whether the field is a list.
    pub list: bool,
    /// The key identifying the items of a merging list of objects.
    pub merge_key: Option<&'static str>,
    pub strategy: Strategy,
}

/// One field of one type, with the tag strings exactly as upstream spells them.
#[derive(Clone, Copy)]
struct Row {
    ty: &'static str,
    field: &'static str,
    child: Option<&'static str>,
    list: bool,
    merge_key: Option<&'static str>,
    /// "", "merge", "merge,retainKeys", "retainKeys" or "replace".
    strategy: &'static str,
}

/// A struct-typed field that leads to a type with rows of its own.
const fn child(ty: &'static str, field: &'static str, child: &'static str) -> Row {
    Row { ty, field, child: Some(child), list: false, merge_key: None, strategy: "" }
}

/// A list without a patch strategy (replaced whole) whose items have rows of their own,
/// kept so the items' metadata is reachable when publishing OpenAPI extensions.
const fn atomic_list(ty: &'static str, field: &'static str, item: Option<&'static str>) -> Row {
    Row { ty, field, child: item, list: true, merge_key: None, strategy: "" }
}

/// A list of objects merged by `key`.
const fn keyed(ty: &'static str, field: &'static str, key: &'static str) -> Row {
    Row { ty, field, child: None, list: true, merge_key: Some(key), strategy: "merge" }
}

/// A list of objects merged by `key` whose items have rows of their own.
const fn keyed_of(ty: &'static str, field: &'static str, key: &'static str, item: &'static str) -> Row {
    Row { ty, field, child: Some(item), list: true, merge_key: Some(key), strategy: "merge" }
}

/// A list of objects merged by `key` whose items are unions cleared with `$retainKeys`.
const fn keyed_retain(ty: &'static str, field: &'static str, key: &'static str, item: Option<&'static str>) -> Row {
    Row { ty, field, child: item, list: true, merge_key: Some(key), strategy: "merge,retainKeys" }
}

/// A list of primitives merged as an ordered set.
const fn set(ty: &'static str, field: &'static str) -> Row {
    Row { ty, field, child: None, list: true, merge_key: None, strategy: "merge" }
}

/// A struct that is a union cleared with `$retainKeys`.
const fn retain_struct(ty: &'static str, field: &'static str) -> Row {
    Row { ty, field, child: None, list: false, merge_key: None, strategy: "retainKeys" }
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const POD: &str = "io.k8s.api.core.v1.Pod";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const POD_TEMPLATE: &str = "io.k8s.api.core.v1.PodTemplate";
const POD_TEMPLATE_SPEC: &str = "io.k8s.api.core.v1.PodTemplateSpec";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL_CONTAINER: &str = "io.k8s.api.core.v1.EphemeralContainer";
const CONTAINER_STATUS: &str = "io.k8s.api.core.v1.ContainerStatus";
const VOLUME: &str = "io.k8s.api.core.v1.Volume";
const EPHEMERAL_VOLUME_SOURCE: &str = "io.k8s.api.core.v1.EphemeralVolumeSource";
const PVC_TEMPLATE: &str = "io.k8s.api.core.v1.PersistentVolumeClaimTemplate";
const PVC: &str = "io.k8s.api.core.v1.PersistentVolumeClaim";
const PVC_STATUS: &str = "io.k8s.api.core.v1.PersistentVolumeClaimStatus";
const PV: &str = "io.k8s.api.core.v1.PersistentVolume";
const SERVICE: &str = "io.k8s.api.core.v1.Service";
const SERVICE_SPEC: &str = "io.k8s.api.core.v1.ServiceSpec";
const SERVICE_STATUS: &str = "io.k8s.api.core.v1.ServiceStatus";
const ENDPOINTS: &str = "io.k8s.api.core.v1.Endpoints";
const CONFIG_MAP: &str = "io.k8s.api.core.v1.ConfigMap";
const SECRET: &str = "io.k8s.api.core.v1.Secret";
const SERVICE_ACCOUNT: &str = "io.k8s.api.core.v1.ServiceAccount";
const NAMESPACE: &str = "io.k8s.api.core.v1.Namespace";
const NAMESPACE_STATUS: &str = "io.k8s.api.core.v1.NamespaceStatus";
const NODE: &str = "io.k8s.api.core.v1.Node";
const NODE_SPEC: &str = "io.k8s.api.core.v1.NodeSpec";
const NODE_STATUS: &str = "io.k8s.api.core.v1.NodeStatus";
const CORE_EVENT: &str = "io.k8s.api.core.v1.Event";
const RC: &str = "io.k8s.api.core.v1.ReplicationController";
const RC_SPEC: &str = "io.k8s.api.core.v1.ReplicationControllerSpec";
const RC_STATUS: &str = "io.k8s.api.core.v1.ReplicationControllerStatus";
const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const DEPLOYMENT_SPEC: &str = "io.k8s.api.apps.v1.DeploymentSpec";
const DEPLOYMENT_STATUS: &str = "io.k8s.api.apps.v1.DeploymentStatus";
const REPLICA_SET: &str = "io.k8s.api.apps.v1.ReplicaSet";
const REPLICA_SET_SPEC: &str = "io.k8s.api.apps.v1.ReplicaSetSpec";
const REPLICA_SET_STATUS: &str = "io.k8s.api.apps.v1.ReplicaSetStatus";
const STATEFUL_SET: &str = "io.k8s.api.apps.v1.StatefulSet";
const STATEFUL_SET_SPEC: &str = "io.k8s.api.apps.v1.StatefulSetSpec";
const STATEFUL_SET_STATUS: &str = "io.k8s.api.apps.v1.StatefulSetStatus";
const DAEMON_SET: &str = "io.k8s.api.apps.v1.DaemonSet";
const DAEMON_SET_SPEC: &str = "io.k8s.api.apps.v1.DaemonSetSpec";
const DAEMON_SET_STATUS: &str = "io.k8s.api.apps.v1.DaemonSetStatus";
const JOB: &str = "io.k8s.api.batch.v1.Job";
const JOB_SPEC: &str = "io.k8s.api.batch.v1.JobSpec";
const JOB_STATUS: &str = "io.k8s.api.batch.v1.JobStatus";
const JOB_TEMPLATE_SPEC: &str = "io.k8s.api.batch.v1.JobTemplateSpec";
const CRON_JOB: &str = "io.k8s.api.batch.v1.CronJob";
const CRON_JOB_SPEC: &str = "io.k8s.api.batch.v1.CronJobSpec";
const LEASE: &str = "io.k8s.api.coordination.v1.Lease";
const EVENTS_EVENT: &str = "io.k8s.api.events.v1.Event";

/// Kinds whose patches are merged with this table, by API group and kind.
const ROOTS: &[(&str, &str, &str)] = &[
    ("", "Pod", POD),
    ("", "PodTemplate", POD_TEMPLATE),
    ("", "Service", SERVICE),
    ("", "Endpoints", ENDPOINTS),
    ("", "ConfigMap", CONFIG_MAP),
    ("", "Secret", SECRET),
    ("", "ServiceAccount", SERVICE_ACCOUNT),
    ("", "Namespace", NAMESPACE),
    ("", "Node", NODE),
    ("", "Event", CORE_EVENT),
    ("", "ReplicationController", RC),
    ("", "PersistentVolumeClaim", PVC),
    ("", "PersistentVolume", PV),
    ("apps", "Deployment", DEPLOYMENT),
    ("apps", "ReplicaSet", REPLICA_SET),
    ("apps", "StatefulSet", STATEFUL_SET),
    ("apps", "DaemonSet", DAEMON_SET),
    ("batch", "Job", JOB),
    ("batch", "CronJob", CRON_JOB),
    ("coordination.k8s.io", "Lease", LEASE),
    ("events.k8s.io", "Event", EVENTS_EVENT),
];

/// The rows of a kind with a spec and a status of its own.
const fn object(ty: &'static str, spec: &'static str, status: &'static str) -> [Row; 3] {
    [child(ty, "metadata", META), child(ty, "spec", spec), child(ty, "status", status)]
}

/// The rows of a workload kind: an object whose spec holds a pod template and whose status
/// holds conditions merged by type.
const fn workload(ty: &'static str, spec: &'static str, status: &'static str) -> [Row; 5] {
    let [metadata, spec_row, status_row] = object(ty, spec, status);
    [metadata, spec_row, status_row, child(spec, "template", POD_TEMPLATE_SPEC), keyed(status, "conditions", "type")]
}

const PARTS: &[&[Row]] = &[
    // metav1.ObjectMeta. managedFields carries no tag upstream, so it is replaced whole.
    &[keyed(META, "ownerReferences", "uid"), set(META, "finalizers"), atomic_list(META, "managedFields", None)],
    // core/v1 Pod and the pod template embedded by the workload kinds.
    &object(POD, POD_SPEC, POD_STATUS),
    &[
        child(POD_TEMPLATE, "metadata", META),
        child(POD_TEMPLATE, "template", POD_TEMPLATE_SPEC),
        child(POD_TEMPLATE_SPEC, "metadata", META),
        child(POD_TEMPLATE_SPEC, "spec", POD_SPEC),
        keyed_retain(POD_SPEC, "volumes", "name", Some(VOLUME)),
        keyed_of(POD_SPEC, "initContainers", "name", CONTAINER),
        keyed_of(POD_SPEC, "containers", "name", CONTAINER),
        keyed_of(POD_SPEC, "ephemeralContainers", "name", EPHEMERAL_CONTAINER),
        keyed(POD_SPEC, "imagePullSecrets", "name"),
        keyed(POD_SPEC, "hostAliases", "ip"),
        keyed(POD_SPEC, "topologySpreadConstraints", "topologyKey"),
        keyed(POD_SPEC, "schedulingGates", "name"),
        keyed_retain(POD_SPEC, "resourceClaims", "name", None),
        child(VOLUME, "ephemeral", EPHEMERAL_VOLUME_SOURCE),
        child(EPHEMERAL_VOLUME_SOURCE, "volumeClaimTemplate", PVC_TEMPLATE),
        child(PVC_TEMPLATE, "metadata", META),
        keyed(CONTAINER, "ports", "containerPort"),
        keyed(CONTAINER, "env", "name"),
        keyed(CONTAINER, "volumeMounts", "mountPath"),
        keyed(CONTAINER, "volumeDevices", "devicePath"),
        keyed(EPHEMERAL_CONTAINER, "ports", "containerPort"),
        keyed(EPHEMERAL_CONTAINER, "env", "name"),
        keyed(EPHEMERAL_CONTAINER, "volumeMounts", "mountPath"),
        keyed(EPHEMERAL_CONTAINER, "volumeDevices", "devicePath"),
        keyed(POD_STATUS, "conditions", "type"),
        keyed(POD_STATUS, "hostIPs", "ip"),
        keyed(POD_STATUS, "podIPs", "ip"),
        atomic_list(POD_STATUS, "initContainerStatuses", Some(CONTAINER_STATUS)),
        atomic_list(POD_STATUS, "containerStatuses", Some(CONTAINER_STATUS)),
        atomic_list(POD_STATUS, "ephemeralContainerStatuses", Some(CONTAINER_STATUS)),
        keyed_retain(POD_STATUS, "resourceClaimStatuses", "name", None),
        keyed(CONTAINER_STATUS, "volumeMounts", "mountPath"),
        keyed(CONTAINER_STATUS, "allocatedResourcesStatus", "name"),
    ],
    // core/v1 Service, Endpoints, ConfigMap, Secret, ServiceAccount, Namespace, Node, Event.
    &object(SERVICE, SERVICE_SPEC, SERVICE_STATUS),
    &[
        keyed(SERVICE_SPEC, "ports", "port"),
        keyed(SERVICE_STATUS, "conditions", "type"),
        child(ENDPOINTS, "metadata", META),
        child(CONFIG_MAP, "metadata", META),
        child(SECRET, "metadata", META),
        child(SERVICE_ACCOUNT, "metadata", META),
        keyed(SERVICE_ACCOUNT, "secrets", "name"),
        child(NAMESPACE, "metadata", META),
        child(NAMESPACE, "status", NAMESPACE_STATUS),
        keyed(NAMESPACE_STATUS, "conditions", "type"),
    ],
    &object(NODE, NODE_SPEC, NODE_STATUS),
    &[
        set(NODE_SPEC, "podCIDRs"),
        keyed(NODE_STATUS, "conditions", "type"),
        keyed(NODE_STATUS, "addresses", "type"),
        child(CORE_EVENT, "metadata", META),
    ],
    // core/v1 ReplicationController and persistent volumes.
    &workload(RC, RC_SPEC, RC_STATUS),
    &[
        child(PVC, "metadata", META),
        child(PVC, "status", PVC_STATUS),
        keyed(PVC_STATUS, "conditions", "type"),
        child(PV, "metadata", META),
    ],
    // apps/v1.
    &workload(DEPLOYMENT, DEPLOYMENT_SPEC, DEPLOYMENT_STATUS),
    &[retain_struct(DEPLOYMENT_SPEC, "strategy")],
    &workload(REPLICA_SET, REPLICA_SET_SPEC, REPLICA_SET_STATUS),
    &workload(STATEFUL_SET, STATEFUL_SET_SPEC, STATEFUL_SET_STATUS),
    &[atomic_list(STATEFUL_SET_SPEC, "volumeClaimTemplates", Some(PVC))],
    &workload(DAEMON_SET, DAEMON_SET_SPEC, DAEMON_SET_STATUS),
    // batch/v1.
    &workload(JOB, JOB_SPEC, JOB_STATUS),
    &[
        child(CRON_JOB, "metadata", META),
        child(CRON_JOB, "spec", CRON_JOB_SPEC),
        child(CRON_JOB_SPEC, "jobTemplate", JOB_TEMPLATE_SPEC),
        child(JOB_TEMPLATE_SPEC, "metadata", META),
        child(JOB_TEMPLATE_SPEC, "spec", JOB_SPEC),
    ],
    // coordination.k8s.io/v1 and events.k8s.io/v1 declare no tags beyond ObjectMeta's.
    &[child(LEASE, "metadata", META), child(EVENTS_EVENT, "metadata", META)],
];

const TABLE: &[Row] = &flatten::<{ row_count(PARTS) }>(PARTS);

const fn row_count(parts: &[&[Row]]) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < parts.len() {
        n += parts[i].len();
        i += 1;
    }
    n
}

/// The parts of the table as one array, built at compile time.
const fn flatten<const N: usize>(parts: &[&[Row]]) -> [Row; N] {
    let mut rows = [child("", "", ""); N];
    let (mut n, mut i) = (0, 0);
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            rows[n] = parts[i][j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    rows
}

/// The table's type name for the root of objects of `kind` in API `group` ("" for core).
pub fn root_type(group: &str, kind: &str) -> Option<&'static str> {
    ROOTS.iter().find(|(g, k, _)| *g == group && *k == kind).map(|(_, _, ty)| *ty)
}

/// What the table knows about `field` of `type_name`; `None` when it knows nothing, in
/// which case the field merges with the defaults (objects recurse, lists are replaced).
pub fn field(type_name: &str, field: &str) -> Option<FieldMeta> {
    TABLE.iter().find(|r| r.ty == type_name && r.field == field).map(|r| FieldMeta {
        child_type: r.child,
        list: r.list,
        merge_key: r.merge_key,
        strategy: parse_strategy(r.strategy),
    })
}

/// Every field with a patch strategy, as `(type, field, merge key, strategy)` with the
/// strategy spelled as upstream's `x-kubernetes-patch-strategy` OpenAPI extension.
pub fn extensions() -> impl Iterator<Item = (&'static str, &'static str, Option<&'static str>, &'static str)> {
    TABLE.iter().filter(|r| !r.strategy.is_empty()).map(|r| (r.ty, r.field, r.merge_key, r.strategy))
}

fn parse_strategy(s: &str) -> Strategy {
    match s {
        "merge" => Strategy::Merge,
        "replace" => Strategy::Replace,
        "retainKeys" | "merge,retainKeys" => Strategy::RetainKeys,
        _ => Strategy::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_resolve() {
        assert_eq!(root_type("apps", "Deployment"), Some("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(root_type("", "Pod"), Some("io.k8s.api.core.v1.Pod"));
        assert_eq!(root_type("events.k8s.io", "Event"), Some("io.k8s.api.events.v1.Event"));
        assert_eq!(root_type("", "Event"), Some("io.k8s.api.core.v1.Event"));
        assert_eq!(root_type("coordination.k8s.io", "Lease"), Some(LEASE));
        assert_eq!(root_type("", "Deployment"), None);
        assert_eq!(root_type("example.com", "Widget"), None);
    }

    #[test]
    fn navigation_reaches_container_ports() {
        let spec = field(DEPLOYMENT, "spec").and_then(|f| f.child_type).unwrap();
        let template = field(spec, "template").and_then(|f| f.child_type).unwrap();
        let pod_spec = field(template, "spec").and_then(|f| f.child_type).unwrap();
        let containers = field(pod_spec, "containers").unwrap();
        assert!(containers.list);
        assert_eq!(containers.merge_key, Some("name"));
        assert_eq!(containers.strategy, Strategy::Merge);
        let ports = field(containers.child_type.unwrap(), "ports").unwrap();
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(field(pod_spec, "volumes").unwrap().strategy, Strategy::RetainKeys);
        assert_eq!(field(pod_spec, "tolerations"), None);
    }

    #[test]
    fn every_child_type_has_rows_and_every_root_exists() {
        for r in TABLE {
            if let Some(c) = r.child {
                assert!(TABLE.iter().any(|o| o.ty == c), "{c} (from {}.{}) has no rows", r.ty, r.field);
            }
            if r.merge_key.is_some() {
                assert!(r.list && r.strategy.starts_with("merge"), "{}.{}", r.ty, r.field);
            }
        }
        for (_, _, ty) in ROOTS {
            assert!(TABLE.iter().any(|r| r.ty == *ty), "{ty} has no rows");
        }
        // A field appears once, or lookups would silently pick the first row.
        for (i, r) in TABLE.iter().enumerate() {
            assert!(!TABLE[..i].iter().any(|o| o.ty == r.ty && o.field == r.field), "{}.{} twice", r.ty, r.field);
        }
    }

    #[test]
    fn workloads_lead_to_their_pod_template_and_merge_conditions_by_type() {
        for kind in ["ReplicationController", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"] {
            let ty = ROOTS.iter().find(|(_, k, _)| *k == kind).map(|(_, _, ty)| *ty).unwrap();
            assert_eq!(field(ty, "metadata").and_then(|f| f.child_type), Some(META), "{kind}");
            let spec = field(ty, "spec").and_then(|f| f.child_type).unwrap();
            assert_eq!(field(spec, "template").and_then(|f| f.child_type), Some(POD_TEMPLATE_SPEC), "{kind}");
            let status = field(ty, "status").and_then(|f| f.child_type).unwrap();
            let conditions = field(status, "conditions").unwrap();
            assert_eq!((conditions.merge_key, conditions.strategy), (Some("type"), Strategy::Merge), "{kind}");
        }
        assert_eq!(TABLE.len(), PARTS.iter().map(|p| p.len()).sum::<usize>());
    }

    #[test]
    fn extensions_use_upstream_spelling() {
        let ext: Vec<_> = extensions().collect();
        assert!(ext.contains(&(POD_SPEC, "volumes", Some("name"), "merge,retainKeys")));
        assert!(ext.contains(&(DEPLOYMENT_SPEC, "strategy", None, "retainKeys")));
        assert!(ext.contains(&(META, "finalizers", None, "merge")));
        assert!(ext.contains(&(META, "ownerReferences", Some("uid"), "merge")));
        assert!(!ext.iter().any(|e| e.1 == "managedFields" || e.1 == "spec"));
    }
}
