#!/usr/bin/env bash
# Installs the system packages Kubus needs, idempotently (Debian/Ubuntu, as root).
# `deps.sh --test` adds what the test suite needs.
set -euo pipefail
need=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "${1:-}" = "--test" ]; then
  # Dashboards are checked against a real Prometheus.
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
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
