#!/usr/bin/env bash
# Soak: SOAK_SECONDS (default 600) of churn against one `moqring relay` on this machine,
# then a verdict (perf/soak_report.py). Exits 0 only if the relay's RSS, sampled each
# second, plateaus (least-squares slope over the second half at most SOAK_SLOPE_MAX
# kB/min), every honest subscriber received its track byte-exact and exited 0, no client
# crashed, the relay logged no error and no warning beyond the expected ones, and it
# drained and exited 0 on SIGTERM at the end.
#
# Running at once, all the time:
#   - a live publisher (broadcast `live`, SOAK_LIVE_MBIT) restarted every SOAK_PUB_LIFE s,
#     alternately ending its track cleanly (end of input) and killed with SIGKILL (it
#     vanishes; its successor takes the path over);
#   - a subscriber of `live` joining every second and leaving after 2-6 s, alternately
#     closing its connection and vanishing (SIGTERM);
#   - a slow subscriber of `live` whose output is read at SOAK_SLOW_BYTES bytes/s
#     (restarted whenever it exits: it loses groups by design);
#   - honest transfers one after another: a SOAK_FILE_BYTES random file published at
#     SOAK_FILE_MBIT (broadcast `file-N`) to two `sub --start-group 0`, compared byte for
#     byte;
#   - every SOAK_FLOOD_EVERY s a burst of SOAK_FLOOD_SECONDS s of never-answered QUIC
#     Initials at SOAK_FLOOD_RATE/s from 64 loopback addresses (perf/soak_flood.py;
#     the Initials are captured from `moqring bench` at start).
#
# Usage: perf/soak.sh                 (10 minutes)
#        SOAK_SECONDS=60 perf/soak.sh (a short run)
# Output: SOAK_OUT (default perf/out/soak-DATE): rss.csv (t_s, rss_kb, connections,
# pending handshakes, subscribers), rss.svg, summary.txt and every process's log.
# Extra relay flags: MOQRING_ARGS (e.g. "--threads 1").
set -uo pipefail
set -m # every background job in a process group of its own, so cleanup reaches its children
cd "$(dirname "$0")/.."

secs=${SOAK_SECONDS:-600}
slope_max=${SOAK_SLOPE_MAX:-300}
live_mbit=${SOAK_LIVE_MBIT:-1}
pub_life=${SOAK_PUB_LIFE:-20}
slow_bytes=${SOAK_SLOW_BYTES:-16000}
file_bytes=${SOAK_FILE_BYTES:-1048576}
file_mbit=${SOAK_FILE_MBIT:-8}
flood_every=${SOAK_FLOOD_EVERY:-60}
flood_secs=${SOAK_FLOOD_SECONDS:-5}
flood_rate=${SOAK_FLOOD_RATE:-5000}
out=${SOAK_OUT:-perf/out/soak-$(date +%Y%m%d-%H%M%S)}

cargo build --release --quiet --bin moqring || exit 1
bin=$PWD/target/release/moqring
mkdir -p "$out"/churn "$out"/honest || exit 1
out=$(cd "$out" && pwd)
here=$PWD/perf

cleanup() {
    trap - EXIT INT TERM
    for job in $(jobs -p); do kill -- "-$job" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "soak: $*" | tee -a "$out/soak.log" >&2; }
now() { date +%s; }

# --- the relay ---------------------------------------------------------------------------
# shellcheck disable=SC2086
"$bin" relay --bind 127.0.0.1:0 --log-format json ${MOQRING_ARGS:-} \
    > "$out/relay.out" 2> "$out/relay.log" &
relay_job=$!
relay_pid=$relay_job
for _ in $(seq 200); do grep -q 'listening on' "$out/relay.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's/.*listening on //p' "$out/relay.out" | head -1)
[ -n "$addr" ] || { log "the relay did not start"; cat "$out/relay.log" >&2; exit 1; }
url="moql://$addr/soak"
log "relay pid $relay_pid on $addr; $secs s; output in $out"

# --- Initials for the floods, captured from moqring bench ---------------------------------
python3 "$here/soak_flood.py" capture "$out/initials.bin" "$out/capture.port" 6 \
    > "$out/capture.log" 2>&1 &
