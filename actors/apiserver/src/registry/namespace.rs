//! Namespaces (upstream `pkg/registry/core/namespace`): the initial namespaces cannot be
//! deleted; a deleted namespace turns Terminating until the namespace controller has emptied it
//! and cleared spec.finalizers through the finalize subresource, which is when it goes.

use super::{keep_unwritable, Strategy, SubresourceStrategy, Verbs};
use crate::object::{meta, now};
use k8s_openapi::api::core::v1::Namespace;
use kubus_apimachinery::{resource, validation, ResourceInfo, StatusError, Subresource};
use serde_json::{json, Value};

/// Namespaces every cluster needs.
const UNDELETABLE: [&str; 3] = ["default", "kube-system", "kube-public"];

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn info(&self) -> &'static ResourceInfo {
        resource::of::<Namespace>()
    }

    fn prepare_for_create(&self, ns: &mut Value) {
        ns["status"] = json!({"phase": "Active"});
    }

    fn prepare_for_update(&self, sub: Option<Subresource>, new: &mut Value, old: &Value) {
        keep_unwritable(self, sub, new, old);
        // spec.finalizers and the phase change only through their subresources.
        if sub.is_none() {
            validation::carry_over_for_update(self.info().group, self.info().kind, new, old);
        }
    }

    fn subresource(&self, sub: Subresource) -> Option<&'static dyn SubresourceStrategy> {
        (sub == Subresource::Finalize).then_some(&Finalize)
    }

    fn check_delete(&self, name: &str) -> Result<(), StatusError> {
        if UNDELETABLE.contains(&name) {
            return Err(StatusError::forbidden("", "namespaces", name, "this namespace may not be deleted"));
        }
        Ok(())
    }

    fn begin_deletion(&self, ns: &mut Value, already_deleting: bool) -> bool {
        if !already_deleting {
            let m = meta(ns);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            ns["status"]["phase"] = json!("Terminating");
        }
        true
    }

    fn deletion_pending(&self, ns: &Value) -> bool {
        ns["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
    }
}

/// `namespaces/{name}/finalize`: how the namespace controller clears spec.finalizers.
pub struct Finalize;

impl SubresourceStrategy for Finalize {
    fn verbs(&self) -> Verbs {
        Verbs::Put
    }

    fn apply(&self, _name: &str, old: &Value, request: &Value) -> Result<Value, StatusError> {
        let finalizers = &request["spec"]["finalizers"];
        let mut new = old.clone();
        new["spec"]["finalizers"] = if finalizers.is_null() { json!([]) } else { finalizers.clone() };
        new["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_waits_for_spec_finalizers() {
        let s = NamespaceStrategy;
        let e = s.check_delete("kube-system").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (403, "namespaces \"kube-system\" is forbidden: this namespace may not be deleted")
        );
        assert!(s.check_delete("team").is_ok());
        let mut ns = json!({"metadata": {"name": "team"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        assert!(s.begin_deletion(&mut ns, false));
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(ns["metadata"]["deletionGracePeriodSeconds"], 0);
        assert!(s.deletion_pending(&ns));
        let finalized = Finalize.apply("team", &ns, &json!({"spec": {}})).unwrap();
        assert_eq!(finalized["spec"]["finalizers"], json!([]));
        assert!(!s.deletion_pending(&finalized));
    }

    #[test]
    fn replace_keeps_finalizers_and_phase() {
        let s = NamespaceStrategy;
        let old = json!({"metadata": {"name": "team"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let mut new =
            json!({"metadata": {"name": "team"}, "spec": {"finalizers": []}, "status": {"phase": "Terminating"}});
        s.prepare_for_update(None, &mut new, &old);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(new["status"]["phase"], "Active");
        // The finalize subresource is how they change.
        let mut finalize = Finalize.apply("team", &old, &json!({"spec": {"finalizers": []}})).unwrap();
        s.prepare_for_update(Some(Subresource::Finalize), &mut finalize, &old);
        assert_eq!(finalize["spec"]["finalizers"], json!([]));
    }
}
