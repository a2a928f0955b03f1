#!/usr/bin/env bash
# Builds the Cloudflare worker (build/worker/shim.mjs + build/index_bg.wasm) once, for the tests
# and the local run; wrangler instances then serve this build without rebuilding. Runs exactly
# the [build] command of wrangler.toml, so what is tested is what `wrangler deploy` ships.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
command=$(sed -n 's/^command = "\(.*\)"$/\1/p' wrangler.toml | head -n 1)
[ -n "$command" ] || { echo "no [build] command in wrangler.toml" >&2; exit 1; }
echo "building the worker: $command" >&2
bash -c "$command"
