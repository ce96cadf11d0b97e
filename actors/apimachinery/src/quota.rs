//! Resource quota accounting (upstream `pkg/quota/v1` and its core evaluators), one copy for
//! the API server's admission and the resource quota controller: what an object uses, which
//! quotas it falls under (resources and scopes), what a pod must declare, and the resource
//! list arithmetic and messages around them.

use crate::quantity::{parse_quantity, Format, Quantity};
use crate::resources::{compute_qos_class, QosClass};
use crate::time::system_time;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, PodSpec, ResourceQuotaSpec, ScopedResourceSelectorRequirement, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// Amounts by resource name, in name order (upstream's `ResourceList`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// The scopes a quota may name (`spec.scopes`, `spec.scopeSelector`).
pub const SCOPES: &[&str] =
    &["Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"];

/// Suffix of the per-storage-class resources (`gold.storageclass.storage.k8s.io/requests.storage`).
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Parses an API resource list; quantities that do not parse are left out (the API server
/// refuses them, so stored objects always parse).
pub fn parse_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    list.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), parse_quantity(&v.0).ok()?))).collect()
}

/// The API form of a resource list, quantities in canonical form.
pub fn to_api(list: &ResourceList) -> BTreeMap<String, ApiQuantity> {
    list.iter().map(|(k, v)| (k.clone(), ApiQuantity(v.canonical()))).collect()
}

/// Zero, in the format upstream's empty quantities print in ("0").
pub fn zero() -> Quantity {
    Quantity::from_milli(0, Format::DecimalSI)
}

fn one() -> Quantity {
    Quantity::from_units(1, Format::DecimalSI)
}

/// a + b, keeping the format of the first non-zero operand (as upstream's `Quantity.Add`).
pub fn sum(a: Quantity, b: Quantity) -> Quantity {
    let format = if a.is_zero() { b.format() } else { a.format() };
    Quantity::from_milli(a.milli_value() + b.milli_value(), format)
}

/// The sum of two lists, every key of either.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    add_to(&mut out, b);
    out
}

/// Adds `b` into `acc` in place (for sums over many objects).
pub fn add_to(acc: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let e = acc.entry(k.clone()).or_insert_with(zero);
        *e = sum(*e, *v);
    }
}

/// `q` times `n` (an object count's usage for `n` objects).
pub fn scale(q: Quantity, n: i128) -> Quantity {
    Quantity::from_milli(q.milli_value() * n, q.format())
}

/// `base` with every entry of `over` replacing its own.
pub fn add_replacing(base: &ResourceList, over: &ResourceList) -> ResourceList {
    let mut out = base.clone();
    out.extend(over.iter().map(|(k, v)| (k.clone(), *v)));
    out
}

/// a - b per key of either, never below zero (upstream's `SubtractWithNonNegativeResult`).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for (k, v) in a {
        let d = v.milli_value() - b.get(k).map_or(0, |o| o.milli_value());
        out.insert(k.clone(), Quantity::from_milli(d.max(0), v.format()));
    }
    for k in b.keys() {
        out.entry(k.clone()).or_insert_with(zero);
    }
    out
}

/// The entries of `list` named in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names.into_iter().filter_map(|n| list.get(n).map(|q| (n.clone(), *q))).collect()
}

/// The names whose amount in `a` is over `b`'s (upstream's `LessThanOrEqual`, its second result).
pub fn exceeded(a: &ResourceList, b: &ResourceList) -> Vec<String> {
    a.iter().filter(|(k, v)| b.get(*k).is_some_and(|limit| *v > limit)).map(|(k, _)| k.clone()).collect()
}

pub fn is_zero(list: &ResourceList) -> bool {
    list.values().all(Quantity::is_zero)
}

/// Names with a negative amount.
pub fn negative(list: &ResourceList) -> Vec<String> {
    list.iter().filter(|(_, v)| v.is_negative()).map(|(k, _)| k.clone()).collect()
}

/// Same keys, equal amounts.
pub fn equals(a: &ResourceList, b: &ResourceList) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k) == Some(v))
}

/// `pods=1,requests.cpu=500m`, names sorted, as upstream prints lists in quota errors.
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={}", v.canonical())).collect::<Vec<_>>().join(",")
}

