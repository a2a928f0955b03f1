#!/usr/bin/env bash
# Installs the official Prometheus Python client (PyPI prometheus-client, for its text-format
# parser) into a venv under the target dir, once; prints the venv's python. Skips the install
# when the venv already has it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/py-prometheus"
if ! "$venv/bin/python" -c 'import prometheus_client' >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'prometheus-client==0.26.0' >&2
fi
echo "$venv/bin/python"
