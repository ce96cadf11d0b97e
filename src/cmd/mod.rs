pub mod bench;
pub mod bench_node;
pub mod cluster_config;
pub mod dns;
pub mod image;
pub mod node;
pub mod sim;
pub mod up;
