#!/usr/bin/env bash
# Installs the system packages Kubus needs, idempotently (Debian/Ubuntu, as root).
# `deps.sh --test` adds what the test suite needs.
set -euo pipefail
need=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The node agent: busybox-static for the built-in busybox image, the CNI plugins for pod
# networking (bridge, host-local, portmap, loopback; portmap and bridge call iptables), util-linux's
# unshare to pin pod namespaces.
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# kube-proxy deletes the conntrack entries of UDP flows whose endpoint left.
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
# Seccomp filters: the kubus binary links libseccomp.
[ -e /usr/include/seccomp.h ] || need+=(libseccomp-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${1:-}" = "--test" ]; then
  # Dashboards are checked against a real Prometheus.
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  # Image tests: a real registry and the tools that push and pack images.
  command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  command -v umoci >/dev/null 2>&1 || need+=(umoci)
  # HTTPS probe tests: a self-signed certificate and a TLS server (s_server).
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "run as root to install: ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
command -v kubectl >/dev/null 2>&1 || echo "note: kubectl not found; install kubectl v1.32 to drive the cluster" >&2
exit 0
