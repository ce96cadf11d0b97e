//! The node agent (kubelet).
