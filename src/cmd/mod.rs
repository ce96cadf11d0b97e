pub mod bench;
pub mod image;
pub mod node;
pub mod sim;
pub mod up;
