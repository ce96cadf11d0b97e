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
}
