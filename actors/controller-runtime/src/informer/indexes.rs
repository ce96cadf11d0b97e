//! Indexes several components keep on the same shared informer, defined once so they are one
//! index (one name, one function) however many components ask for them.

use super::{Cache, Informer};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_apimachinery::selector::labels_match;
use kubus_apimachinery::{Object, ObjectExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Pods by the node they are bound to (the kubelet, the node lifecycle controller).
pub const POD_NODE_NAME: &str = "spec.nodeName";

/// Objects by `<namespace>/<key>=<value>` of each of their labels (selector lookups).
pub const LABEL: &str = "namespace-label";

/// EndpointSlices by `<namespace>/<service>` of their `kubernetes.io/service-name` label.
pub const SLICE_SERVICE: &str = "service-name";

/// The label naming the Service an EndpointSlice belongs to (discovery.k8s.io/v1).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Adds [`POD_NODE_NAME`] to the pods informer.
pub fn pods_by_node(pods: &Informer<Pod>) {
    pods.add_index(POD_NODE_NAME, |p: &Pod| {
        kubus_apimachinery::pod::node_name(p).map(String::from).into_iter().collect()
    });
}

/// The value an object is indexed under in [`LABEL`] for one label.
pub fn label_value(namespace: &str, key: &str, value: &str) -> String {
    format!("{namespace}/{key}={value}")
}

/// The values an object is indexed under in [`LABEL`].
pub fn label_values<K: Object>(o: &K) -> Vec<String> {
    o.labels().iter().map(|(k, v)| label_value(o.namespace(), k, v)).collect()
}

/// Adds [`LABEL`] to an informer.
pub fn by_label<K: Object>(informer: &Informer<K>) {
    informer.add_index(LABEL, label_values::<K>);
}

/// The objects of `namespace` carrying every label of an equality selector (a Service's
/// `spec.selector`), read through [`LABEL`] by the selector's rarest label. An empty selector
/// selects nothing here: callers decide what it means to them.
pub fn matching_labels<K: Object>(
    cache: &Cache<K>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Vec<Arc<K>> {
    let rarest = selector.iter().map(|(k, v)| label_value(namespace, k, v)).min_by_key(|v| cache.count(LABEL, v));
    let Some(rarest) = rarest else { return Vec::new() };
    cache.by_index(LABEL, &rarest).into_iter().filter(|o| labels_match(selector, o.labels())).collect()
}

/// Adds [`SLICE_SERVICE`] to the EndpointSlices informer.
pub fn slices_by_service(slices: &Informer<EndpointSlice>) {
    slices.add_index(SLICE_SERVICE, slice_service);
}

/// The value an EndpointSlice is indexed under in [`SLICE_SERVICE`].
pub fn slice_service(slice: &EndpointSlice) -> Vec<String> {
    slice.label(SERVICE_NAME_LABEL).map(|svc| format!("{}/{svc}", slice.namespace())).into_iter().collect()
}
