//! What every component asks of any typed object: its key, names, owners, whether it is being
//! deleted. [`Object`] is the bound of everything that handles typed API objects generically
//! (informers, the client, the garbage collector); [`ObjectExt`] reads its metadata.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;

/// (namespace, or "" for cluster-scoped objects; name): how caches and work queues name an
/// object.
pub type ObjectKey = (String, String);

/// A Kubernetes API object with standard metadata, as k8s-openapi types it.
pub trait Object:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + DeserializeOwned
    + Serialize
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Object for T where
    T: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + DeserializeOwned
        + Serialize
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Reading an object's metadata without spelling out its `Option`s each time.
pub trait ObjectExt: k8s_openapi::Metadata<Ty = ObjectMeta> {
    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }
    /// "" for cluster-scoped objects.
    fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or("")
    }
    /// The namespace, or "default" when the object carries none: where the API server puts a
    /// namespaced object created without one, and where events about cluster-scoped objects go.
    fn namespace_or_default(&self) -> &str {
        match self.namespace() {
            "" => "default",
            ns => ns,
        }
    }
    fn uid(&self) -> &str {
        self.metadata().uid.as_deref().unwrap_or("")
    }
    fn key(&self) -> ObjectKey {
        (self.namespace().to_string(), self.name().to_string())
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        self.metadata().labels.as_ref().unwrap_or(&NO_LABELS)
    }
    fn annotations(&self) -> &BTreeMap<String, String> {
        self.metadata().annotations.as_ref().unwrap_or(&NO_LABELS)
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels().get(key).map(String::as_str)
    }
    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations().get(key).map(String::as_str)
    }
    fn owner_references(&self) -> &[OwnerReference] {
        self.metadata().owner_references.as_deref().unwrap_or(&[])
    }
    /// The owner reference with `controller: true`, if any.
    fn controller_ref(&self) -> Option<&OwnerReference> {
        controller_of(self.metadata())
    }
    fn finalizers(&self) -> &[String] {
        self.metadata().finalizers.as_deref().unwrap_or(&[])
    }
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers().iter().any(|x| x == f)
    }
    /// A deletion was requested (it waits for finalizers or a grace period).
    fn is_deleting(&self) -> bool {
        self.metadata().deletion_timestamp.is_some()
    }
    fn resource_version(&self) -> Option<&str> {
        self.metadata().resource_version.as_deref()
    }
    fn generation(&self) -> i64 {
        self.metadata().generation.unwrap_or(0)
    }
}

impl<T: k8s_openapi::Metadata<Ty = ObjectMeta>> ObjectExt for T {}

/// The controller owner reference in a metadata block.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_deref().unwrap_or(&[]).iter().find(|r| r.controller == Some(true))
}

/// The owner reference a controller puts on what it creates (controller, blocking its owner's
/// foreground deletion).
pub fn controller_ref<K: Object>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: owner.name().to_string(),
        uid: owner.uid().to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `obj`'s controller is the object `owner` (same kind and uid).
pub fn is_controlled_by<K: Object>(obj: &impl ObjectExt, owner: &K) -> bool {
    obj.controller_ref().is_some_and(|r| r.uid == owner.uid() && r.kind == K::KIND)
}

/// Whether an owner reference names an object of K's kind (same kind and API group; any
/// version, as upstream matches owners across versions).
pub fn refers_to<K: k8s_openapi::Resource>(r: &OwnerReference) -> bool {
    r.kind == K::KIND && group_of(&r.api_version) == K::GROUP
}

/// The group of an `apiVersion` ("" for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;

    fn rs() -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn reads_metadata_without_options() {
        let pod = Pod::default();
        assert_eq!((pod.name(), pod.namespace(), pod.uid()), ("", "", ""));
        assert_eq!(pod.namespace_or_default(), "default");
        assert!(pod.labels().is_empty() && pod.owner_references().is_empty() && !pod.is_deleting());
        let owner = rs();
        assert_eq!(owner.key(), ("default".to_string(), "web-1".to_string()));
        let mut other = rs();
        other.metadata.namespace = Some("apps".into());
        assert_eq!(other.namespace_or_default(), "apps");
    }

    #[test]
    fn controller_references() {
        let owner = rs();
        let r = controller_ref(&owner);
        assert_eq!((r.api_version.as_str(), r.kind.as_str(), r.uid.as_str()), ("apps/v1", "ReplicaSet", "u1"));
        let mut pod = Pod::default();
        pod.metadata.owner_references =
            Some(vec![OwnerReference { uid: "x".into(), kind: "Job".into(), ..Default::default() }, r]);
        assert_eq!(pod.controller_ref().map(|r| r.name.as_str()), Some("web-1"));
        assert!(is_controlled_by(&pod, &owner));
        pod.metadata.owner_references.as_mut().unwrap()[1].uid = "other".into();
        assert!(!is_controlled_by(&pod, &owner));
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
    }

    #[test]
    fn owner_references_refer_to_a_kind_by_kind_and_group() {
        let r = controller_ref(&rs());
        assert!(refers_to::<ReplicaSet>(&r));
        assert!(!refers_to::<Pod>(&r));
        // Another version of the same group and kind is the same owner.
        assert!(refers_to::<ReplicaSet>(&OwnerReference { api_version: "apps/v1beta2".into(), ..r.clone() }));
        // The same kind in another group is not.
        assert!(!refers_to::<ReplicaSet>(&OwnerReference { api_version: "example.com/v1".into(), ..r.clone() }));
        assert!(!refers_to::<ReplicaSet>(&OwnerReference { api_version: "v1".into(), ..r }));
    }
}
