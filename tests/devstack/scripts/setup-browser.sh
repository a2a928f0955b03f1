#!/usr/bin/env bash
# Installs the real browser the page tests drive: Debian's chromium, skipped when present. The
# driver is npm `playwright-core` (package-lock.json), pointed at /usr/bin/chromium: nothing is
# downloaded from outside the package registries. Run by test.sh; the local run does not need it.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! [ -x /usr/bin/chromium ]; then
  echo "setup: installing chromium (Debian)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
