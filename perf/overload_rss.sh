#!/usr/bin/env bash
# A publisher pushing faster than its subscribers can take: prints the relay's RSS each
# second, then its peak. Memory must level off (slow subscribers lose old groups).
# Usage: perf/overload_rss.sh [MBIT_PER_S] [SECONDS] [SUBSCRIBERS]   (defaults: 2000 10 2)
# Extra relay flags: MOQRING_ARGS (e.g. "--threads 1").
set -uo pipefail
cd "$(dirname "$0")/.."
rate=${1:-2000}
secs=${2:-10}
subs=${3:-2}
cargo build --release --quiet --bin moqring
bin=target/release/moqring
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# shellcheck disable=SC2086
$bin relay --bind 127.0.0.1:0 ${MOQRING_ARGS:-} > "$work/relay.out" 2> "$work/relay.err" &
relay_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/relay.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's/.*listening on //p' "$work/relay.out")
url="moql://$addr/perf"
for i in $(seq "$subs"); do
    $bin sub "$url" --broadcast b --track t --tls-disable-verify > /dev/null 2> "$work/sub$i.err" &
done
sleep 0.3
python3 -c '
import os, sys, time
rate = float(sys.argv[1]) * 1e6 / 8; secs = float(sys.argv[2])
chunk = os.urandom(int(rate / 100))
out = sys.stdout.buffer; start = time.monotonic(); i = 0
try:
    while True:
        t = start + i * 0.01
        if t - start >= secs: break
        d = t - time.monotonic()
        if d > 0: time.sleep(d)
        out.write(chunk); i += 1
    out.flush()
except BrokenPipeError:
    pass
' "$rate" "$secs" | $bin pub "$url" --broadcast b --track t --tls-disable-verify \
    --frame-size 16384 --group-frames 32 2> "$work/pub.err" &
for s in $(seq 1 "$secs"); do
    sleep 1
    echo "t=${s}s relay RSS $(awk '/VmRSS/ {print $2}' "/proc/$relay_pid/status") kB"
done
echo "peak relay RSS $(awk '/VmHWM/ {print $2}' "/proc/$relay_pid/status") kB;" \
    "groups reset for lagging subscribers: $(cat "$work"/sub*.err | grep -c 'code=26')"
