#!/usr/bin/env bash
# Builds the Spin component (target/wasm32-wasip2/spin/llm_edge_cache.wasm, what spin.toml
# points at) and the Spin-compatible test host that runs it locally and in the tests.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echo "building the Spin component and the Spin test host..." >&2
cargo build -p llm-edge-cache --target wasm32-wasip2 --profile spin
cargo build -p spin-host --release