/// The name an object count is tracked under: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

/// The (group, resource) a `count/<resource>[.<group>]` name counts.
pub fn parse_count_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((resource, group)) => (group.to_string(), resource.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// Every scope a quota names, `spec.scopes` as `Exists` requirements then the scope selector's.
pub fn scope_selectors(spec: &ResourceQuotaSpec) -> Vec<ScopedResourceSelectorRequirement> {
    let mut out: Vec<ScopedResourceSelectorRequirement> = spec
        .scopes
        .iter()
        .flatten()
        .map(|s| ScopedResourceSelectorRequirement { scope_name: s.clone(), operator: "Exists".into(), values: None })
        .collect();
    if let Some(sel) = &spec.scope_selector {
        out.extend(sel.match_expressions.iter().flatten().cloned());
    }
    out
}

/// The object whose usage is measured.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    Pod(&'a Pod),
    Service(&'a Service),
    Claim(&'a PersistentVolumeClaim),
    /// Counted only.
    Other,
}

/// What quota knows of one resource (upstream's evaluators): pods, services and claims have
/// evaluators of their own, every other resource is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    Count { group: String, resource: String },
}

/// Names the pod evaluator tracks besides hugepages and extended resources.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// If a quota tracks one of these, every container must declare it (upstream keeps this for
/// compatibility and adds nothing to it).
const MUST_DECLARE: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

impl Evaluator {
    /// The evaluator of a resource; None for what quota ignores (events).
    pub fn for_resource(group: &str, resource: &str) -> Option<Evaluator> {
        Some(match (group, resource) {
            ("" | "events.k8s.io", "events") => return None,
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::Claims,
            _ => Evaluator::Count { group: group.to_string(), resource: resource.to_string() },
        })
    }

    /// The plain name upstream also counts some kinds under (`configmaps`, `secrets`, ...).
    fn legacy_name(&self) -> Option<&'static str> {
        match self {
            Evaluator::Count { group, resource } if group.is_empty() => match resource.as_str() {
                "configmaps" => Some("configmaps"),
                "secrets" => Some("secrets"),
                "replicationcontrollers" => Some("replicationcontrollers"),
                "resourcequotas" => Some("resourcequotas"),
                _ => None,
            },
            _ => None,
        }
    }

    /// Of `names`, those this evaluator tracks.
    pub fn matching_resources<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|n| match self {
                Evaluator::Pods => {
                    POD_RESOURCES.contains(&n.as_str())
                        || n.starts_with("hugepages-")
                        || n.starts_with("requests.hugepages-")
                        || (!is_native(n) && n.starts_with("requests."))
                }
                Evaluator::Services => {
                    matches!(
                        n.as_str(),
                        "services" | "count/services" | "services.nodeports" | "services.loadbalancers"
                    )
                }
                Evaluator::Claims => {
                    matches!(n.as_str(), "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage")
                        || n.split_once(STORAGE_CLASS_SUFFIX)
                            .is_some_and(|(_, r)| matches!(r, "persistentvolumeclaims" | "requests.storage"))
                }
                Evaluator::Count { group, resource } => {
                    **n == count_name(group, resource) || self.legacy_name() == Some(n.as_str())
                }
            })
            .cloned()
            .collect()
    }

    /// Whether a scope requirement selects the object: only pods fall under scopes.
    pub fn matches_scope(&self, sel: &ScopedResourceSelectorRequirement, obj: Target) -> bool {
        let Target::Pod(pod) = obj else { return false };
        let spec = pod.spec.as_ref();
        match sel.scope_name.as_str() {
            "Terminating" => is_terminating(pod),
            "NotTerminating" => !is_terminating(pod),
            "BestEffort" => is_best_effort(pod),
            "NotBestEffort" => !is_best_effort(pod),
            "PriorityClass" => {
                let class = spec.and_then(|s| s.priority_class_name.as_deref()).filter(|c| !c.is_empty());
                let values = sel.values.as_deref().unwrap_or_default();
                match sel.operator.as_str() {
                    "Exists" => class.is_some(),
                    "DoesNotExist" => class.is_none(),
                    "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                    "NotIn" => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                    _ => false,
                }
            }
            "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
            _ => false,
        }
    }

    /// Whether a quota whose hard limits are `hard` applies to the object: it tracks one of
    /// the evaluator's resources and every scope selects the object.
    pub fn matches(&self, spec: &ResourceQuotaSpec, hard: &ResourceList, obj: Target) -> bool {
        !self.matching_resources(hard.keys()).is_empty()
            && scope_selectors(spec).iter().all(|s| self.matches_scope(s, obj))
    }

    /// What the object uses; `now` decides whether a pod past its deletion grace still counts.
    pub fn usage(&self, obj: Target, now: SystemTime) -> ResourceList {
        match (self, obj) {
            (Evaluator::Pods, Target::Pod(pod)) => pod_usage(pod, now),
            (Evaluator::Services, Target::Service(svc)) => service_usage(svc),
            (Evaluator::Claims, Target::Claim(pvc)) => claim_usage(pvc),
            (Evaluator::Pods, _) => [("count/pods".to_string(), one())].into(),
            (Evaluator::Services, _) => [("count/services".to_string(), one()), ("services".to_string(), one())].into(),
            (Evaluator::Claims, _) => {
                [("count/persistentvolumeclaims".to_string(), one()), ("persistentvolumeclaims".to_string(), one())]
                    .into()
            }
            (Evaluator::Count { group, resource }, _) => {
                let mut out: ResourceList = [(count_name(group, resource), one())].into();
                if let Some(legacy) = self.legacy_name() {
                    out.insert(legacy.to_string(), one());
                }
                out
            }
        }
    }

    /// Refuses a pod that does not declare, in every container, the cpu and memory amounts a
    /// quota tracks (`required`: the quota's resources this evaluator matches).
    pub fn constraints(&self, required: &[String], obj: Target) -> Result<(), String> {
        let (Evaluator::Pods, Target::Pod(pod)) = (self, obj) else { return Ok(()) };
        let required: BTreeSet<&str> =
            required.iter().map(String::as_str).filter(|r| MUST_DECLARE.contains(r)).collect();
        if required.is_empty() {
            return Ok(());
        }
        let spec = pod.spec.as_ref();
        let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
        let inits = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
        let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for c in containers.chain(inits) {
            let declared = compute_usage(&container_list(c, false), &container_list(c, true));
            for r in &required {
                if !declared.contains_key(*r) {
                    missing.entry(r).or_default().insert(c.name.as_str());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| format!("{r} for: {}", names.iter().copied().collect::<Vec<_>>().join(",")))
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }
}

/// `spec.activeDeadlineSeconds` set (and not negative): the Terminating scope.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.active_deadline_seconds).is_some_and(|d| d >= 0)
}

