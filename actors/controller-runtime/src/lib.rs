//! What every Kubus controller shares, after kube-runtime's split: [`informer`] (a reflector:
//! list, then watch, of one resource from the store, kept in memory as typed shared objects
//! with indexes, fanned out to subscribers), [`workqueue`] (deduplicated keys with
//! rate-limited and delayed requeue), [`controller`] (the one way to write a controller: a
//! builder over informers, a queue and a reconciler), [`client`] (typed writes through the API
//! server over NATS, so every write is validated in one place), [`events`] and [`leader`].
#![forbid(unsafe_code)]

pub mod arbiter;
pub mod client;
pub mod client_builder;
pub mod controller;
pub mod events;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod node_lease;
pub mod ratelimit;
pub mod workqueue;

pub use client::{Client, ClientError, DeleteParams, ListParams, Propagation};
pub use controller::{Action, Controller, Reconciler};
pub use events::Recorder;
pub use informer::{Change, DynInformer, Informer, InformerFactory, ObjectKey};
pub use workqueue::WorkQueue;