capture_job=$!
for _ in $(seq 100); do [ -s "$out/capture.port" ] && break; sleep 0.05; done
"$bin" bench "moql://127.0.0.1:$(cat "$out/capture.port")/flood" --subscribers 600 \
    --connect-rate 2000 --setup-timeout 3s --quiet --tls-disable-verify > /dev/null 2>&1
wait "$capture_job"
log "$(cat "$out/capture.log")"

# --- samplers and load ------------------------------------------------------------------
start=$(now)
end=$((start + secs))
running() { [ "$(now)" -lt "$end" ]; }

metric() { # the relay-wide value of moqring_NAME (the line without a shard label)
    awk -v m="moqring_$1" '$1 == m { print $2; exit }' "$out/metrics.now"
}
sample() {
    echo "t_s,rss_kb,connections,handshakes_pending,subscribers" > "$out/rss.csv"
    while running; do
        rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$relay_pid/status" 2>/dev/null) || break
        curl -s --max-time 0.5 "http://$addr/metrics" > "$out/metrics.now" 2>/dev/null
        echo "$(( $(now) - start )),$rss,$(metric connections_open),$(metric handshakes_pending),$(metric subscribers)" \
            >> "$out/rss.csv"
        sleep 1
    done
}

# The live publisher: restarted every pub_life s, ending cleanly (odd runs) or killed.
live_publisher() {
    local n=0 bytes=$((live_mbit * 125000 * pub_life))
    while running; do
        n=$((n + 1))
        if [ $((n % 2)) -eq 1 ]; then
            head -c "$bytes" /dev/urandom | "$bin" pub "$url" --broadcast live --track t \
                --tls-disable-verify --rate-mbit "$live_mbit" --frame-size 1000 \
                --group-frames 30 2> "$out/live-pub-$n.log"
            echo "$n clean $?" >> "$out/pubs.log"
        else
            "$bin" pub "$url" --broadcast live --track t --tls-disable-verify \
                --rate-mbit "$live_mbit" --frame-size 1000 --group-frames 30 \
                < /dev/urandom 2> "$out/live-pub-$n.log" &
            local pid=$!
            sleep "$pub_life"
            kill -KILL "$pid" 2>/dev/null
            { wait "$pid"; } 2>/dev/null
            echo "$n killed $?" >> "$out/pubs.log"
        fi
    done
}

# One subscriber of `live` joining every second and leaving after 2-6 s: odd ones close
# their output (the sub's next write fails and it closes its connection), even ones are
# killed (SIGTERM: they vanish, and the relay holds them until its idle timeout).
churn() {
    local n=0
    while running; do
        n=$((n + 1))
        (
            life=$((2 + RANDOM % 5))
            if [ $((n % 2)) -eq 1 ]; then
                "$bin" sub "$url" --broadcast live --track t --tls-disable-verify \
                    2> "$out/churn/$n.log" | timeout "$life" cat > "$out/churn/$n.out"
                rc=${PIPESTATUS[0]}
            else
                "$bin" sub "$url" --broadcast live --track t --tls-disable-verify \
                    > "$out/churn/$n.out" 2> "$out/churn/$n.log" &
                pid=$!
                sleep "$life"
                kill -TERM "$pid" 2>/dev/null
                wait "$pid"
                rc=$?
            fi
            echo "$n $rc $(stat -c %s "$out/churn/$n.out")" >> "$out/churn.log"
            rm -f "$out/churn/$n.out"
        ) &
        sleep 1
    done
    wait
}

# A subscriber of `live` read at slow_bytes bytes/s; restarted whenever it exits.
slow_subscriber() {
    local n=0
    while running; do
        n=$((n + 1))
        "$bin" sub "$url" --broadcast live --track t --tls-disable-verify \
            2> "$out/slow-$n.log" | python3 -c '
import sys, time
rate = float(sys.argv[1]); src = sys.stdin.buffer; t0 = time.monotonic(); n = 0
while True:
    b = src.read1(4096)
    if not b: break
    n += len(b); pause = t0 + n / rate - time.monotonic()
    if pause > 0: time.sleep(pause)
' "$slow_bytes" > /dev/null
        echo "$n ${PIPESTATUS[0]}" >> "$out/slow.log"
        sleep 1
    done
}

