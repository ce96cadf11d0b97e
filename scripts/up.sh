#!/usr/bin/env bash
# Brings up a single-machine Kubus cluster in the foreground (Ctrl-C stops it).
# Extra arguments go to `kubus up` (e.g. --data-dir DIR --api-port PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --bin kubus
exec ./target/release/kubus up "$@"
