//! Persistent volumes and claims (upstream `pkg/registry/core/persistentvolume` and
//! `persistentvolumeclaim`, with the StorageObjectInUseProtection admission plugin): both
//! start Pending with a protection finalizer, which their controllers remove only once nothing
//! uses them, so a claim in use by a pod, or a bound volume, outlives a delete until then.

use super::Strategy;
use crate::object::meta;
use kubus_apimachinery::ResourceInfo;
use serde_json::{json, Value};

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

pub struct StorageStrategy {
    pub info: &'static ResourceInfo,
    pub finalizer: &'static str,
}

impl Strategy for StorageStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
        let m = meta(obj);
        let finalizers = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut() {
            if !list.iter().any(|f| f == self.finalizer) {
                list.push(json!(self.finalizer));
            }
        }
    }
}