fn is_best_effort(pod: &Pod) -> bool {
    pod.spec.as_ref().is_none_or(|s| compute_qos_class(s) == QosClass::BestEffort)
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else { return false };
    let terms = |a: Option<&Vec<k8s_openapi::api::core::v1::PodAffinityTerm>>,
                 w: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
        a.into_iter()
            .flatten()
            .cloned()
            .chain(w.into_iter().flatten().map(|t| t.pod_affinity_term.clone()))
            .collect::<Vec<_>>()
    };
    let mut all = Vec::new();
    if let Some(a) = &affinity.pod_affinity {
        all.extend(terms(
            a.required_during_scheduling_ignored_during_execution.as_ref(),
            a.preferred_during_scheduling_ignored_during_execution.as_ref(),
        ));
    }
    if let Some(a) = &affinity.pod_anti_affinity {
        all.extend(terms(
            a.required_during_scheduling_ignored_during_execution.as_ref(),
            a.preferred_during_scheduling_ignored_during_execution.as_ref(),
        ));
    }
    all.iter().any(|t| t.namespace_selector.is_some() || t.namespaces.as_ref().is_some_and(|n| !n.is_empty()))
}

/// Whether a pod's compute resources count: not finished, and not deleted past its grace
/// period (a pod stuck terminating on a lost node must not block its replacement).
pub fn pod_counts(pod: &Pod, now: SystemTime) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return false;
    }
    match grace_deadline(pod) {
        Some(deadline) => now <= deadline,
        None => true,
    }
}

