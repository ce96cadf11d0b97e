//! How a sync finds Services: one by key (the changed ones) or all of them (a full sync),
//! through the shared informer or through [`ServiceList`] over a plain list (tests,
//! benchmarks, a Proxier used alone).

use k8s_openapi::api::core::v1::Service;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::Informer;
use std::borrow::Borrow;
use std::collections::HashMap;

/// The Services a sync reads.
pub trait Services {
    /// Calls `f` with the Service `namespace/name`, or None if there is none.
    fn with(&self, namespace: &str, name: &str, f: &mut dyn FnMut(Option<&Service>));
    /// Calls `f` with every Service.
    fn for_each(&self, f: &mut dyn FnMut(&Service));
}

impl Services for Informer<Service> {
    fn with(&self, namespace: &str, name: &str, f: &mut dyn FnMut(Option<&Service>)) {
        f(self.get(namespace, name).as_deref());
    }

    fn for_each(&self, f: &mut dyn FnMut(&Service)) {
        // A copy of the pointers, so that the cache's lock is not held while rules are computed.
        for svc in self.list() {
            f(&svc);
        }
    }
}

/// Services from a list, by key.
pub struct ServiceList<'a> {
    by_key: HashMap<(&'a str, &'a str), &'a Service>,
}

impl<'a> ServiceList<'a> {
    pub fn new<S: Borrow<Service>>(services: &'a [S]) -> Self {
        let by_key = services.iter().map(Borrow::borrow).map(|s: &Service| ((s.namespace(), s.name()), s)).collect();
        ServiceList { by_key }
    }
}

impl Services for ServiceList<'_> {
    fn with(&self, namespace: &str, name: &str, f: &mut dyn FnMut(Option<&Service>)) {
        f(self.by_key.get(&(namespace, name)).copied());
    }

    fn for_each(&self, f: &mut dyn FnMut(&Service)) {
        for svc in self.by_key.values() {
            f(svc);
        }
    }
}
