#!/usr/bin/env bash
# Installs what tests/browser.rs needs when it is missing, then does nothing more: Debian's
# chromium (apt-get, as root or through sudo) and this directory's npm packages at the exact
# versions of package-lock.json (`npm ci`; node >= 20 and npm must be present). Safe to run
# every time: when everything is there it only checks. .ci/run calls it before the tests.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "install.sh: please install chromium" >&2; exit 1; }
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install.sh: need root or sudo to install chromium" >&2; exit 1; }
    as_root=(sudo)
  fi
  echo "install.sh: installing chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq chromium >/dev/null
fi

command -v npm >/dev/null 2>&1 || { echo "install.sh: please install node (>= 20) and npm" >&2; exit 1; }
# `npm ls` fails when a package is missing or not at the version package.json pins.
if ! npm ls --depth=0 >/dev/null 2>&1; then
  echo "install.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
