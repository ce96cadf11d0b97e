//! Requests, limits and the QoS class of a pod, computed once for every component: the API
//! server records `status.qosClass`, the scheduler fits requests, the kubelet sizes cgroups
//! and OOM scores from the same numbers (upstream's `resource.PodRequests` and `qos`).

use crate::quantity::{parse_quantity, Quantity};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use std::collections::BTreeMap;

/// What a pod without a cpu request is counted as when spreading (upstream's
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Likewise for memory (`DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Parses an API quantity; `None` if it does not parse (the API server refuses those, so
/// stored objects always parse).
pub fn quantity(q: &ApiQuantity) -> Option<Quantity> {
    parse_quantity(&q.0).ok()
}

/// Aggregated amounts as upstream's `framework.Resource`: cpu in millicores, everything else
/// in whole units (bytes, pods, devices).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended resources, hugepages and anything else named in a resource list.
    pub scalar: BTreeMap<String, i64>,
}

fn to_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Resources {
    /// Builds from a resource list; unparsable quantities are skipped.
    pub fn from_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> Self {
        let mut r = Resources::default();
        r.add_list(list);
        r
    }

    pub fn add_list(&mut self, list: Option<&BTreeMap<String, ApiQuantity>>) {
        for (name, q) in list.into_iter().flatten() {
            let Some(q) = quantity(q) else { continue };
            match name.as_str() {
                "cpu" => self.milli_cpu += to_i64(q.milli_value()),
                "memory" => self.memory += to_i64(q.value()),
                "ephemeral-storage" => self.ephemeral_storage += to_i64(q.value()),
                "pods" => self.allowed_pod_number += to_i64(q.value()),
                other => *self.scalar.entry(other.to_string()).or_insert(0) += to_i64(q.value()),
            }
        }
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pod_number += o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pod_number -= o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    pub fn set_max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(o.allowed_pod_number);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.values().all(|v| *v == 0)
    }
}

fn requests_of(c: &Container) -> Option<&BTreeMap<String, ApiQuantity>> {
    c.resources.as_ref()?.requests.as_ref()
}

fn limits_of(c: &Container) -> Option<&BTreeMap<String, ApiQuantity>> {
    c.resources.as_ref()?.limits.as_ref()
}

fn container_requests(c: &Container, non_missing_defaults: bool) -> Resources {
    let list = requests_of(c);
    let mut r = Resources::from_list(list);
    if non_missing_defaults {
        // Only a missing request is defaulted; an explicit zero stays zero (as upstream).
        let has = |k: &str| list.is_some_and(|l| l.contains_key(k));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Upstream's `resource.PodRequests`: containers summed, then the max with each init
/// container, where sidecars (init containers with `restartPolicy: Always`) keep running and
/// so add to everything after them; overhead on top. With `non_missing_defaults`, a missing cpu
/// or memory request counts as upstream's defaults (for spreading scores).
pub fn pod_requests(spec: &PodSpec, non_missing_defaults: bool) -> Resources {
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_missing_defaults));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut r = container_requests(c, non_missing_defaults);
        if is_sidecar(c) {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.set_max(&sidecars);
        } else {
            r.add(&sidecars);
            init_max.set_max(&r);
        }
    }
    reqs.set_max(&init_max);
    reqs.add_list(spec.overhead.as_ref());
    reqs
}

/// The sum of the regular containers' limits of one resource, in milli-units, or None when a
/// container has no limit for it (the pod is then unbounded there).
pub fn containers_limit_milli(spec: &PodSpec, resource: &str) -> Option<i128> {
    spec.containers.iter().try_fold(0i128, |acc, c| Some(acc + quantity(limits_of(c)?.get(resource)?)?.milli_value()))
}

/// The sum of the regular containers' requests of one resource, in milli-units.
pub fn containers_request_milli(spec: &PodSpec, resource: &str) -> i128 {
    spec.containers
        .iter()
        .filter_map(|c| requests_of(c)?.get(resource).and_then(quantity))
        .map(|q| q.milli_value())
        .sum()
}

/// A pod's QoS class (`status.qosClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    pub fn parse(s: &str) -> Option<QosClass> {
        match s {
            "Guaranteed" => Some(QosClass::Guaranteed),
            "Burstable" => Some(QosClass::Burstable),
            "BestEffort" => Some(QosClass::BestEffort),
            _ => None,
        }
    }
}

/// Upstream's `ComputePodQOS` (a container's missing requests are its limits, as defaulting
/// makes them): only cpu and memory count, and only amounts above zero; Guaranteed when every
/// container limits both and the summed requests equal the summed limits; BestEffort when
/// nothing is requested or limited.
pub fn compute_qos_class(spec: &PodSpec) -> QosClass {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        // Defaulting copies a missing request from the limit; doing it here too gives the same
        // class for a spec before and after defaulting.
        let defaulted =
            limits_of(c).into_iter().flatten().filter(|(k, _)| !requests_of(c).is_some_and(|r| r.contains_key(*k)));
        for (name, q) in requests_of(c).into_iter().flatten().chain(defaulted) {
            if let Some(q) = quantity(q).filter(|q| q.milli_value() > 0 && is_qos_resource(name)) {
                *requests.entry(name.as_str()).or_insert(0) += q.milli_value();
            }
        }
        let mut limited = (false, false);
        for (name, q) in limits_of(c).into_iter().flatten() {
            if let Some(q) = quantity(q).filter(|q| q.milli_value() > 0 && is_qos_resource(name)) {
                *limits.entry(name.as_str()).or_insert(0) += q.milli_value();
                match name.as_str() {
                    "cpu" => limited.0 = true,
                    _ => limited.1 = true,
                }
            }
        }
        guaranteed &= limited == (true, true);
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

fn is_qos_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory")
}

