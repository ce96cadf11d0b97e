pub mod cluster_config;
pub mod dns;
pub mod image;
pub mod node;
pub mod sim;
pub mod up;

pub use kubus_controller_runtime::arbiter::named as named_arbiter;
