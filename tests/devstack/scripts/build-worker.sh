#!/usr/bin/env bash
# Builds the Cloudflare worker (build/worker/shim.mjs + build/index_bg.wasm) once, for the tests
# and the local run; wrangler instances then serve this build without rebuilding.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echo "building the worker (worker-build --release)..." >&2
worker-build --release
