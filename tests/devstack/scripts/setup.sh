#!/usr/bin/env bash
# Installs what the local run and the tests need, skipping whatever is already installed, and
# exports the environment they run in. Sourced by start.sh and test.sh; safe to run again.
#   Debian: redis-server          Rust: the wasm32 targets, worker-build, wasm-bindgen-cli
#   npm (package-lock.json): node 22, wrangler (workerd), binaryen, the official clients
#   (@upstash/redis, @upstash/vector, openai), playwright-core and uplot
# Nothing is downloaded from outside the package registries (TOOLCHAIN.md): worker-build is
# pointed at the wasm-bindgen and esbuild installed here instead of fetching its own.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$ROOT"
say() { echo "setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
  say "installing redis-server (Debian)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

for target in wasm32-unknown-unknown wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$target"; then
    say "adding the Rust target $target"
    rustup target add "$target"
  fi
done
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/node/bin/node ] \
   || ! cmp -s package-lock.json node_modules/.package-lock.json.installed 2>/dev/null; then
  # Not `npm ci`: the registry reachable here serves workerd's Linux packages only, so the lock
  # cannot list the macOS/Windows ones and `npm ci` refuses it as out of sync. `npm install`
  # installs exactly the locked versions that exist and leaves the lock file as it is.
  say "installing npm packages (npm install from package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.package-lock.json.installed
fi

WORKER_BUILD_VERSION=0.8.7
if [ "$(worker-build --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (about 10 minutes the first time)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked --quiet
fi

# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock (pinned in Cargo.toml).
BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $BINDGEN_VERSION (about 5 minutes the first time)"
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --quiet
fi

export PATH="$ROOT/node_modules/node/bin:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export ESBUILD_BIN="$(ls "$ROOT"/node_modules/@esbuild/*/bin/esbuild | head -n 1)"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export XDG_CONFIG_HOME="$ROOT/target/xdg"
# CI builds once from scratch: incremental artefacts would only cost disk (gigabytes with wasmtime).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
mkdir -p "$XDG_CONFIG_HOME"

# The sentence-embedding model of the fake upstream's /v1/embeddings (exports EMBED_MODEL_DIR).
. "$ROOT/tests/devstack/scripts/setup-model.sh"
