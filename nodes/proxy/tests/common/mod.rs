//! Test helpers shared by the kube-proxy and cluster DNS tests (nodes/dns/tests includes this
//! file): objects written straight to the store, as the API server would store them.

use kubus_apimachinery::{resource, Object, ObjectExt};
use kubus_bus::{Key, Store};

/// Creates or replaces `obj` in the store; returns its new revision.
pub async fn put<K: Object>(store: &Store, obj: &K) -> u64 {
    let info = resource::of::<K>();
    let key = Key::new(info.group, info.resource, Some(obj.namespace()), obj.name());
    let bytes = bytes::Bytes::from(serde_json::to_vec(obj).unwrap());
    match store.get(&key).await.unwrap() {
        Some(cur) => store.update(&key, bytes, cur.revision).await.unwrap(),
        None => store.create(&key, bytes).await.unwrap(),
    }
}
