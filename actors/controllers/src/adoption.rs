//! Adoption and release (upstream's ControllerRefManager): a controller claims the orphans of
//! its namespace that its selector matches and lets go of what it controls but no longer
//! matches. Orphans are found through informer indexes (by namespace and by label), so a sync
//! never scans a namespace's objects; an orphan's own events look at the controllers of its
//! namespace only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as ApiSelector, OwnerReference};
use kubus_apimachinery::meta::{controller_ref, refers_to};
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::{Object, ObjectExt, ObjectKey};
use kubus_controller_runtime::informer::{indexes, Cache};
use kubus_controller_runtime::Informer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Objects without a controller owner reference, by namespace.
pub const ORPHANS: &str = "orphan-namespace";
/// Objects without a controller owner reference, by [`indexes::label_value`] of each label.
pub const ORPHAN_LABELS: &str = "orphan-namespace-label";

/// Keeps the orphan indexes on a shared informer (a second call is a no-op). Orphans are few
/// in a steady cluster, so these stay small.
pub fn index_orphans<K: Object>(informer: &Informer<K>) {
    informer.add_index(ORPHANS, orphan_namespace::<K>);
    informer.add_index(ORPHAN_LABELS, orphan_labels::<K>);
}

fn orphan_namespace<K: Object>(o: &K) -> Vec<String> {
    o.controller_ref().is_none().then(|| o.namespace().to_string()).into_iter().collect()
}

fn orphan_labels<K: Object>(o: &K) -> Vec<String> {
    match o.controller_ref() {
        Some(_) => Vec::new(),
        None => o.labels().iter().map(|(k, v)| indexes::label_value(o.namespace(), k, v)).collect(),
    }
}

/// The orphans of one namespace that `selector` claims (see [`orphans_in`]).
pub fn orphans<K: Object>(informer: &Informer<K>, namespace: &str, selector: &LabelSelector) -> Vec<Arc<K>> {
    informer.read(|c| orphans_in(c, namespace, selector))
}

/// The orphans of one namespace that `selector` claims, looked up through the rarest label
/// it pins (or, for a selector of expressions only, among the namespace's orphans).
pub fn orphans_in<K: Object>(cache: &Cache<K>, namespace: &str, selector: &LabelSelector) -> Vec<Arc<K>> {
    if selector.is_empty() || selector.matches_nothing() {
        return Vec::new();
    }
    let pinned = selector
        .requirements()
        .iter()
        .filter_map(|r| selector.requires_exact_match(r.key()).map(|v| indexes::label_value(namespace, r.key(), v)));
    let candidates = match pinned.min_by_key(|v| cache.count(ORPHAN_LABELS, v)) {
        Some(v) => cache.by_index(ORPHAN_LABELS, &v),
        None => cache.by_index(ORPHANS, namespace),
    };
    candidates.into_iter().filter(|o| selects(selector, o.labels())).collect()
}

/// Whether a controller with this selector claims an object with these labels: an empty
/// selector claims nothing, as upstream refuses to adopt with one.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.matches_labels(labels)
}

/// A typed selector as a matcher; an invalid one matches nothing.
pub fn selector_of(selector: Option<&ApiSelector>) -> LabelSelector {
    LabelSelector::from_typed(selector).unwrap_or_else(|_| LabelSelector::nothing())
}

/// The controllers of kind O that an object's change concerns: its controller if that is an
/// O, or for an orphan every O of its namespace whose selector claims it (adoption).
pub fn claimants<K: Object, O: Object>(
    owners: &Informer<O>,
    obj: &K,
    selector: impl Fn(&O) -> LabelSelector,
) -> Vec<ObjectKey> {
    let ns = obj.namespace();
    match obj.controller_ref() {
        Some(r) if refers_to::<O>(r) => vec![(ns.to_string(), r.name.clone())],
        Some(_) => Vec::new(),
        None => owners.namespace(ns).iter().filter(|o| selects(&selector(o), obj.labels())).map(|o| o.key()).collect(),
    }
}

/// The owners a pod change concerns (its controller of kind `O`, or the `O`s that would adopt
/// it, before and after the change), after observing it for expectations: a new pod is an
/// observed creation; one that starts terminating, or is deleted without having terminated
/// first, an observed deletion. Shared by the controllers that delete pods through the API
/// and count a deletion as done once the pod is terminating (Job, DaemonSet).
pub fn observe_child<O: Object>(
    owners: &Informer<O>,
    expectations: &crate::expectations::Expectations,
    change: &kubus_controller_runtime::Change<k8s_openapi::api::core::v1::Pod>,
    selector: impl Fn(&O) -> LabelSelector + Copy,
) -> Vec<ObjectKey> {
    use kubus_controller_runtime::Change;
    type Pod = k8s_openapi::api::core::v1::Pod;
    let owner_key =
        |p: &Pod| p.controller_ref().filter(|r| refers_to::<O>(r)).map(|r| (p.namespace().to_string(), r.name.clone()));
    let mut keys = match change {
        Change::Applied { old, new } => {
            if let Some(k) = owner_key(new) {
                match old {
                    None => expectations.observed_add(&k),
                    Some(old) if new.is_deleting() && !old.is_deleting() => expectations.observed_del(&k),
                    _ => {}
                }
            }
            let mut keys = claimants(owners, &**new, selector);
            keys.extend(old.as_deref().map(|o| claimants(owners, o, selector)).unwrap_or_default());
            keys
        }
        Change::Deleted(p) => {
            if let Some(k) = owner_key(p).filter(|_| !p.is_deleting()) {
                expectations.observed_del(&k);
            }
            claimants(owners, &**p, selector)
        }
        Change::Resynced => Vec::new(),
    };
    keys.sort();
    keys.dedup();
    keys
}

