//! PriorityClasses (upstream `pkg/registry/scheduling/priorityclass`): the built-in classes
//! cannot be deleted; the rest of their rules are validation and the Priority admission.

use super::Strategy;
use kubus_apimachinery::validation::scheduling::SYSTEM_PRIORITY_CLASSES;
use kubus_apimachinery::{ResourceInfo, StatusError};

pub struct PriorityClassStrategy {
    pub info: &'static ResourceInfo,
}

impl Strategy for PriorityClassStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn check_delete(&self, name: &str) -> Result<(), StatusError> {
        if SYSTEM_PRIORITY_CLASSES.iter().any(|(n, _)| *n == name) {
            return Err(StatusError::forbidden(
                "scheduling.k8s.io",
                "priorityclasses",
                name,
                "this is a system priority class and cannot be deleted",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_classes_stay() {
        let info = kubus_apimachinery::resource::find("scheduling.k8s.io", "v1", "priorityclasses").unwrap();
        let s = PriorityClassStrategy { info };
        let e = s.check_delete("system-node-critical").unwrap_err();
        assert_eq!(e.code, 403);
        assert!(e.message.ends_with("this is a system priority class and cannot be deleted"), "{}", e.message);
        assert!(s.check_delete("high").is_ok());
    }
}
