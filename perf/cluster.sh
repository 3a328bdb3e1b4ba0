#!/usr/bin/env bash
# A moqring cluster on this machine: one origin and N edges (`moqring relay --threads 1
# --no-pin` each: one shard, left to the scheduler, since every `--threads 1` relay would
# otherwise pin its shard to the same first core), each edge dialling the origin with
# `--cluster-connect`. A paced `moqring bench` publisher (with one bench subscriber) on
# the origin; VIEWERS `moqring sub` viewers on every edge and one on the origin, each
# piped into perf/stamp_latency.rs, which reads the bench's send-time stamp from every
# frame. Over a measured window it reports:
#   - delivered Gbit/s per edge (the edge's moqring_bytes_out_total over the window)
#     and per viewer, and the viewers' frames missing;
#   - latency p50/p99 of the origin's viewer and of each edge's viewers, measured the
#     same way, and the added latency of the hop (edge minus origin);
#   - the origin's egress (its moqring_bytes_out_total) in copies of the stream: one per
#     edge plus its own two subscribers, however many viewers the edges have;
#   - each relay's CPU (utime+stime over the window, 100 % = one core).
# Prints a table and appends it to perf/RESULTS.md unless --no-append.
# Usage: perf/cluster.sh [--no-append]
#   EDGES (3)  VIEWERS per edge (8)  RATE_MBIT (20)  FRAME_SIZE (16384)  GROUP_FRAMES (60)
#   DURATION (30) window seconds  SETTLE (5) seconds from start to window
set -euo pipefail
cd "$(dirname "$0")/.."
append=1
for arg in "$@"; do
    case "$arg" in
        --no-append) append=0 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument $arg" >&2; exit 2 ;;
    esac
done
EDGES=${EDGES:-3}
VIEWERS=${VIEWERS:-8}
RATE_MBIT=${RATE_MBIT:-20}
FRAME_SIZE=${FRAME_SIZE:-16384}
GROUP_FRAMES=${GROUP_FRAMES:-60}
DURATION=${DURATION:-30}
SETTLE=${SETTLE:-5}

cargo build --release --quiet --bin moqring
bin=$(pwd)/target/release/moqring
out=$(pwd)/perf/out/cluster-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
rustc -O --edition 2021 -o "$out/stamp_latency" perf/stamp_latency.rs
echo "run folder: $out" >&2

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# start_relay NAME ARGS...: a relay on a free port; prints nothing, sets $addr and $pid.
start_relay() {
    local name=$1; shift
    "$bin" relay --bind 127.0.0.1:0 --threads 1 --no-pin "$@" > "$out/$name.out" 2> "$out/$name.log" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do grep -q 'listening on' "$out/$name.out" 2>/dev/null && break; sleep 0.05; done
    addr=$(sed -n 's/.*listening on //p' "$out/$name.out")
    [[ -n "$addr" ]] || { echo "$name did not start:" >&2; cat "$out/$name.log" >&2; exit 1; }
}

