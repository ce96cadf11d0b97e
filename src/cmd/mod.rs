pub mod bench;
pub mod sim;
pub mod up;
