pub mod bench;
pub mod bench_node;
pub mod image;
pub mod node;
pub mod sim;
pub mod up;