# metric ADDR NAME: the relay-wide value of NAME in ADDR's /metrics.
metric() { curl -sf "http://$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
# cpu_ticks PID: utime+stime in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_relay origin
origin=$addr
origin_pid=$pid
edge_addr=()
edge_pid=()
for e in $(seq "$EDGES"); do
    start_relay "edge$e" --cluster-connect "moql://$origin/" --client-tls-disable-verify
    edge_addr+=("$addr")
    edge_pid+=("$pid")
done
for e in $(seq "$EDGES"); do
    for _ in $(seq 200); do grep -q 'cluster link up' "$out/edge$e.log" && break; sleep 0.05; done
    grep -q 'cluster link up' "$out/edge$e.log" || { echo "edge$e: no cluster link" >&2; tail "$out/edge$e.log" >&2; exit 1; }
done
echo "origin $origin, edges ${edge_addr[*]}" >&2

# The publisher: bench's broadcast bench-0/live (track `frames`) under anon, with one bench
# subscriber on the origin; its window is about ours (its setup comes first).
"$bin" bench "moql://$origin/anon" --tls-disable-verify --alpn moq-lite-05 --json --quiet \
    --publishers 1 --subscribers 1 --rate-mbit "$RATE_MBIT" --frame-size "$FRAME_SIZE" \
    --group-frames "$GROUP_FRAMES" --warmup "${SETTLE}s" --duration "${DURATION}s" --drain 2s \
    --relay-pid "$origin_pid" > "$out/bench.json" 2> "$out/bench.log" &
bench_pid=$!
pids+=("$bench_pid")

# viewer NAME ADDR: `moqring sub` of the bench track into the stamp reader (which ends at
# the sub's end of output).
sub_pids=()
viewer() {
    "$bin" sub "moql://$2/anon" --broadcast bench-0/live --track frames --tls-disable-verify \
        --alpn moq-lite-05 2> "$out/$1.sub.log" \
        > >("$out/stamp_latency" "$FRAME_SIZE" "$out/$1.lat" > "$out/$1.count") &
    pids+=("$!")
    sub_pids+=("$!")
}
viewer origin-v1 "$origin"
for e in $(seq "$EDGES"); do
    for v in $(seq "$VIEWERS"); do viewer "edge$e-v$v" "${edge_addr[$((e - 1))]}"; done
done

sleep "$SETTLE"
snapshot() { # label: bytes out and CPU ticks of every relay
    echo "$1 origin $(metric "$origin" moqring_bytes_out_total) $(cpu_ticks "$origin_pid")"
    for e in $(seq "$EDGES"); do
        echo "$1 edge$e $(metric "${edge_addr[$((e - 1))]}" moqring_bytes_out_total) $(cpu_ticks "${edge_pid[$((e - 1))]}")"
    done
}
t0=$(date +%s%N)
snapshot start > "$out/snapshots"
sleep "$DURATION"
t1=$(date +%s%N)
snapshot end >> "$out/snapshots"
# Stop the viewers (their readers see EOF and write their counts), then wait for bench.
for p in "${sub_pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait "$bench_pid" || echo "bench exited with $?" >&2
sleep 1

table=$(python3 - "$out" "$t0" "$t1" "$EDGES" "$VIEWERS" "$RATE_MBIT" "$(getconf CLK_TCK)" <<'EOF'
import glob, json, os, sys
out, t0, t1, edges, viewers, rate, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
window = (t1 - t0) / 1e9
snap = {}
for line in open(f"{out}/snapshots"):
    label, relay, b, ticks = line.split()
    snap.setdefault(relay, {})[label] = (int(b), int(ticks))
def delta(relay):
    (b0, c0), (b1, c1) = snap[relay]["start"], snap[relay]["end"]
    return (b1 - b0) * 8 / window / 1e9, 100 * (c1 - c0) / tck / window
def lat(prefix):
    # Latencies (ms) of frames sent within the window, every viewer of `prefix` pooled,
    # and frames missing between the first and last index each viewer received.
    lats, missing, got = [], 0, 0
    for path in glob.glob(f"{out}/{prefix}-v*.lat"):
        idx = []
        for line in open(path):
            sent, us, i = map(int, line.split())
            if t0 <= sent < t1:
                lats.append(us / 1000)
                idx.append(i)
        if idx:
            missing += max(idx) - min(idx) + 1 - len(set(idx))
            got += len(idx)
    lats.sort()
    pct = lambda p: lats[min(len(lats) - 1, int(p * len(lats)))] if lats else float("nan")
    return pct(0.5), pct(0.99), got, missing
stream = rate / 1000  # Gbit/s of one copy
o_gbit, o_cpu = delta("origin")
o50, o99, o_got, o_miss = lat("origin")
rows = ["| relay | viewers | delivered | per viewer | viewer latency p50 / p99 | added by the hop p50 / p99 | frames missing | relay CPU |",
        "|---|---|---|---|---|---|---|---|"]
rows.append(f"| origin | 1 + 1 bench + {edges} edge links | {o_gbit:.3f} Gbit/s = {o_gbit / stream:.2f} copies (expected {edges + 2}) | {rate:g} Mbit/s offered | {o50:.1f} / {o99:.1f} ms | | {o_miss} of {o_got} | {o_cpu:.0f} % |")
for e in range(1, edges + 1):
    g, cpu = delta(f"edge{e}")
    p50, p99, got, miss = lat(f"edge{e}")
    rows.append(f"| edge{e} | {viewers} | {g:.3f} Gbit/s | {g * 1000 / viewers:.1f} Mbit/s | {p50:.1f} / {p99:.1f} ms | {p50 - o50:+.1f} / {p99 - o99:+.1f} ms | {miss} of {got} | {cpu:.0f} % |")
try:
    b = json.load(open(f"{out}/bench.json"))
    rows.append("")
    rows.append(f"Bench on the origin (its own subscriber, {b['duration_s']:.0f} s window): {b['delivered_mbit_s']:.1f} Mbit/s delivered, "
                f"latency p50 {b['latency_ms']['p50']} ms / p99 {b['latency_ms']['p99']} ms, {b['frames_lost']} frames lost, "
                f"{b['frames_skipped']} skipped; origin CPU {b['relay']['cpu_percent']:.0f} %.")
except Exception as e:
    rows.append(f"(bench report unreadable: {e})")
print("\n".join(rows))
EOF
)
echo "$table"
if [[ $append == 1 ]]; then
    {
        echo
        echo "## Cluster: origin and $EDGES edges, $(date -u +%Y-%m-%d)"
        echo
        dirty=$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo " plus uncommitted changes to src/")
        echo "Commit $(git rev-parse --short HEAD)$dirty; $(nproc) vCPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)."
        echo "Command: \`EDGES=$EDGES VIEWERS=$VIEWERS RATE_MBIT=$RATE_MBIT FRAME_SIZE=$FRAME_SIZE GROUP_FRAMES=$GROUP_FRAMES DURATION=$DURATION SETTLE=$SETTLE perf/cluster.sh\`."
        echo "Every relay \`moqring relay --threads 1 --no-pin\`, each edge \`--cluster-connect moql://ORIGIN/\`; one \`moqring bench\` publisher"
        echo "(${RATE_MBIT} Mbit/s, ${FRAME_SIZE} B frames, ${GROUP_FRAMES} a group) and one bench subscriber on the origin; \`moqring sub\` viewers"
        echo "(one on the origin, $VIEWERS per edge) read through perf/stamp_latency.rs, latency = arrival at the reader minus the"
        echo "bench's send stamp, frames sent within the ${DURATION} s window. Delivered = the relay's \`moqring_bytes_out_total\` over the"
        echo "window (payload bytes). Everything (4+ relays, bench, $((EDGES * VIEWERS + 1)) viewers) shares the same cores."
        echo
        echo "$table"
    } >> perf/RESULTS.md
    echo "appended to perf/RESULTS.md" >&2
fi
