//! kube-proxy (nftables).