# Honest transfers: a random file to two subscribers from group 0, byte-exact.
honest() {
    local n=0
    while running; do
        n=$((n + 1))
        local dir="$out/honest/$n"
        mkdir -p "$dir"
        head -c "$file_bytes" /dev/urandom > "$dir/in.bin"
        local pids=() s
        for s in a b; do
            timeout 120 "$bin" sub "$url" --broadcast "file-$n" --track t --tls-disable-verify \
                --start-group 0 > "$dir/$s.out" 2> "$dir/$s.log" &
            pids+=($!)
        done
        timeout 120 "$bin" pub "$url" --broadcast "file-$n" --track t --tls-disable-verify \
            --rate-mbit "$file_mbit" < "$dir/in.bin" 2> "$dir/pub.log"
        local rc=$? verdict=ok
        [ "$rc" -eq 0 ] || verdict="FAIL pub exit $rc: $(grep -h '^moqring:' "$dir/pub.log" | head -1)"
        for s in a b; do
            wait "${pids[0]}"
            rc=$?
            pids=("${pids[@]:1}")
            if [ "$rc" -ne 0 ]; then
                verdict="FAIL sub $s exit $rc: $(grep -h '^moqring:' "$dir/$s.log" | head -1)"
            elif ! cmp -s "$dir/in.bin" "$dir/$s.out"; then
                verdict="FAIL sub $s output differs from the input"
            fi
        done
        echo "$n $verdict" >> "$out/honest.log"
        [ "$verdict" = ok ] && rm -rf "$dir"
    done
}

# Floods: a burst every flood_every s, the first at half that (or a quarter into a short
# run), so the second half of the run, where the slope is fitted, sees repeats.
flood() {
    sleep $(( flood_every / 2 < secs / 4 ? flood_every / 2 : secs / 4 ))
    while running; do
        python3 "$here/soak_flood.py" send "$addr" "$out/initials.bin" "$flood_rate" \
            "$flood_secs" >> "$out/flood.log" 2>&1
        local left=$((end - $(now)))
        [ "$left" -gt 0 ] || break
        sleep $(( (flood_every - flood_secs) < left ? (flood_every - flood_secs) : left ))
    done
}

sample &
sampler_job=$!
live_publisher &
live_job=$!
churn &
churn_job=$!
slow_subscriber &
slow_job=$!
honest &
honest_job=$!
flood &
flood_job=$!
set +m # the jobs keep their process groups; no job notices on stderr from here on

while running; do
    kill -0 "$relay_pid" 2>/dev/null || { log "the relay died"; break; }
    sleep 5
done
log "time is up: finishing the last transfer"
# The live publisher and the slow subscriber run until stopped; the churners still out
# and the honest transfer under way finish (bounded), then everything is stopped.
stop_after() { # JOB SECONDS
    local until=$(( $(now) + $2 ))
    while kill -0 "$1" 2>/dev/null && [ "$(now)" -lt "$until" ]; do sleep 1; done
    kill -- "-$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
kill -- "-$live_job" "-$slow_job" 2>/dev/null
stop_after "$churn_job" 10
stop_after "$honest_job" 150
stop_after "$flood_job" 0
stop_after "$sampler_job" 2

curl -s --max-time 2 "http://$addr/metrics" > "$out/metrics.end"
curl -s --max-time 2 -o /dev/null -w '%{http_code}\n' "http://$addr/health" > "$out/health.end"
grep '^VmHWM' "/proc/$relay_pid/status" > "$out/hwm.end" 2>/dev/null
if kill -0 "$relay_pid" 2>/dev/null; then
    kill -TERM "$relay_pid"
    wait "$relay_pid"
    echo "$?" > "$out/relay.exit"
else
    wait "$relay_pid"
    echo "died $?" > "$out/relay.exit"
fi
python3 "$here/soak_report.py" "$out" "$secs" "$slope_max" | tee "$out/summary.txt"
exit "${PIPESTATUS[0]}"
