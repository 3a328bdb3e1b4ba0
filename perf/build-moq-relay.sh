#!/usr/bin/env bash
# Builds moq-relay from crates.io into perf/.tools (ignored by git), never vendoring its code:
# its default build and its `io-uring` feature build. Builds already present are skipped.
# Both installs share one target directory so their common dependencies compile once.
# Usage: perf/build-moq-relay.sh [default] [io-uring]   (no argument: both)
set -euo pipefail

MOQ_RELAY_VERSION="${MOQ_RELAY_VERSION:-0.17.10}"
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/.tools"
export CARGO_TARGET_DIR="$tools/target"

install() { # $1 = flavour (folder suffix), rest = extra cargo install args
    local flavour="$1"; shift
    local root="$tools/moq-relay-$flavour"
    local stamp="$root/.version"
    if [[ -x "$root/bin/moq-relay" && "$(cat "$stamp" 2>/dev/null)" == "$MOQ_RELAY_VERSION" ]]; then
        echo "moq-relay $MOQ_RELAY_VERSION ($flavour) present: $root/bin/moq-relay"
        return
    fi
    echo "building moq-relay $MOQ_RELAY_VERSION ($flavour) into $root"
    # No --locked: one patch version in its lock file is missing from the registry here.
    cargo install moq-relay --version "$MOQ_RELAY_VERSION" --root "$root" --force "$@"
    echo "$MOQ_RELAY_VERSION" > "$stamp"
}

for flavour in "${@:-default io-uring}"; do
    for f in $flavour; do
        case "$f" in
            default) install default ;;
            io-uring) install io-uring --features io-uring ;;
            *) echo "unknown flavour $f (default, io-uring)" >&2; exit 2 ;;
        esac
    done
done
