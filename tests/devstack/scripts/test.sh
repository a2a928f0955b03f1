#!/usr/bin/env bash
# The whole test run (README's test command, and what .ci/run calls): installs what is missing,
# checks formatting and lints on the host and on wasm32, builds the worker, then runs every
# test: host tests of the core, the devstack tools' tests (the official @upstash/redis and
# OpenAI clients among them) and the end-to-end suite on workerd with a real redis-server.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/setup.sh"
step() { echo; echo "== $*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check
step "clippy (host, every target)"
cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32-unknown-unknown)"
cargo clippy -p llm-edge-cache --target wasm32-unknown-unknown --all-targets -- -D warnings
step "build the worker"
"$HERE/build-worker.sh"
step "cargo test (host, devstack, end-to-end on workerd)"
cargo test --workspace
