//! Kubernetes API machinery with no I/O, shared by the API server and every actor that
//! speaks the API: the resource registry, `Status` errors, label and field selectors, the
//! three patch types, validation, defaulting and the server-side table printers.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod cron;
pub mod meta;
pub mod metrics_api;
pub mod patch;
pub mod pod;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod resource;
pub mod resources;
pub mod selector;
pub mod status;
pub mod table;
pub mod taints;
pub mod time;
pub mod validation;
pub mod volume;

pub use meta::{Object, ObjectExt, ObjectKey};
pub use resource::{ResourceInfo, Subresource};
pub use status::{Cause, CauseType, StatusDetails, StatusError};
