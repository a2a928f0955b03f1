#!/usr/bin/env bash
# README's run command: installs what is missing, builds the worker and runs it locally on
# workerd with local KV, a real redis-server behind the Upstash-compatible REST endpoint, and
# the fake upstream (or real OpenAI when OPENAI_API_KEY is set). Ctrl-C stops everything.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/build-worker.sh"
. "$HERE/setup.sh"
exec cargo run --quiet -p devstack --bin devstack -- up --port "${PORT:-8787}"
