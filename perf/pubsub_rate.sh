#!/usr/bin/env bash
# One publisher -> moqring relay -> one subscriber at a fixed rate; prints relay CPU.
# Usage: perf/pubsub_rate.sh [MBIT_PER_S] [SECONDS]   (defaults: 100 Mbit/s for 10 s)
# Builds the release binary; runs everything on loopback; checks the bytes arrive intact.
set -euo pipefail
cd "$(dirname "$0")/.."
rate_mbit=${1:-100}
secs=${2:-10}
cargo build --release --quiet --bin moqring
bin=target/release/moqring
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

$bin relay --bind 127.0.0.1:0 > "$work/relay.out" 2> "$work/relay.err" &
relay_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/relay.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's/.*listening on //p' "$work/relay.out")
url="moql://$addr/perf"

$bin sub "$url" --broadcast b --track t --tls-disable-verify > "$work/out.bin" 2> "$work/sub.err" &
sub_pid=$!
sleep 0.3
# A paced source: rate_mbit of random bytes per second, in 10 ms slices.
python3 -c '
import os, sys, time
rate = float(sys.argv[1]) * 1e6 / 8; secs = float(sys.argv[2])
chunk = os.urandom(int(rate / 100))
out = sys.stdout.buffer; start = time.monotonic(); sent = 0; i = 0
while True:
    t = start + i * 0.01
    if t - start >= secs: break
    d = t - time.monotonic()
    if d > 0: time.sleep(d)
    out.write(chunk); sent += len(chunk); i += 1
out.flush()
' "$rate_mbit" "$secs" | tee "$work/in.bin" | $bin pub "$url" --broadcast b --track t --tls-disable-verify --frame-size 16384 --group-frames 32 2> "$work/pub.err" &
pub_pid=$!

ticks() { awk '{print $14 + $15}' "/proc/$relay_pid/stat"; }
sleep 1
t0=$(ticks); w0=$(date +%s.%N)
sleep $((secs - 2))
t1=$(ticks); w1=$(date +%s.%N)
wait $pub_pid
wait $sub_pid
hz=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$relay_pid/status")
cpu=$(python3 -c "print(f'{100 * ($t1 - $t0) / $hz / ($w1 - $w0):.1f}')")
if cmp -s "$work/in.bin" "$work/out.bin"; then ok=identical; else ok=DIFFERENT; fi
echo "rate ${rate_mbit} Mbit/s, ${secs} s: relay CPU ${cpu}% of one core, peak RSS ${rss} kB, output ${ok} ($(stat -c %s "$work/out.bin") bytes)"
