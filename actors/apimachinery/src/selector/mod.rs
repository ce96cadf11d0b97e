//! Label and field selectors: the `labelSelector` / `fieldSelector` query syntax of list and
//! watch requests, `metav1.LabelSelector` objects, and matching both against objects.

// Errors are the crate's `StatusError` on purpose: callers send them to clients as they are,
// and selector parsing is far from any hot path, so its size is no concern here.
#![allow(clippy::result_large_err)]

mod field;
mod label;
mod names;
pub mod node;

pub use field::{stored_fields, value_of as field_value, FieldOperator, FieldSelector, FieldTerm};
pub use label::{labels_match, LabelSelector, Operator, Requirement};
