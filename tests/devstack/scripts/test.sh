#!/usr/bin/env bash
# The whole test run (README's test command, and what .ci/run calls): installs what is missing,
# checks formatting and lints on the host and on both wasm targets, builds the Cloudflare worker,
# the Spin component and the Spin test host, then runs every test: host tests of the core, the
# tools' tests (the official @upstash/redis and OpenAI clients among them, the Spin host against
# a real spin-sdk guest) and the end-to-end suite on workerd and on the Spin host, each with a
# real redis-server; pages are checked in Debian's chromium.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/setup.sh"
"$HERE/setup-browser.sh"
step() { echo; echo "== $*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check
step "clippy (host, every target)"
cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32-unknown-unknown: Cloudflare)"
cargo clippy -p llm-edge-cache --target wasm32-unknown-unknown --all-targets -- -D warnings
step "clippy (wasm32-wasip2: Spin)"
cargo clippy -p llm-edge-cache --target wasm32-wasip2 --all-targets -- -D warnings
step "build the Cloudflare worker"
"$HERE/build-worker.sh"
step "build the Spin component and the Spin test host"
"$HERE/build-spin.sh"
step "cargo test (core, tools, Spin host, end-to-end on workerd and Spin)"
cargo test --workspace
