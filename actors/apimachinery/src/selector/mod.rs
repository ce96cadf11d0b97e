//! Label and field selectors: the `labelSelector` / `fieldSelector` query syntax of list and
//! watch requests, `metav1.LabelSelector` objects, and matching both against objects.

mod field;
mod label;
mod names;

pub use field::{FieldOperator, FieldSelector, FieldTerm};
pub use label::{LabelSelector, Operator, Requirement};
