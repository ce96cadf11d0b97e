//! What every Kubus controller shares, after kube-runtime's split: [`informer`] (a reflector:
//! list, then watch, of one resource from the store, kept in memory and fanned out to
//! handlers), [`workqueue`] (deduplicated keys with rate-limited requeue) and [`client`]
//! (writes through the API server over NATS, so every write is validated in one place).
#![forbid(unsafe_code)]

pub mod client;
pub mod controller;
pub mod events;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod workqueue;

pub use client::Client;
pub use controller::{Action, Reconciler};
pub use events::Recorder;
pub use informer::{Change, Informer, InformerFactory};
pub use workqueue::WorkQueue;