/// The merge patch that makes `owner` the controller of `obj`; its resourceVersion makes the
/// adoption lose to any concurrent change of the object.
pub fn adopt_patch<K: Object, O: Object>(obj: &K, owner: &O) -> Value {
    let mut refs = obj.owner_references().to_vec();
    refs.push(controller_ref(owner));
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version()}})
}

/// The merge patch that drops the owner reference of `owner_uid` from `obj`.
pub fn release_patch<K: Object>(obj: &K, owner_uid: &str) -> Value {
    let refs: Vec<&OwnerReference> = obj.owner_references().iter().filter(|r| r.uid != owner_uid).collect();
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version()}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn rs(uid: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn selectors_claim_only_what_they_match_and_never_everything() {
        let app = ApiSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() };
        let sel = selector_of(Some(&app));
        assert!(selects(&sel, &labels(&[("app", "web"), ("pod-template-hash", "x")])));
        assert!(!selects(&sel, &labels(&[("app", "db")])));
        assert!(!selects(&sel, &BTreeMap::new()));
        // Empty, missing or invalid selectors adopt nothing.
        assert!(!selects(&selector_of(Some(&ApiSelector::default())), &labels(&[("app", "web")])));
        assert!(!selects(&selector_of(None), &labels(&[("app", "web")])));
        let bad = ApiSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(!selects(&selector_of(Some(&bad)), &labels(&[("app", "web")])));
        let expr = ApiSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
            ..Default::default()
        };
        assert!(selects(&selector_of(Some(&expr)), &labels(&[("tier", "b")])));
    }

    fn pod(ns: &str, name: &str, app: &str, tier: &str, controlled: bool) -> Arc<Pod> {
        let mut p = Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some(labels(&[("app", app), ("tier", tier)])),
                ..Default::default()
            },
            ..Default::default()
        };
        if controlled {
            p.metadata.owner_references = Some(vec![controller_ref(&rs("u-other"))]);
        }
        Arc::new(p)
    }

    #[test]
    fn orphans_are_found_through_their_rarest_pinned_label() {
        let mut cache: Cache<Pod> = Cache::default();
        cache.add_index(ORPHANS, Arc::new(orphan_namespace::<Pod>));
        cache.add_index(ORPHAN_LABELS, Arc::new(orphan_labels::<Pod>));
        for p in [
            pod("a", "web-1", "web", "front", false),
            pod("a", "web-2", "web", "back", false),
            pod("a", "owned", "web", "front", true),
            pod("a", "db", "db", "back", false),
            pod("b", "web-3", "web", "front", false),
        ] {
            cache.insert(p.key(), p);
        }
        let names = |cache: &Cache<Pod>, sel: &LabelSelector| {
            let mut v: Vec<String> = orphans_in(cache, "a", sel).iter().map(|p| p.name().to_string()).collect();
            v.sort();
            v
        };
        let sel = |pairs: &[(&str, &str)]| {
            selector_of(Some(&ApiSelector { match_labels: Some(labels(pairs)), ..Default::default() }))
        };
        // Controlled pods and other namespaces are never candidates.
        assert_eq!(names(&cache, &sel(&[("app", "web")])), ["web-1", "web-2"]);
        assert_eq!(names(&cache, &sel(&[("app", "web"), ("tier", "front")])), ["web-1"]);
        assert!(names(&cache, &sel(&[("app", "cache")])).is_empty());
        // Expressions only: the namespace's orphans, filtered.
        let not_db = ApiSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
            ..Default::default()
        };
        assert_eq!(names(&cache, &selector_of(Some(&not_db))), ["web-1", "web-2"]);
        // Empty and invalid selectors claim nothing.
        assert!(names(&cache, &selector_of(Some(&ApiSelector::default()))).is_empty());
        assert!(names(&cache, &selector_of(None)).is_empty());
        // Adoption moves a pod out of the indexes.
        cache.insert(pod("a", "web-1", "web", "front", true).key(), pod("a", "web-1", "web", "front", true));
        assert_eq!(names(&cache, &sel(&[("app", "web")])), ["web-2"]);
        assert_eq!(cache.count(ORPHAN_LABELS, "a/tier=front"), 0);
    }

    #[test]
    fn adoption_and_release_patches_keep_other_owners() {
        let owner = rs("u-rs");
        let mut pod = Pod::default();
        pod.metadata.resource_version = Some("42".into());
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "cm".into(),
            uid: "u-cm".into(),
            ..Default::default()
        }]);
        let adopt = adopt_patch(&pod, &owner);
        assert_eq!(
            adopt,
            json!({"metadata": {"resourceVersion": "42", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u-cm"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u-rs",
                    "controller": true, "blockOwnerDeletion": true}]}})
        );
        pod.metadata.owner_references.as_mut().unwrap().push(controller_ref(&owner));
        assert!(refers_to::<ReplicaSet>(pod.controller_ref().unwrap()));
        assert!(!refers_to::<Pod>(pod.controller_ref().unwrap()));
        let release = release_patch(&pod, "u-rs");
        assert_eq!(
            release,
            json!({"metadata": {"resourceVersion": "42", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u-cm"}]}})
        );
    }
}
