#!/usr/bin/env bash
# Fan-out with 1 shard vs 2 shards (issue 4): 1 publisher at 30 fps x 5000 B (1.2 Mbit/s)
# to N subscribers through `moqring relay --threads S`, same load generator, same machine.
# Prints delivered Gbit/s, relay CPU, latency and loss per run, and appends a table to
# perf/RESULTS.md unless --no-append.
# Usage: perf/shards.sh [--no-append] [N...]   (default N: 300 1000 1500)
#   DURATION WARMUP: measured window and warmup in seconds (default 10 and 2)
set -euo pipefail
cd "$(dirname "$0")/.."
append=1
sizes=()
for arg in "$@"; do
    case "$arg" in
        --no-append) append=0 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) sizes+=("$arg") ;;
    esac
done
[[ ${#sizes[@]} -gt 0 ]] || sizes=(300 1000 1500)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
cargo build --release --quiet --bin moqring
bin=$(pwd)/target/release/moqring
out=$(pwd)/perf/out/shards-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
relay_pid=
trap '[[ -n "$relay_pid" ]] && kill "$relay_pid" 2>/dev/null || true' EXIT

rows=()
for n in "${sizes[@]}"; do
    for shards in 1 2; do
        "$bin" relay --bind 127.0.0.1:0 --threads "$shards" > "$out/relay-$n-$shards.out" 2> "$out/relay-$n-$shards.err" &
        relay_pid=$!
        for _ in $(seq 100); do grep -q 'listening on' "$out/relay-$n-$shards.out" 2>/dev/null && break; sleep 0.05; done
        addr=$(sed -n 's/.*listening on //p' "$out/relay-$n-$shards.out")
        "$bin" bench "moql://$addr/bench" --tls-disable-verify --alpn moq-lite-05 --json \
            --relay-pid "$relay_pid" --threads 2 --warmup "${WARMUP}s" --duration "${DURATION}s" \
            --drain 3s --connect-rate 1000 --publishers 1 --subscribers "$n" \
            --fps 30 --frame-size 5000 --group-frames 60 \
            > "$out/bench-$n-$shards.json" 2> "$out/bench-$n-$shards.log" || true
        kill "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
        relay_pid=
        row=$(jq -r --arg n "$n" --arg s "$shards" \
            '"| \($n) | \($s) | \(.delivered_mbit_s / 1000 * 1000 | round / 1000) Gbit/s | \(.relay.cpu_percent) % | \(.relay.cpu_percent / 100 / (.delivered_mbit_s / 1000) * 100 | round / 100) | \(.latency_ms.p50) / \(.latency_ms.p99) ms | \(.frames_lost) |"' \
            "$out/bench-$n-$shards.json" 2>/dev/null || echo "| $n | $shards | bench failed | | | | |")
        echo "$row"
        rows+=("$row")
    done
done
table="| subscribers | shards | delivered | relay CPU | CPU s per Gbit | p50 / p99 | lost |
|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do table+=$'\n'"$r"; done
if [[ $append == 1 ]]; then
    {
        echo
        echo "## Shards: 1 vs 2, fan-out, $(date -u +%Y-%m-%d)"
        echo
        echo "Commit $(git rev-parse --short HEAD); $(nproc) vCPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)."
        echo "Command: \`DURATION=$DURATION WARMUP=$WARMUP perf/shards.sh ${sizes[*]}\`. 1 publisher at 30 fps x 5000 B, 60 frames a group; \`moqring bench\` (2 threads) on the same 2 cores; relay CPU is utime+stime over the window (100 % = one core)."
        echo
        echo "$table"
    } >> perf/RESULTS.md
fi
echo "$table"
