//! How the ruleset finds a Service's EndpointSlices: through the shared informer's index by the
//! `kubernetes.io/service-name` label (a sync reads each Service's slices, never the whole
//! cache), or through [`SliceList`] over a plain list (tests, benchmarks, a Proxier used alone).

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::Informer;
use std::borrow::Borrow;
use std::collections::HashMap;

pub use kubus_controller_runtime::informer::indexes::SERVICE_NAME_LABEL;
use kubus_controller_runtime::informer::indexes::{self, SLICE_SERVICE};

/// A Service's EndpointSlices, by its namespace and name.
pub trait ServiceSlices {
    /// Calls `f` with every EndpointSlice of the Service `namespace/service`.
    fn for_each_of(&self, namespace: &str, service: &str, f: &mut dyn FnMut(&EndpointSlice));
}

impl ServiceSlices for Informer<EndpointSlice> {
    fn for_each_of(&self, namespace: &str, service: &str, f: &mut dyn FnMut(&EndpointSlice)) {
        // The index is added once per shared informer; without it every lookup would be empty.
        if !self.read(|c| c.has_index(SLICE_SERVICE)) {
            indexes::slices_by_service(self);
        }
        for slice in self.by_index(SLICE_SERVICE, &format!("{namespace}/{service}")) {
            f(&slice);
        }
    }
}

/// EndpointSlices from a list, grouped by Service once.
pub struct SliceList<'a> {
    by_service: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> SliceList<'a> {
    pub fn new<E: Borrow<EndpointSlice>>(slices: &'a [E]) -> Self {
        let mut by_service: HashMap<_, Vec<_>> = HashMap::new();
        for slice in slices {
            let slice = slice.borrow();
            if let Some(svc) = slice.label(SERVICE_NAME_LABEL) {
                by_service.entry((slice.namespace(), svc)).or_default().push(slice);
            }
        }
        SliceList { by_service }
    }
}

impl ServiceSlices for SliceList<'_> {
    fn for_each_of(&self, namespace: &str, service: &str, f: &mut dyn FnMut(&EndpointSlice)) {
        for slice in self.by_service.get(&(namespace, service)).into_iter().flatten() {
            f(slice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(ns: &str, name: &str, svc: Option<&str>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: svc.map(|s| [(SERVICE_NAME_LABEL.to_string(), s.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(slices: &impl ServiceSlices, ns: &str, svc: &str) -> Vec<String> {
        let mut out = Vec::new();
        slices.for_each_of(ns, svc, &mut |s| out.push(s.name().to_string()));
        out.sort();
        out
    }

    #[test]
    fn slices_are_found_by_namespace_and_service_label() {
        let list = [
            slice("a", "web-1", Some("web")),
            slice("a", "web-2", Some("web")),
            slice("b", "web-3", Some("web")),
            slice("a", "orphan", None),
        ];
        let slices = SliceList::new(&list);
        assert_eq!(names(&slices, "a", "web"), ["web-1", "web-2"]);
        assert_eq!(names(&slices, "b", "web"), ["web-3"]);
        assert!(names(&slices, "a", "db").is_empty());
        assert_eq!(indexes::slice_service(&list[2]), ["b/web"]);
        assert!(indexes::slice_service(&list[3]).is_empty());
    }

    #[test]
    fn a_service_split_into_many_slices_is_found_and_balanced_whole() {
        use crate::{ProxyRules, RulesConfig};
        use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
        use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
        use std::sync::Arc;
        // As the endpoints controller writes a large Service: slices of 100 endpoints with
        // generated names, and pods on another target port in slices of their own.
        let with = |name: &str, port: i32, ips: std::ops::Range<usize>| {
            let mut s = slice("a", name, Some("web"));
            s.address_type = "IPv4".into();
            s.ports = Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]);
            s.endpoints = ips
                .map(|i| Endpoint {
                    addresses: vec![format!("10.244.{}.{}", i / 200, i % 200 + 1)],
                    conditions: Some(EndpointConditions { ready: Some(true), ..Default::default() }),
                    ..Default::default()
                })
                .collect();
            s
        };
        let mut list: Vec<EndpointSlice> =
            (0..30).map(|n| with(&format!("web-{n:05}"), 8080, n * 100..n * 100 + 100)).collect();
        list.push(with("web-other", 9090, 3000..3020));
        list.push(slice("a", "db-1", Some("db")));
        let mut cache: kubus_controller_runtime::informer::Cache<EndpointSlice> = Default::default();
        cache.add_index(SLICE_SERVICE, Arc::new(indexes::slice_service));
        for s in &list {
            cache.insert(s.key(), Arc::new(s.clone()));
        }
        assert_eq!(cache.by_index(SLICE_SERVICE, "a/web").len(), 31);
        assert_eq!(names(&SliceList::new(&list), "a", "web").len(), 31);
        let svc = Service {
            metadata: ObjectMeta { namespace: Some("a".into()), name: Some("web".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, ..Default::default() }]),
                ..Default::default()
            }),
            status: None,
        };
        let rules = ProxyRules::compute(&RulesConfig::default(), &[svc], &SliceList::new(&list)).unwrap();
        assert_eq!(rules.endpoints(), 3020, "every slice's endpoints, each on its own target port");
    }
}
