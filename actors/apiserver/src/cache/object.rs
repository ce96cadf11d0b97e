//! One object as the watch cache holds it: encoded once, shared by every list and watch that
//! sends it, with what lists and watches select on read out beside it (upstream's cacher keeps
//! each object with its label and field sets, and serializes it once per event for all
//! watchers). A decoded JSON tree of a pod takes several times the memory of its encoding, and
//! the cache holds every object of the cluster plus the recent history of each; so only what a
//! caller asks for is decoded, when it asks.

use super::{Gr, ObjKey};
use bytes::Bytes;
use kubus_apimachinery::selector::{field_value, stored_fields, FieldSelector, LabelSelector};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::any::Any;
use std::sync::{Arc, OnceLock};

pub struct CachedObject {
    namespace: Box<str>,
    name: Box<str>,
    /// The storage form as JSON, resourceVersion set.
    json: Bytes,
    /// `metadata.labels`, sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The fields the resource can be selected on; `fields` holds those that are not empty.
    field_names: &'static [&'static str],
    fields: Box<[(&'static str, Box<str>)]>,
    /// The decoded form, for the few small kinds read on every request (see [`Self::shared`]).
    shared: OnceLock<Arc<Value>>,
    /// One value computed from the object, kept with it (see [`Self::derived`]).
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for CachedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedObject({}/{}, {} bytes)", self.namespace, self.name, self.json.len())
    }
}

impl CachedObject {
    /// From an object of resource `gr` in its storage form with its resourceVersion set.
    pub fn new(gr: &Gr, value: &Value) -> CachedObject {
        let meta = &value["metadata"];
        let text = |v: &Value| -> Box<str> { v.as_str().unwrap_or_default().into() };
        let mut labels: Vec<(Box<str>, Box<str>)> = meta["labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.as_str().into(), label_text(v))).collect())
            .unwrap_or_default();
        labels.sort_unstable();
        let field_names = stored_fields(&gr.0, &gr.1);
        // Name and namespace are held already; an alias reads as its field (see `field`).
        let fields = field_names
            .iter()
            .filter(|f| !matches!(**f, "metadata.name" | "metadata.namespace") && alias_of(f).is_none())
            .filter_map(|f| {
                let v = field_value(value, f);
                (!v.is_empty()).then(|| (*f, v.into_boxed_str()))
            })
            .collect();
        CachedObject {
            namespace: text(&meta["namespace"]),
            name: text(&meta["name"]),
            // Serializing a Value cannot fail: its keys are strings. Shrunk to its length: the
            // growing buffer keeps up to twice that, for as long as the object is cached.
            json: Bytes::from(serde_json::to_vec(value).unwrap_or_default().into_boxed_slice()),
            labels: labels.into_boxed_slice(),
            field_names,
            fields,
            shared: OnceLock::new(),
            derived: OnceLock::new(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key(&self) -> ObjKey {
        (self.namespace.to_string(), self.name.to_string())
    }

    /// Whether this object sorts after `key` in a list.
    pub fn is_after(&self, key: &ObjKey) -> bool {
        (&*self.namespace, &*self.name) > (key.0.as_str(), key.1.as_str())
    }

    /// The storage form as JSON, resourceVersion set: what a list or watch sends as is.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The object decoded anew (not kept).
    pub fn value(&self) -> Value {
        // It was encoded from a Value, so it decodes.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The object decoded into a type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    /// The object's labels.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The object decoded once and kept with it: for small kinds read on every request (RBAC
    /// roles and bindings, namespaces), never for pods or other kinds that grow with the cluster.
    pub fn shared(&self) -> Arc<Value> {
        self.shared.get_or_init(|| Arc::new(self.value())).clone()
    }

    /// A value computed from the decoded object once and kept with this version of it (e.g.
    /// a role's parsed rules). One kind of value per object: a caller asking for another type
    /// gets it computed anew.
    pub fn derived<T: Send + Sync + 'static + ?Sized>(&self, compute: impl FnOnce(Arc<Value>) -> Arc<T>) -> Arc<T>
    where
        Arc<T>: Send + Sync,
    {
        if let Some(kept) = self.derived.get() {
            return match kept.downcast_ref::<Arc<T>>() {
                Some(v) => v.clone(),
                None => compute(self.shared()),
            };
        }
        // Two callers at once may both compute it; one of them is kept.
        let value = compute(self.shared());
        let _ = self.derived.set(Arc::new(value.clone()));
        value
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        let i = self.labels.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.labels[i].1)
    }

    /// A selectable field's value ("" when absent); None for a field the resource does not
    /// offer for selection.
    pub fn field(&self, name: &str) -> Option<&str> {
        let name = match alias_of(name) {
            Some(canonical) if self.field_names.contains(&canonical) => canonical,
            _ if self.field_names.contains(&name) => name,
            _ => return None,
        };
        match name {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => Some(&self.namespace),
            _ => Some(self.fields.iter().find(|(f, _)| *f == name).map_or("", |(_, v)| &**v)),
        }
    }

    /// Whether the object satisfies both selectors. A field the cache did not read out (a
    /// custom resource's selectable field) is read from the decoded object.
    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches_with(|k| self.label(k))
            && fields.matches_with(|f| self.field(f)).unwrap_or_else(|| fields.matches(&self.value()))
    }
}

/// Selectable fields whose value is by definition another's (the field selectors compute them
/// so): kept once, read under either name.
fn alias_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "spec.host" => "spec.nodeName",
        "regarding.kind" => "involvedObject.kind",
        "regarding.namespace" => "involvedObject.namespace",
        "regarding.name" => "involvedObject.name",
        "regarding.uid" => "involvedObject.uid",
        "regarding.apiVersion" => "involvedObject.apiVersion",
        "regarding.resourceVersion" => "involvedObject.resourceVersion",
        "regarding.fieldPath" => "involvedObject.fieldPath",
        "reportingController" => "reportingComponent",
        _ => return None,
    })
}

