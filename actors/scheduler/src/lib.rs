//! The scheduler: [`framework`] holds kube-scheduler's plugins over Kubernetes JSON (pure);
//! [`scheduler`] is the actor that keeps a cluster snapshot from informers, runs a
//! scheduling queue with backoff and binds pods through the API server.
#![forbid(unsafe_code)]

pub mod framework;
pub mod scheduler;

/// The quantity parser the plugins use (the API machinery's, so the scheduler and the API
/// server agree on every quantity).
mod quantity {
    pub use kubus_apimachinery::validation::quantity::*;
}

pub use scheduler::{Scheduler, Shutdown};