/// When a pod being deleted stops counting (its deletion time plus its grace period).
pub fn grace_deadline(pod: &Pod) -> Option<SystemTime> {
    let ts = pod.metadata.deletion_timestamp.as_ref()?;
    let grace = pod.metadata.deletion_grace_period_seconds?;
    Some(system_time(ts) + Duration::from_secs(grace.max(0) as u64))
}

fn container_list(c: &Container, limits: bool) -> ResourceList {
    let r = c.resources.as_ref();
    parse_list(r.and_then(|r| if limits { r.limits.as_ref() } else { r.requests.as_ref() }))
}

fn max_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, v) in other {
        match acc.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                acc.insert(k.clone(), *v);
            }
        }
    }
}

/// Upstream's `PodRequests`/`PodLimits`: containers summed, then the max with each init
/// container (sidecars keep running, so they add to what follows them), overhead on top
/// (for limits only where a limit is set).
pub fn pod_resources(spec: &PodSpec, limits: bool) -> ResourceList {
    let mut total = ResourceList::new();
    for c in &spec.containers {
        add_to(&mut total, &container_list(c, limits));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let r = container_list(c, limits);
        if c.restart_policy.as_deref() == Some("Always") {
            add_to(&mut total, &r);
            add_to(&mut sidecars, &r);
            max_into(&mut init_max, &sidecars);
        } else {
            max_into(&mut init_max, &add(&r, &sidecars));
        }
    }
    max_into(&mut total, &init_max);
    let overhead = parse_list(spec.overhead.as_ref());
    for (k, v) in overhead {
        match total.get_mut(&k) {
            Some(cur) => *cur = sum(*cur, v),
            None if !limits => {
                total.insert(k, v);
            }
            None => {}
        }
    }
    total
}

/// The quota names a set of requests and limits is charged under (`podComputeUsageHelper`).
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out: ResourceList = [("pods".to_string(), one())].into();
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.to_string(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        } else if !is_native(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

fn pod_usage(pod: &Pod, now: SystemTime) -> ResourceList {
    // count/pods counts every stored pod; the rest only pods that still run.
    let mut out: ResourceList = [("count/pods".to_string(), one())].into();
    if !pod_counts(pod, now) {
        return out;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    out.extend(compute_usage(&pod_resources(&spec, false), &pod_resources(&spec, true)));
    out
}

fn service_usage(svc: &Service) -> ResourceList {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.as_ref().map_or(0, Vec::len) as i128;
    let mut out: ResourceList = [
        ("count/services".to_string(), one()),
        ("services".to_string(), one()),
        ("services.loadbalancers".to_string(), zero()),
        ("services.nodeports".to_string(), zero()),
    ]
    .into();
    match spec.type_.as_deref() {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Quantity::from_units(ports, Format::DecimalSI));
        }
        Some("LoadBalancer") => {
            // Without node ports allocated for it, only the ports that name one count.
            let node_ports = if spec.allocate_load_balancer_node_ports == Some(false) {
                spec.ports.iter().flatten().filter(|p| p.node_port.is_some_and(|n| n > 0)).count() as i128
            } else {
                ports
            };
            out.insert("services.nodeports".into(), Quantity::from_units(node_ports, Format::DecimalSI));
            out.insert("services.loadbalancers".into(), one());
        }
        _ => {}
    }
    out
}