/// A label's value as text (labels are strings; anything else is read as upstream's decoder
/// would have refused it, i.e. never matches a real value).
fn label_text(v: &Value) -> Box<str> {
    match v {
        Value::String(s) => s.as_str().into(),
        // As the label selectors read a decoded object's labels.
        Value::Null => "".into(),
        other => other.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> CachedObject {
        let v = json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "web-1", "namespace": "prod", "resourceVersion": "7", "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}});
        CachedObject::new(&(String::new(), "pods".into()), &v)
    }

    #[test]
    fn selects_by_what_it_read_out_as_the_decoded_object_would() {
        let p = pod();
        let v = p.value();
        assert_eq!((p.namespace(), p.name()), ("prod", "web-1"));
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        for (labels, fields) in [
            ("app=web", ""),
            ("app in (web,db),tier!=back", "spec.nodeName=n1"),
            ("app=db", ""),
            ("!tier", ""),
            ("", "status.phase=Running,spec.restartPolicy="),
            ("", "spec.nodeName!=n1"),
            ("", "status.podIP=10.0.0.5"),
            ("", "spec.hostNetwork=false"),
            ("", "metadata.namespace=prod,metadata.name=web-1"),
            // Not selectable on pods: read from the object.
            ("", "spec.containers=x"),
        ] {
            let (l, f) = (LabelSelector::parse(labels).unwrap(), FieldSelector::parse(fields).unwrap());
            let decoded = l.matches_object(&v) && f.matches(&v);
            assert_eq!(p.matches(&l, &f), decoded, "{labels} / {fields}");
        }
        assert_eq!(p.field("spec.schedulerName"), Some(""));
        assert_eq!(p.field("spec.containers"), None);
    }

    #[test]
    fn events_select_alike_under_both_api_versions_names() {
        let ev = json!({"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "web.1", "namespace": "prod"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "prod", "uid": "u1"},
            "reason": "Started", "type": "Normal", "reportingComponent": "kubelet", "source": {"component": "kubelet"}});
        let cached = CachedObject::new(&(String::new(), "events".into()), &ev);
        for fields in [
            "involvedObject.name=web,involvedObject.kind=Pod",
            "regarding.name=web,regarding.kind=Pod,regarding.uid=u1",
            "regarding.fieldPath=",
            "reportingController=kubelet,reportingComponent=kubelet,source=kubelet",
            "metadata.name=web.1,metadata.namespace=prod,reason=Started,type!=Warning",
            "regarding.name=other",
        ] {
            let f = FieldSelector::parse(fields).unwrap();
            assert_eq!(cached.matches(&LabelSelector::everything(), &f), f.matches(&ev), "{fields}");
        }
        // Held once: no alias and neither name is stored again.
        assert!(cached.fields.iter().all(|(f, _)| alias_of(f).is_none() && !f.starts_with("metadata.")));
        // spec.host reads as spec.nodeName.
        assert_eq!(pod().field("spec.host"), Some("n1"));
    }

    #[test]
    fn is_after_orders_as_keys() {
        let p = pod();
        assert!(p.is_after(&("prod".into(), "web-0".into())));
        assert!(p.is_after(&("dev".into(), "zzz".into())));
        assert!(!p.is_after(&("prod".into(), "web-1".into())));
        assert!(!p.is_after(&("qa".into(), "a".into())));
    }

    #[test]
    fn shared_decodes_once() {
        let p = pod();
        assert!(Arc::ptr_eq(&p.shared(), &p.shared()));
    }
}
