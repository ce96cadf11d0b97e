//! Image store of a node.
