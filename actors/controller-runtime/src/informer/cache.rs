//! An informer's store: the objects by key, and indexes kept up to date on every change (as
//! client-go's thread-safe store and indexers), so a controller finds a namespace's objects,
//! an owner's dependents or a node's pods without scanning the resource.

use kubus_apimachinery::{Object, ObjectExt, ObjectKey};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The values an object is indexed under (none: not in the index).
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// Objects by namespace (every informer has it).
pub const BY_NAMESPACE: &str = "namespace";
/// Objects by the uid of their controller owner reference (every informer has it).
pub const BY_CONTROLLER: &str = "controller-uid";

struct Index<K> {
    func: IndexFn<K>,
    entries: HashMap<String, HashSet<ObjectKey>>,
}

impl<K> Index<K> {
    fn add(&mut self, key: &ObjectKey, obj: &K) {
        for v in (self.func)(obj) {
            self.entries.entry(v).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &ObjectKey, obj: &K) {
        for v in (self.func)(obj) {
            if let Some(keys) = self.entries.get_mut(&v) {
                keys.remove(key);
                if keys.is_empty() {
                    self.entries.remove(&v);
                }
            }
        }
    }
}

pub struct Cache<K> {
    objects: HashMap<ObjectKey, Arc<K>>,
    indexes: HashMap<&'static str, Index<K>>,
}

impl<K: Object> Default for Cache<K> {
    fn default() -> Self {
        let mut cache = Cache { objects: HashMap::new(), indexes: HashMap::new() };
        cache.add_index(BY_NAMESPACE, Arc::new(|o: &K| vec![o.namespace().to_string()]));
        cache.add_index(
            BY_CONTROLLER,
            Arc::new(|o: &K| o.controller_ref().map(|r| r.uid.clone()).into_iter().collect()),
        );
        cache
    }
}

impl<K: Object> Cache<K> {
    /// Adds an index (a second call with the same name keeps the first one).
    pub fn add_index(&mut self, name: &'static str, func: IndexFn<K>) {
        if self.indexes.contains_key(name) {
            return;
        }
        let mut index = Index { func, entries: HashMap::new() };
        for (k, o) in &self.objects {
            index.add(k, o);
        }
        self.indexes.insert(name, index);
    }

    /// Stores an object; returns the one it replaced.
    pub fn insert(&mut self, key: ObjectKey, obj: Arc<K>) -> Option<Arc<K>> {
        let old = self.objects.insert(key.clone(), obj.clone());
        for index in self.indexes.values_mut() {
            if let Some(old) = &old {
                index.remove(&key, old);
            }
            index.add(&key, &obj);
        }
        old
    }

    pub fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        for index in self.indexes.values_mut() {
            index.remove(key, &old);
        }
        Some(old)
    }

    /// Replaces everything (after a list).
    pub fn replace(&mut self, objects: HashMap<ObjectKey, Arc<K>>) {
        self.objects = objects;
        for index in self.indexes.values_mut() {
            index.entries.clear();
            for (k, o) in &self.objects {
                index.add(k, o);
            }
        }
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<K>> {
        self.objects.get(key)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<K>> {
        self.objects.values()
    }

    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.objects.keys()
    }

    /// The objects indexed under `value` by `index` (none for an unknown index).
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        self.index_keys(index, value).filter_map(|k| self.objects.get(k).cloned()).collect()
    }

    /// How many objects are indexed under `value`.
    pub fn count(&self, index: &str, value: &str) -> usize {
        self.indexes.get(index).and_then(|i| i.entries.get(value)).map_or(0, HashSet::len)
    }

    fn index_keys<'a>(&'a self, index: &str, value: &str) -> impl Iterator<Item = &'a ObjectKey> + 'a {
        self.indexes.get(index).and_then(|i| i.entries.get(value)).into_iter().flatten()
    }

    pub fn has_index(&self, index: &str) -> bool {
        self.indexes.contains_key(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(ns: &str, name: &str, owner: Option<&str>, node: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                owner_references: owner
                    .map(|uid| vec![OwnerReference { uid: uid.into(), controller: Some(true), ..Default::default() }]),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(String::from), ..Default::default() }),
            ..Default::default()
        })
    }

    fn names(mut pods: Vec<Arc<Pod>>) -> Vec<String> {
        let mut v: Vec<String> = pods.drain(..).map(|p| p.name().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn indexes_follow_every_change() {
        let mut c: Cache<Pod> = Cache::default();
        c.insert(("a".into(), "p1".into()), pod("a", "p1", Some("rs1"), None));
        c.insert(("a".into(), "p2".into()), pod("a", "p2", Some("rs1"), Some("n1")));
        c.insert(("b".into(), "p3".into()), pod("b", "p3", None, Some("n1")));
        // An index added later covers what is already there.
        c.add_index(
            "node",
            Arc::new(|p: &Pod| kubus_apimachinery::pod::node_name(p).map(String::from).into_iter().collect()),
        );
        assert_eq!(names(c.by_index(BY_NAMESPACE, "a")), ["p1", "p2"]);
        assert_eq!(names(c.by_index(BY_CONTROLLER, "rs1")), ["p1", "p2"]);
        assert_eq!(names(c.by_index("node", "n1")), ["p2", "p3"]);
        // An update moves the object between index values.
        c.insert(("a".into(), "p2".into()), pod("a", "p2", Some("rs2"), Some("n2")));
        assert_eq!(names(c.by_index(BY_CONTROLLER, "rs1")), ["p1"]);
        assert_eq!(names(c.by_index(BY_CONTROLLER, "rs2")), ["p2"]);
        assert_eq!(names(c.by_index("node", "n1")), ["p3"]);
        assert_eq!(c.count("node", "n2"), 1);
        // A delete leaves no entry behind.
        c.remove(&("a".into(), "p2".into()));
        assert_eq!(c.count(BY_CONTROLLER, "rs2"), 0);
        assert!(c.by_index("node", "n2").is_empty());
        assert!(c.by_index("no-such-index", "x").is_empty());
        // A relist rebuilds them.
        c.replace([(("c".to_string(), "p9".to_string()), pod("c", "p9", Some("rs9"), Some("n9")))].into());
        assert!(c.by_index(BY_NAMESPACE, "a").is_empty());
        assert_eq!(names(c.by_index("node", "n9")), ["p9"]);
        assert_eq!(names(c.by_index(BY_CONTROLLER, "rs9")), ["p9"]);
        assert_eq!(c.len(), 1);
    }
}
