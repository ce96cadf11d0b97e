//! Reading `status.conditions` of any object (pods, nodes, deployments...): every controller,
//! the kubelet and the benches ask "what does the Ready condition say".

use serde_json::Value;

/// The condition of this type in `obj.status.conditions`.
pub fn find<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    in_status(&obj["status"], kind)
}

/// The same, given the `status` object itself (as a status patch is built).
pub fn in_status<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// Its status ("True", "False", "Unknown").
pub fn status<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    find(obj, kind)?["status"].as_str()
}

/// Whether the condition of this type is True.
pub fn is_true(obj: &Value, kind: &str) -> bool {
    status(obj, kind) == Some("True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_condition_of_a_type() {
        let pod = json!({"status": {"conditions": [
            {"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        assert_eq!(status(&pod, "Ready"), Some("False"));
        assert!(is_true(&pod, "Initialized") && !is_true(&pod, "Ready"));
        assert_eq!(find(&pod, "PodScheduled"), None);
        assert_eq!(status(&json!({}), "Ready"), None);
    }
}