/// The pod's QoS class: what the API server recorded, or computed when it is absent (as
/// upstream's `GetPodQOS`).
pub fn qos_class(pod: &Pod) -> QosClass {
    pod.status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .and_then(QosClass::parse)
        .unwrap_or_else(|| compute_qos_class(crate::pod::spec(pod)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| l.iter().map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string()))).collect())
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(containers: Vec<Container>) -> PodSpec {
        PodSpec { containers, ..Default::default() }
    }

    #[test]
    fn qos_classes_as_upstream() {
        use QosClass::*;
        assert_eq!(compute_qos_class(&spec(vec![container(&[], &[])])), BestEffort);
        // Zero requests do not count: still BestEffort.
        assert_eq!(compute_qos_class(&spec(vec![container(&[("cpu", "0")], &[])])), BestEffort);
        assert_eq!(compute_qos_class(&spec(vec![container(&[("cpu", "0"), ("memory", "0")], &[])])), BestEffort);
        assert_eq!(compute_qos_class(&spec(vec![container(&[("cpu", "100m")], &[])])), Burstable);
        let both = [("cpu", "1"), ("memory", "1Gi")];
        assert_eq!(compute_qos_class(&spec(vec![container(&both, &both)])), Guaranteed);
        // The same amounts spelled differently are equal.
        let spelled = [("cpu", "1000m"), ("memory", "1024Mi")];
        assert_eq!(compute_qos_class(&spec(vec![container(&spelled, &both)])), Guaranteed);
        assert_eq!(compute_qos_class(&spec(vec![container(&both, &spelled)])), Guaranteed);
        // A limit on cpu only, or requests below limits: Burstable.
        assert_eq!(compute_qos_class(&spec(vec![container(&[("cpu", "1")], &[("cpu", "1")])])), Burstable);
        assert_eq!(compute_qos_class(&spec(vec![container(&[("cpu", "500m"), ("memory", "1Gi")], &both)])), Burstable);
        // One container without limits makes the pod Burstable.
        assert_eq!(compute_qos_class(&spec(vec![container(&both, &both), container(&[], &[])])), Burstable);
        // Limits alone are requests too (defaulting).
        assert_eq!(compute_qos_class(&spec(vec![container(&[], &both)])), Guaranteed);
        assert_eq!(compute_qos_class(&spec(vec![container(&[("cpu", "1")], &spelled)])), Guaranteed);
        // Other resources do not count.
        assert_eq!(compute_qos_class(&spec(vec![container(&[("ephemeral-storage", "1Gi")], &[])])), BestEffort);
        // Init containers count too.
        let mut s = spec(vec![container(&both, &both)]);
        s.init_containers = Some(vec![container(&[("cpu", "1")], &[])]);
        assert_eq!(compute_qos_class(&s), Burstable);
    }

    #[test]
    fn recorded_class_wins() {
        let mut pod = Pod { spec: Some(spec(vec![container(&[], &[])])), ..Default::default() };
        assert_eq!(qos_class(&pod), QosClass::BestEffort);
        pod.status =
            Some(k8s_openapi::api::core::v1::PodStatus { qos_class: Some("Burstable".into()), ..Default::default() });
        assert_eq!(qos_class(&pod), QosClass::Burstable);
    }

    #[test]
    fn requests_with_sidecars_and_overhead() {
        let mut s = spec(vec![container(&[("cpu", "100m"), ("memory", "100Mi")], &[])]);
        let mut sidecar = container(&[("cpu", "50m")], &[]);
        sidecar.restart_policy = Some("Always".into());
        s.init_containers = Some(vec![sidecar, container(&[("cpu", "500m")], &[])]);
        s.overhead = Some([("cpu".to_string(), ApiQuantity("10m".into()))].into());
        let r = pod_requests(&s, false);
        // max(100 + 50 sidecar, 500 + 50 sidecar) + 10 overhead
        assert_eq!(r.milli_cpu, 560);
        assert_eq!(r.memory, 100 * 1024 * 1024);
        let defaulted = pod_requests(&spec(vec![container(&[("cpu", "0")], &[])]), true);
        assert_eq!((defaulted.milli_cpu, defaulted.memory), (0, DEFAULT_MEMORY_REQUEST));
        assert_eq!(
            containers_limit_milli(&spec(vec![container(&[], &[("memory", "1Ki")])]), "memory"),
            Some(1_024_000)
        );
        assert_eq!(containers_limit_milli(&spec(vec![container(&[], &[])]), "memory"), None);
        assert_eq!(containers_request_milli(&s, "cpu"), 100);
    }
}
