#!/usr/bin/env bash
# Runs the whole test suite: unit tests and end-to-end tests with a real nats-server and kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
