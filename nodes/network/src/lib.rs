//! Pod sandboxes and CNI.
