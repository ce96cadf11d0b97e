//! Taints and tolerations, matched as upstream's `ToleratesTaint` does (the scheduler's
//! filters and the node lifecycle controller's evictions ask the same question).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether the toleration tolerates the taint: the effect matches (or the toleration names
/// none), the key matches (or the toleration names none), and the operator is `Exists`, or
/// `Equal` (the default) with the same value. An unknown operator tolerates nothing.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first toleration that tolerates the taint.
pub fn tolerating<'a>(tolerations: &'a [Toleration], taint: &Taint) -> Option<&'a Toleration> {
    tolerations.iter().find(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(key: Option<&str>, operator: Option<&str>, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: key.map(String::from),
            operator: operator.map(String::from),
            value: value.map(String::from),
            effect: effect.map(String::from),
            toleration_seconds: None,
        }
    }

    #[test]
    fn matches_as_upstream() {
        let taint =
            Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoSchedule".into(), time_added: None };
        assert!(tolerates(&tol(Some("dedicated"), None, Some("gpu"), None), &taint));
        assert!(tolerates(&tol(Some("dedicated"), Some("Equal"), Some("gpu"), Some("NoSchedule")), &taint));
        assert!(!tolerates(&tol(Some("dedicated"), Some("Equal"), Some("cpu"), None), &taint));
        assert!(tolerates(&tol(None, Some("Exists"), None, None), &taint));
        assert!(!tolerates(&tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")), &taint));
        assert!(!tolerates(&tol(Some("dedicated"), Some("Gt"), Some("gpu"), None), &taint));
        let bare = Taint { key: "k".into(), value: None, effect: "NoExecute".into(), time_added: None };
        assert!(tolerates(&tol(Some("k"), Some("Equal"), None, None), &bare));
        assert!(tolerations_tolerate(&[tol(Some("x"), None, None, None), tol(Some("k"), None, None, None)], &bare));
        assert_eq!(tolerating(&[tol(Some("x"), None, None, None)], &bare), None);
    }
}
