//! The scheduler: [`framework`] holds kube-scheduler's plugins over typed pods and nodes
//! (pure); [`scheduler`] is the actor that keeps a cluster snapshot from informers
//! ([`event_handlers`]), runs a scheduling queue ordered by priority with backoff and queueing
//! hints ([`queueing_hints`]), preempts lower-priority pods for pods that fit nowhere, and
//! binds pods through the API server.
#![forbid(unsafe_code)]

mod active_queue;
mod event_handlers;
pub mod framework;
pub mod queueing_hints;
pub mod scheduler;

pub use scheduler::{Scheduler, Shutdown};