fn claim_usage(pvc: &PersistentVolumeClaim) -> ResourceList {
    let mut out: ResourceList =
        [("count/persistentvolumeclaims".to_string(), one()), ("persistentvolumeclaims".to_string(), one())].into();
    let spec = pvc.spec.as_ref();
    let class = spec
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            pvc.metadata.annotations.as_ref().and_then(|a| a.get("volume.beta.kubernetes.io/storage-class").cloned())
        })
        .filter(|c| !c.is_empty());
    if let Some(c) = &class {
        out.insert(format!("{c}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), one());
    }
    let requested = parse_list(spec.and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()));
    if let Some(q) = requested.get("storage") {
        out.insert("requests.storage".into(), *q);
        if let Some(c) = &class {
            out.insert(format!("{c}{STORAGE_CLASS_SUFFIX}requests.storage"), *q);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn q(s: &str) -> Quantity {
        parse_quantity(s).unwrap()
    }

    #[test]
    fn pod_usage_counts_requests_and_limits() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "i", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "image": "i", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
        ]}}));
        let u = Evaluator::Pods.usage(Target::Pod(&p), SystemTime::now());
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=500m,limits.cpu=500m,memory=128Mi,pods=1,requests.cpu=500m,requests.memory=128Mi"
        );
    }

    #[test]
    fn finished_and_expired_pods_count_only_as_objects() {
        let done =
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": {"phase": "Succeeded"}}));
        assert_eq!(pretty(&Evaluator::Pods.usage(Target::Pod(&done), SystemTime::now())), "count/pods=1");
        let deleting = pod(json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 30}, "spec": {"containers": []}}));
        assert!(!pod_counts(&deleting, SystemTime::now()));
        assert!(pod_counts(&deleting, crate::time::parse_rfc3339("2024-01-01T00:00:10Z").unwrap()));
    }

    #[test]
    fn undeclared_compute_resources_are_named() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "b", "image": "i"}, {"name": "a", "image": "i", "resources": {"requests": {"cpu": "1"}}}
        ]}}));
        let req = vec!["requests.cpu".to_string(), "limits.memory".to_string(), "pods".to_string()];
        assert_eq!(
            Evaluator::Pods.constraints(&req, Target::Pod(&p)).unwrap_err(),
            "must specify limits.memory for: a,b; requests.cpu for: b"
        );
        assert!(Evaluator::Pods.constraints(&["pods".into()], Target::Pod(&p)).is_ok());
    }

    #[test]
    fn scopes_select_pods_only() {
        let spec: ResourceQuotaSpec =
            serde_json::from_value(json!({"hard": {"pods": "2"}, "scopes": ["BestEffort"]})).unwrap();
        let hard = parse_list(spec.hard.as_ref());
        let be = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
        let burst = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        assert!(Evaluator::Pods.matches(&spec, &hard, Target::Pod(&be)));
        assert!(!Evaluator::Pods.matches(&spec, &hard, Target::Pod(&burst)));
        let sel: ResourceQuotaSpec =
            serde_json::from_value(json!({"hard": {"pods": "2"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}))
            .unwrap();
        let high = pod(json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "high", "containers": []}}));
        assert!(Evaluator::Pods.matches(&sel, &hard, Target::Pod(&high)));
        assert!(!Evaluator::Pods.matches(&sel, &hard, Target::Pod(&be)));
        let count = Evaluator::for_resource("", "configmaps").unwrap();
        assert!(!count.matches(&spec, &[("configmaps".to_string(), one())].into(), Target::Other));
    }

    #[test]
    fn object_counts_and_services() {
        let cm = Evaluator::for_resource("", "configmaps").unwrap();
        assert_eq!(pretty(&cm.usage(Target::Other, SystemTime::now())), "configmaps=1,count/configmaps=1");
        let deploy = Evaluator::for_resource("apps", "deployments").unwrap();
        assert_eq!(pretty(&deploy.usage(Target::Other, SystemTime::now())), "count/deployments.apps=1");
        assert_eq!(parse_count_name("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert!(Evaluator::for_resource("", "events").is_none());
        let svc: Service =
            serde_json::from_value(json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}}))
                .unwrap();
        let u = Evaluator::Services.usage(Target::Service(&svc), SystemTime::now());
        assert_eq!(pretty(&u), "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2");
    }

    #[test]
    fn arithmetic() {
        let a: ResourceList = [("cpu".to_string(), q("500m")), ("memory".to_string(), q("1Gi"))].into();
        let b: ResourceList = [("cpu".to_string(), q("700m"))].into();
        assert_eq!(pretty(&add(&a, &b)), "cpu=1200m,memory=1Gi");
        assert_eq!(pretty(&subtract_non_negative(&b, &a)), "cpu=200m,memory=0");
        assert_eq!(exceeded(&add(&a, &b), &[("cpu".to_string(), q("1"))].into()), vec!["cpu".to_string()]);
        assert_eq!(pretty(&add(&[("memory".to_string(), zero())].into(), &a)), "cpu=500m,memory=1Gi");
    }
}
