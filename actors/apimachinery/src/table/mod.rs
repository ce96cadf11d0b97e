//! Server-side table printers: the columns and cells `kubectl get` shows when
//! it asks for `application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Column names, cell types and cell text follow the upstream apiserver
//! printers of Kubernetes 1.32 so that kubectl renders the same output it
//! would against a real cluster. The apiserver always fills in the wide
//! (priority 1) columns and kubectl hides them unless `-o wide` is given, so
//! [`cells`] returns one value for every column of [`column_definitions`].
//! Resources without a dedicated printer get upstream's default table
//! (`Name`, `Created At`).

mod apps;
mod autoscaling;
mod batch;
mod clock;
mod corev1;
mod event;
mod pod;
mod policy;
mod rbac;
mod scheduling;
mod selector;
mod storage;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde_json::{json, Value};

use clock::format_rfc3339;
pub use clock::human_duration;

/// `metav1.TableColumnDefinition` objects for `resource` (plural, lower
/// case) in API `group` (`""` for the core group).
pub fn column_definitions(group: &str, resource: &str) -> Vec<Value> {
    printer(group, resource)
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The cells of one table row for `obj`, in the order of
/// [`column_definitions`]; ages are measured against `now`.
pub fn cells(group: &str, resource: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
    (printer(group, resource).cells)(obj, now)
}

/// `metav1.TableRowCondition`s for the row: upstream marks pods that have
/// finished (Succeeded or Failed) as `Completed`; other rows have none.
pub fn row_conditions(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
    if (group, resource) != ("", "pods") {
        return Vec::new();
    }
    let (reason, message) = match text(obj, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "All containers of the pod exited successfully."),
        "Failed" => ("Failed", "The pod has terminated with a failure."),
        _ => return Vec::new(),
    };
    vec![json!({
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    })]
}

/// How rows of one resource print: its columns and the cells of a row.
struct Printer {
    group: &'static str,
    resource: &'static str,
    columns: &'static [Column],
    cells: fn(&Value, SystemTime) -> Vec<Value>,
}

impl Printer {
    const fn new(
        group: &'static str,
        resource: &'static str,
        columns: &'static [Column],
        cells: fn(&Value, SystemTime) -> Vec<Value>,
    ) -> Self {
        Printer { group, resource, columns, cells }
    }
}

static PRINTERS: &[Printer] = &[
    Printer::new("", "pods", POD_COLUMNS, pod::cells),
    Printer::new("", "services", SERVICE_COLUMNS, corev1::service),
    Printer::new("", "endpoints", ENDPOINTS_COLUMNS, corev1::endpoints),
    Printer::new("", "namespaces", NAMESPACE_COLUMNS, corev1::namespace),
    Printer::new("", "nodes", NODE_COLUMNS, corev1::node),
    Printer::new("", "configmaps", CONFIG_MAP_COLUMNS, corev1::config_map),
    Printer::new("", "secrets", SECRET_COLUMNS, corev1::secret),
    Printer::new("", "serviceaccounts", SERVICE_ACCOUNT_COLUMNS, corev1::service_account),
    Printer::new("", "events", EVENT_COLUMNS, |obj, now| event::cells(obj, event::Api::Core, now)),
    Printer::new("events.k8s.io", "events", EVENT_COLUMNS, |obj, now| event::cells(obj, event::Api::Events, now)),
    Printer::new("coordination.k8s.io", "leases", LEASE_COLUMNS, corev1::lease),
    Printer::new("apps", "deployments", DEPLOYMENT_COLUMNS, apps::deployment),
    Printer::new("apps", "replicasets", REPLICA_SET_COLUMNS, apps::replica_set),
    Printer::new("", "replicationcontrollers", REPLICA_SET_COLUMNS, apps::replication_controller),
    Printer::new("apps", "daemonsets", DAEMON_SET_COLUMNS, apps::daemon_set),
    Printer::new("apps", "statefulsets", STATEFUL_SET_COLUMNS, apps::stateful_set),
    Printer::new("apps", "controllerrevisions", CONTROLLER_REVISION_COLUMNS, apps::controller_revision),
    Printer::new("batch", "jobs", JOB_COLUMNS, batch::job),
    Printer::new("", "persistentvolumes", PV_COLUMNS, storage::persistent_volume),
    Printer::new("", "persistentvolumeclaims", PVC_COLUMNS, storage::persistent_volume_claim),
    Printer::new("storage.k8s.io", "storageclasses", STORAGE_CLASS_COLUMNS, storage::storage_class),
    Printer::new("policy", "poddisruptionbudgets", PDB_COLUMNS, policy::pod_disruption_budget),
    Printer::new("scheduling.k8s.io", "priorityclasses", PRIORITY_CLASS_COLUMNS, scheduling::priority_class),
    Printer::new("batch", "cronjobs", CRON_JOB_COLUMNS, batch::cron_job),
    Printer::new("autoscaling", "horizontalpodautoscalers", HPA_COLUMNS, autoscaling::horizontal_pod_autoscaler),
    Printer::new("", "resourcequotas", RESOURCE_QUOTA_COLUMNS, corev1::resource_quota),
    Printer::new("rbac.authorization.k8s.io", "rolebindings", BINDING_COLUMNS, rbac::binding),
    Printer::new("rbac.authorization.k8s.io", "clusterrolebindings", BINDING_COLUMNS, rbac::binding),
];

const BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("Role", "string", "The role the binding grants, as kind/name."),
    AGE,
    wide("Users", "string", "Users the binding applies to."),
    wide("Groups", "string", "Groups the binding applies to."),
    wide("ServiceAccounts", "string", "ServiceAccounts the binding applies to, as namespace:name."),
];

/// Upstream's default table, for resources without a printer of their own.
static DEFAULT_PRINTER: Printer = Printer::new("", "", DEFAULT_COLUMNS, |obj, _| {
    vec![json!(text(obj, &["metadata", "name"])), json!(created_at(obj))]
});

fn printer(group: &str, resource: &str) -> &'static Printer {
    PRINTERS.iter().find(|p| p.group == group && p.resource == resource).unwrap_or(&DEFAULT_PRINTER)
}

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

/// A default-priority column.
const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", priority: 0, description }
}

/// A column kubectl shows only with `-o wide`.
const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", priority: 1, description }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name of the object, unique among objects of its kind in its namespace \
                  (or in the cluster when the kind is not namespaced).",
};
const AGE: Column = col("Age", "string", "Time since the object was created, from metadata.creationTimestamp.");
const CONTAINERS: Column = wide("Containers", "string", "Container names of the pod template, comma separated.");
const IMAGES: Column =
    wide("Images", "string", "Container images of the pod template, comma separated, in container order.");

const DEFAULT_COLUMNS: &[Column] =
    &[NAME, col("Created At", "date", "When the object was created (metadata.creationTimestamp), RFC 3339 in UTC.")];

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready containers out of all containers that count towards readiness."),
    col("Status", "string", "Summary of the pod phase and the state of its containers."),
    col("Restarts", "string", "Total container restarts, and how long ago the most recent restart happened."),
    AGE,
    wide("IP", "string", "Primary IP address assigned to the pod."),
    wide("Node", "string", "Node the pod is bound to."),
    wide("Nominated Node", "string", "Node the scheduler nominated after preempting other pods."),
    wide("Readiness Gates", "string", "Readiness gate conditions that are True, out of all gates."),
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
    col("Cluster-IP", "string", "Virtual IP allocated to the service inside the cluster."),
    col("External-IP", "string", "Addresses the service is reachable on from outside the cluster."),
    col("Port(s)", "string", "Service ports as port[:nodePort]/protocol."),
    AGE,
    wide("Selector", "string", "Labels of the pods that back the service."),
];

const ENDPOINTS_COLUMNS: &[Column] =
    &[NAME, col("Endpoints", "string", "First few ready address:port pairs of the endpoints."), AGE];

const NAMESPACE_COLUMNS: &[Column] = &[NAME, col("Status", "string", "Lifecycle phase of the namespace."), AGE];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Readiness of the node and whether it accepts new pods."),
    col("Roles", "string", "Roles taken from the node-role.kubernetes.io/* labels."),
    AGE,
    col("Version", "string", "Kubelet version reported by the node."),
    wide("Internal-IP", "string", "First InternalIP address of the node."),
    wide("External-IP", "string", "First ExternalIP address of the node."),
    wide("OS-Image", "string", "Operating system image reported by the node."),
    wide("Kernel-Version", "string", "Kernel version reported by the node."),
    wide("Container-Runtime", "string", "Container runtime name and version reported by the node."),
];

const CONFIG_MAP_COLUMNS: &[Column] = &[NAME, col("Data", "string", "Number of keys in data and binaryData."), AGE];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "Type of the secret, which constrains its keys."),
    col("Data", "string", "Number of keys in data."),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] =
    &[NAME, col("Secrets", "string", "Number of secrets listed on the service account."), AGE];

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "Time since the event was last observed."),
    col("Type", "string", "Event type, Normal or Warning."),
    col("Reason", "string", "Short machine-readable reason for the event."),
    col("Object", "string", "Object the event is about, as kind/name."),
    wide("Subobject", "string", "Field path of the part of the object the event is about."),
    wide("Source", "string", "Component, and host or instance, that reported the event."),
    col("Message", "string", "Human-readable description of the event."),
    wide("First Seen", "string", "Time since the event was first observed."),
    wide("Count", "string", "How many times the event has occurred."),
    Column { priority: 1, ..NAME },
];

const LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", "string", "Identity of the current holder of the lease."), AGE];

/// The columns of a workload: its name, three replica counts and its age, then in wide
/// output the containers and images of its pod template and its selector.
const fn workload_columns(counts: [Column; 3], selector: &'static str) -> [Column; 8] {
    let [first, second, third] = counts;
    [NAME, first, second, third, AGE, CONTAINERS, IMAGES, wide("Selector", "string", selector)]
}

