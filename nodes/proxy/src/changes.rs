//! Which Services' rules are stale: upstream kube-proxy's ServiceChangeTracker and
//! EndpointsChangeTracker folded into one set of Service keys. Every informer event marks the
//! Service it concerns (a Service by its namespace and name, an EndpointSlice by its namespace
//! and `kubernetes.io/service-name` label, before and after the change), and a sync recomputes
//! only those Services' rules. A resync or a lagging subscriber marks everything.

use crate::slices::SERVICE_NAME_LABEL;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::informer::Change;
use std::collections::BTreeSet;

/// The Services whose rules the next sync recomputes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceChanges {
    /// Every Service (the first sync, an informer resync or lag).
    all: bool,
    keys: BTreeSet<ObjectKey>,
}

impl ServiceChanges {
    /// Every Service, and Services that are gone.
    pub fn all() -> Self {
        ServiceChanges { all: true, keys: BTreeSet::new() }
    }

    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Nothing to recompute.
    pub fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty()
    }

    /// The Services marked one by one (empty when everything is).
    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.keys.iter().filter(|_| !self.all)
    }

    /// Marks the Service `namespace/name`.
    pub fn mark(&mut self, namespace: &str, name: &str) {
        if !self.all {
            self.keys.insert((namespace.to_string(), name.to_string()));
        }
    }

    pub fn mark_all(&mut self) {
        self.all = true;
        self.keys.clear();
    }

    /// Adds everything `other` marks.
    pub fn merge(&mut self, other: ServiceChanges) {
        if other.all {
            self.mark_all();
        } else if !self.all {
            self.keys.extend(other.keys);
        }
    }

    /// Marks the Service a Service event concerns (everything for a resync).
    pub fn service(&mut self, change: &Change<Service>) {
        match change {
            Change::Applied { new, .. } => self.mark(new.namespace(), new.name()),
            Change::Deleted(old) => self.mark(old.namespace(), old.name()),
            Change::Resynced => self.mark_all(),
        }
    }

    /// Marks the Services an EndpointSlice event concerns: the one it belongs to, and the one it
    /// belonged to before if its label changed (everything for a resync).
    pub fn slice(&mut self, change: &Change<EndpointSlice>) {
        let mut mark = |slice: &EndpointSlice| {
            if let Some(service) = slice.label(SERVICE_NAME_LABEL) {
                self.mark(slice.namespace(), service);
            }
        };
        match change {
            Change::Applied { old, new } => {
                old.iter().for_each(|o| mark(o));
                mark(new);
            }
            Change::Deleted(old) => mark(old),
            Change::Resynced => self.mark_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn slice(name: &str, service: Option<&str>) -> Arc<EndpointSlice> {
        let labels = service.map(|s| json!({SERVICE_NAME_LABEL: s})).unwrap_or(json!({}));
        Arc::new(
            serde_json::from_value(json!({"metadata": {"namespace": "ns1", "name": name, "labels": labels},
                "addressType": "IPv4", "endpoints": []}))
            .unwrap(),
        )
    }

    fn keys(c: &ServiceChanges) -> Vec<String> {
        c.keys().map(|(ns, n)| format!("{ns}/{n}")).collect()
    }

    #[test]
    fn slices_mark_their_service_before_and_after() {
        let mut c = ServiceChanges::default();
        assert!(c.is_empty());
        c.slice(&Change::Applied { old: None, new: slice("web-1", Some("web")) });
        c.slice(&Change::Applied { old: Some(slice("x-1", Some("old"))), new: slice("x-1", Some("new")) });
        c.slice(&Change::Deleted(slice("db-1", Some("db"))));
        c.slice(&Change::Applied { old: None, new: slice("orphan", None) });
        assert_eq!(keys(&c), ["ns1/db", "ns1/new", "ns1/old", "ns1/web"]);
        assert!(!c.is_all() && !c.is_empty());
    }

    #[test]
    fn services_mark_themselves_and_a_resync_marks_everything() {
        let svc: Arc<Service> =
            Arc::new(serde_json::from_value(json!({"metadata": {"namespace": "ns2", "name": "api"}})).unwrap());
        let mut c = ServiceChanges::default();
        c.service(&Change::Applied { old: None, new: svc.clone() });
        c.service(&Change::Deleted(svc.clone()));
        assert_eq!(keys(&c), ["ns2/api"]);
        let mut other = ServiceChanges::default();
        other.slice(&Change::Resynced);
        c.merge(other);
        assert!(c.is_all() && keys(&c).is_empty());
        // Once everything is marked, single marks add nothing.
        c.mark("ns2", "other");
        assert!(c.is_all() && keys(&c).is_empty());
        let mut some = ServiceChanges::default();
        some.mark("a", "b");
        some.merge(ServiceChanges::all());
        assert_eq!(some, ServiceChanges::all());
    }
}
