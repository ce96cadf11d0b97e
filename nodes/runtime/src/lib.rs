//! Container runtime of a node (shim, protocol, client, cgroups, logs).