const DEPLOYMENT_COLUMNS: &[Column] = &workload_columns(
    [
        col("Ready", "string", "Ready pods out of the desired number of pods."),
        col("Up-to-date", "string", "Pods that run the latest pod template."),
        col("Available", "string", "Pods that have been ready for at least minReadySeconds."),
    ],
    "Label selector for the pods the deployment manages.",
);

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Nodes that should run the daemon pod."),
    col("Current", "integer", "Nodes that run the daemon pod and should."),
    col("Ready", "integer", "Nodes whose daemon pod is ready."),
    col("Up-to-date", "integer", "Nodes whose daemon pod runs the current template."),
    col("Available", "integer", "Nodes whose daemon pod has been ready for minReadySeconds."),
    col("Node Selector", "string", "The pod template's node selector."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", "Label selector for the pods the daemon set manages."),
];

const STATEFUL_SET_COLUMNS: &[Column] =
    &[NAME, col("Ready", "string", "Ready pods out of the desired number of pods."), AGE, CONTAINERS, IMAGES];

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "The object whose history the revision is part of."),
    col("Revision", "integer", "The revision's number in that history."),
    AGE,
];

const PV_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", "The volume's size."),
    col("Access Modes", "string", "How the volume can be mounted (RWO, ROX, RWX, RWOP)."),
    col("Reclaim Policy", "string", "What happens to the volume when its claim is released."),
    col("Status", "string", "The volume's phase."),
    col("Claim", "string", "The claim bound to the volume, namespace/name."),
    col("StorageClass", "string", "The volume's storage class."),
    col("VolumeAttributesClass", "string", "The volume's attributes class."),
    col("Reason", "string", "Why the volume is in its phase."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The claim's phase."),
    col("Volume", "string", "The volume bound to the claim."),
    col("Capacity", "string", "The bound volume's size."),
    col("Access Modes", "string", "How the bound volume can be mounted."),
    col("StorageClass", "string", "The claim's storage class."),
    col("VolumeAttributesClass", "string", "The claim's attributes class."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "Who makes volumes of the class."),
    col("ReclaimPolicy", "string", "What happens to a released volume of the class."),
    col("VolumeBindingMode", "string", "When claims of the class are bound."),
    col("AllowVolumeExpansion", "string", "Whether claims of the class may grow."),
    AGE,
];

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
];

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
    col("Allowed Disruptions", "integer", "How many pods may be evicted now."),
    AGE,
];

const HPA_COLUMNS: &[Column] = &[
    NAME,
    col("Reference", "string", "The reference to the target of the autoscaler."),
    col("Targets", "string", "The current and target values of each metric."),
    col("MinPods", "string", "The lower limit of replicas."),
    col("MaxPods", "integer", "The upper limit of replicas."),
    col("Replicas", "integer", "The current number of replicas."),
    AGE,
];

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", "The value of this priority class."),
    col("Global-Default", "boolean", "Whether this priority class is the default for pods that name none."),
    AGE,
    col("PreemptionPolicy", "string", "Whether pods of this class may preempt lower-priority pods."),
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job: Complete, Failed, Terminating, Suspended or Running."),
    col("Completions", "string", "Succeeded pods out of the desired completions."),
    col("Duration", "string", "Time the job took to complete, or has been running."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", "Label selector for the pods the job manages."),
];

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "When jobs run, in cron format."),
    col("Timezone", "string", "Time zone the schedule is read in."),
    col("Suspend", "boolean", "Whether new runs are held back."),
    col("Active", "integer", "Jobs of the cron job still running."),
    col("Last Schedule", "string", "When a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", "Label selector of the job template."),
];

const REPLICA_SET_COLUMNS: &[Column] = &workload_columns(
    [
        col("Desired", "integer", "Number of pods the replica set should run."),
        col("Current", "integer", "Number of pods the replica set currently has."),
        col("Ready", "integer", "Number of those pods that are ready."),
    ],
    "Label selector for the pods the replica set manages.",
);

// JSON access helpers. Objects reach the printers already validated, so a
// missing or mistyped field is read as Go's zero value, as upstream's typed
// structs would see it.

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| &v[*key])
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}

fn int(v: &Value, path: &[&str]) -> i64 {
    let v = at(v, path);
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).unwrap_or(0)
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Whether a Go pointer/struct field would be non-nil.
fn present(v: &Value, path: &[&str]) -> bool {
    at(v, path).is_object()
}

/// Number of entries of a map-valued field.
fn count_keys(v: &Value, path: &[&str]) -> i64 {
    at(v, path).as_object().map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX))
}

fn name(obj: &Value) -> Value {
    json!(text(obj, &["metadata", "name"]))
}

/// The AGE cell: time since creation, `<unknown>` when unset.
fn age(obj: &Value, now: SystemTime) -> Value {
    json!(clock::since(now, clock::time_at(&obj["metadata"], "creationTimestamp")))
}

/// The default table's `Created At` cell; an unset timestamp prints as Go's
/// zero time, as upstream does.
fn created_at(obj: &Value) -> String {
    match clock::time_at(&obj["metadata"], "creationTimestamp") {
        Some(t) => format_rfc3339(t),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}
