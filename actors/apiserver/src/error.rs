//! Store errors as API statuses: the one place a [`StoreError`] becomes a `metav1.Status`.

use kubus_apimachinery::{ResourceInfo, StatusError};
use kubus_bus::StoreError;

/// What the failed store operation was about; it decides how 404s and 409s are worded.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A read or write of one object: "not found", "already exists" and conflicts name it.
    Object(&'static ResourceInfo, &'a str),
    /// A reservation of a ClusterIP or node port: any failure makes allocation unavailable.
    Reservation,
    /// The store itself (revisions, lists).
    Store,
}

/// The API status of a store failure.
pub fn status(e: StoreError, target: Target<'_>) -> StatusError {
    match (e, target) {
        (e, Target::Reservation) => StatusError::service_unavailable(format!("allocating: {e}")),
        (StoreError::AlreadyExists(_), Target::Object(info, name)) => {
            StatusError::already_exists(info.group, info.resource, name)
        }
        (StoreError::NotFound(_), Target::Object(info, name)) => {
            StatusError::not_found(info.group, info.resource, name)
        }
        (StoreError::Conflict { .. }, Target::Object(info, name)) => conflict(info, name),
        (StoreError::Gone { requested, oldest }, _) => {
            StatusError::resource_expired(format!("too old resource version: {requested} ({oldest})"))
        }
        (StoreError::TooLarge { size, limit, .. }, _) => {
            StatusError::too_large(format!("object is too large: {size} bytes, limit {limit} bytes"))
        }
        (StoreError::Unavailable(m), _) => StatusError::service_unavailable(format!("storage unavailable: {m}")),
        (other, _) => StatusError::internal(other.to_string()),
    }
}

/// A write lost an optimistic-concurrency race, or named an old resourceVersion.
pub fn conflict(info: &'static ResourceInfo, name: &str) -> StatusError {
    StatusError::conflict(
        info.group,
        info.resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// `result.or_status(target)?` in place of a `map_err` at every store call.
pub trait OrStatus<T> {
    fn or_status(self, target: Target<'_>) -> Result<T, StatusError>;
}

impl<T> OrStatus<T> for Result<T, StoreError> {
    fn or_status(self, target: Target<'_>) -> Result<T, StatusError> {
        self.map_err(|e| status(e, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::Key;

    #[test]
    fn object_errors_name_the_object() {
        let pods = kubus_apimachinery::resource::find("", "v1", "pods").unwrap();
        let key = Key::new("", "pods", Some("default"), "web");
        let e = status(StoreError::NotFound(key.clone()), Target::Object(pods, "web"));
        assert_eq!((e.code, e.reason, e.message.as_str()), (404, "NotFound", "pods \"web\" not found"));
        let e = status(StoreError::AlreadyExists(key.clone()), Target::Object(pods, "web"));
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        let e = status(StoreError::Conflict { key, expected: 1, current: 2 }, Target::Object(pods, "web"));
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert!(e.message.ends_with("please apply your changes to the latest version and try again"), "{}", e.message);
    }

    #[test]
    fn store_and_reservation_errors() {
        let e = status(StoreError::Gone { requested: 3, oldest: 9 }, Target::Store);
        assert_eq!((e.code, e.message.as_str()), (410, "too old resource version: 3 (9)"));
        let e = status(StoreError::Unavailable("down".into()), Target::Store);
        assert_eq!((e.code, e.message.as_str()), (503, "storage unavailable: down"));
        let e = status(StoreError::Internal("x".into()), Target::Reservation);
        assert_eq!((e.code, e.message.as_str()), (503, "allocating: store error: x"));
        let e = status(StoreError::Internal("x".into()), Target::Store);
        assert_eq!(e.code, 500);
    }
}
