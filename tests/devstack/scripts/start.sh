#!/usr/bin/env bash
# README's run command: installs what is missing, builds the gateway and runs it locally on
# workerd (or, with `--host spin`, on the Spin test host) with local KV, a real redis-server
# behind the Upstash-compatible REST endpoint, and the fake upstream (or real OpenAI when
# OPENAI_API_KEY is set). Ctrl-C stops everything. Usage: start.sh [--host cloudflare|spin]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --host spin "*|*" --host=spin "*) "$HERE/build-spin.sh" ;;
  *) "$HERE/build-worker.sh" ;;
esac
. "$HERE/setup.sh"
exec cargo run --quiet -p devstack --bin devstack -- up --port "${PORT:-8787}" "$@"
