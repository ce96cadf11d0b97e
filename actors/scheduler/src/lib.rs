//! The scheduler: [`framework`] holds kube-scheduler's plugins over typed pods and nodes
//! (pure); [`scheduler`] is the actor that keeps a cluster snapshot from informers, runs a
//! scheduling queue with backoff and binds pods through the API server.
#![forbid(unsafe_code)]

pub mod framework;
pub mod scheduler;

pub use scheduler::{Scheduler, Shutdown};
