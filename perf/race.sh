#!/usr/bin/env bash
# Races moqring against moq-relay (crates.io, default and io-uring builds) on the same
# scenarios with the same load generator (`moqring bench`, moq-lite-05), the same cores and
# the same durations, then appends a markdown table with the ratios to perf/RESULTS.md.
#
# Usage: perf/race.sh [--quick] [--no-append]
#   --quick       short runs and a reduced scenario set (finishes in under 2 minutes once
#                 everything is built)
#   --no-append   print the table, leave RESULTS.md alone
#
# Environment (all optional):
#   MOQRING_ARGS          extra arguments for `moqring relay` (e.g. "--threads 2")
#   MOQ_RELAY_FAST_ARGS   arguments of the io-uring build's fast mode
#                         (default "--runtime-workers 2 --runtime-io-uring")
#   RELAYS                which relays race (default "moqring moq-relay moq-relay-io-uring")
#   SCENARIOS             which scenarios run (default: all of fanout throughput tracks chat
#                         fanout-wt; fanout-wt is the fan-out over WebTransport, https://)
#   RELAY_CPUS BENCH_CPUS CPU lists for taskset (default: no pinning; both share all cores)
#   BENCH_THREADS         load generator threads (default 2: one thread serving hundreds of
#                         subscribers adds its own queueing to the measured latency)
#   DURATION WARMUP       measured window and warmup, seconds (default 20 and 3; quick 3 and 1)
#
# Each run starts a fresh relay, so its peak RSS is that scenario's. Relay CPU is
# utime+stime from /proc over the measured window and peak RSS is VmHWM; the bench reads
# both (--relay-pid) so the window is exactly the one it measured. Raw JSON reports stay
# in perf/out/race-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
append=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-append) append=0 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

MOQ_RELAY_VERSION=0.17.10
MOQRING_ARGS=${MOQRING_ARGS:-}
MOQ_RELAY_FAST_ARGS=${MOQ_RELAY_FAST_ARGS:---runtime-workers 2 --runtime-io-uring}
RELAYS=${RELAYS:-moqring moq-relay moq-relay-io-uring}
SCENARIOS=${SCENARIOS:-fanout throughput tracks chat fanout-wt}
BENCH_THREADS=${BENCH_THREADS:-2}
RELAY_CPUS=${RELAY_CPUS:-}
BENCH_CPUS=${BENCH_CPUS:-}
if [[ $quick == 1 ]]; then
    DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}; DRAIN=2
    fanout_sizes="100 300"
    tput_ladder_1="400"; tput_ladder_10="40"
    tracks_publishers=20
    connect_rate=1000
else
    DURATION=${DURATION:-20}; WARMUP=${WARMUP:-3}; DRAIN=5
    fanout_sizes="100 300 1000"
    # Offered Mbit/s of the one publisher, doubling until the relay stops holding it.
    tput_ladder_1="250 500 1000 2000 4000 8000"
    tput_ladder_10="25 50 100 200 400 800"
    tracks_publishers=100
    connect_rate=500
fi

echo "== building moqring (release) and moq-relay $MOQ_RELAY_VERSION" >&2
cargo build --release --quiet --bin moqring
flavours=()
for relay in $RELAYS; do
    case "$relay" in
        moq-relay) flavours+=(default) ;;
        moq-relay-io-uring) flavours+=(io-uring) ;;
    esac
done
if [[ ${#flavours[@]} -gt 0 ]]; then
    MOQ_RELAY_VERSION=$MOQ_RELAY_VERSION perf/build-moq-relay.sh "${flavours[@]}" >&2
fi
moqring=$root/target/release/moqring
tools=$root/perf/.tools

run_dir=$root/perf/out/race-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
cert=$run_dir/cert.pem
key=$run_dir/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$key" -out "$cert" 2> /dev/null

pin() { # $1 = CPU list or empty
    if [[ -n "$1" ]]; then echo "taskset -c $1"; fi
}

relay_pid=
cleanup() {
    if [[ -n "$relay_pid" ]]; then kill "$relay_pid" 2> /dev/null || true; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until UDP port $1 is bound on 127.0.0.1 (or fails after 10 s).
wait_port() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 200); do
        if grep -q " $hex " /proc/net/udp; then return 0; fi
        if ! kill -0 "$relay_pid" 2> /dev/null; then return 1; fi
        sleep 0.05
    done
    return 1
}

relay_command() { # $1 = relay name, $2 = port
    case "$1" in
        moqring)
            echo "$moqring relay --bind 127.0.0.1:$2 --cert $cert --key $key $MOQRING_ARGS" ;;
        moq-relay)
            echo "$tools/moq-relay-default/bin/moq-relay --listen 127.0.0.1:$2 --listen-tls-cert $cert --listen-tls-key $key --auth-public ** --log-level warn" ;;
        moq-relay-io-uring)
            echo "$tools/moq-relay-io-uring/bin/moq-relay --listen 127.0.0.1:$2 --listen-tls-cert $cert --listen-tls-key $key --auth-public ** --log-level warn $MOQ_RELAY_FAST_ARGS" ;;
        *) echo "unknown relay $1" >&2; return 1 ;;
    esac
}

# One bench run: $1 = output name, $2 = relay, rest = bench arguments; SCHEME=https runs
# it over WebTransport (default moql: raw QUIC).
# Writes $run_dir/$1.json (the bench report) and .log (relay and bench stderr).
run_one() {
    local name=$1 relay=$2; shift 2
    local port cmd
    port=$(free_port)
    cmd=$(relay_command "$relay" "$port")
    # No globbing: moq-relay's `--auth-public **` must reach it as written.
    set -f
    # shellcheck disable=SC2046,SC2086
    RUST_LOG=${RELAY_LOG:-warn} $(pin "$RELAY_CPUS") $cmd > "$run_dir/$name.relay.log" 2>&1 &
    set +f
    relay_pid=$!
    if ! wait_port "$port"; then
        echo "relay $relay did not start; see $run_dir/$name.relay.log" >&2
        tail -5 "$run_dir/$name.relay.log" >&2
        return 1
    fi
    local bench=($(pin "$BENCH_CPUS") "$moqring" bench "${SCHEME:-moql}://127.0.0.1:$port/bench"
        --tls-disable-verify --alpn moq-lite-05 --json --relay-pid "$relay_pid"
        --threads "$BENCH_THREADS" --warmup "${WARMUP}s" --duration "${DURATION}s"
        --drain "${DRAIN}s" --connect-rate "$connect_rate" "$@")
    echo "${bench[*]}" > "$run_dir/$name.cmd"
    echo "$(pin "$RELAY_CPUS") $cmd" >> "$run_dir/$name.cmd"
    local ok=0
    "${bench[@]}" > "$run_dir/$name.json" 2> "$run_dir/$name.bench.log" || ok=$?
    kill "$relay_pid" 2> /dev/null || true
    wait "$relay_pid" 2> /dev/null || true
    relay_pid=
    if [[ $ok != 0 ]]; then
        echo "bench failed against $relay ($name); see $run_dir/$name.bench.log" >&2
        tail -3 "$run_dir/$name.bench.log" >&2
        rm -f "$run_dir/$name.json"
        return 0
    fi
    jq -r --arg n "$name" '"\($n): \(.delivered_mbit_s) Mbit/s, lost \(.frames_lost), p50/p99 \(.latency_ms.p50)/\(.latency_ms.p99) ms, relay CPU \(.relay.cpu_percent) %, RSS \(.relay.peak_rss_kib) KiB, bench CPU \(.bench_cpu_s) s"' \
        "$run_dir/$name.json" >&2
}

# Whether a report shows the relay holding the offered load: every subscriber receiving,
# nothing lost or failed, at least 97 % of the offered frames delivered.
holds() {
    [[ -f "$1" ]] && jq -e '.frames_lost == 0 and .connections_failed == 0
        and .subscribers_receiving == .subscribers
        and .frames_delivered >= 0.97 * .fps * .duration_s * .subscribers' "$1" > /dev/null
}

video=(--fps 30 --frame-size 5000 --group-frames 60)
for relay in $RELAYS; do
    for scenario in $SCENARIOS; do
        case "$scenario" in
            fanout)
                for n in $fanout_sizes; do
                    run_one "fanout-${n}__${relay}" "$relay" --publishers 1 --subscribers "$n" "${video[@]}"
                done ;;
            throughput)
                for subs in 1 10; do
                    ladder=tput_ladder_$subs
                    for rate in ${!ladder}; do
                        name="throughput-${subs}-${rate}__${relay}"
                        run_one "$name" "$relay" --publishers 1 --subscribers "$subs" \
                            --rate-mbit "$rate" --frame-size 16384 --group-frames 32
                        holds "$run_dir/$name.json" || break
                    done
                done ;;
            tracks)
                run_one "tracks-${tracks_publishers}__${relay}" "$relay" \
                    --publishers "$tracks_publishers" --subscribers 10 "${video[@]}" ;;
            chat)
                run_one "chat-300__${relay}" "$relay" --publishers 1 --subscribers 300 \
                    --fps 100 --frame-size 100 --group-frames 1 ;;
            fanout-wt)
                for n in $fanout_sizes; do
                    SCHEME=https run_one "fanout-wt-${n}__${relay}" "$relay" --publishers 1 \
                        --subscribers "$n" "${video[@]}"
                done ;;
            *) echo "unknown scenario $scenario" >&2; exit 2 ;;
        esac
    done
done

{
    echo "date=$(date -u +%Y-%m-%d)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo '-dirty')"
    echo "machine=$(nproc) vCPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -sr)"
    echo "command=$(env | grep -E '^(MOQRING_ARGS|MOQ_RELAY_FAST_ARGS|RELAYS|SCENARIOS|RELAY_CPUS|BENCH_CPUS|BENCH_THREADS|DURATION|WARMUP)=' | sed 's/=\(.*\)/="\1"/' | tr '\n' ' ')perf/race.sh $*"
    echo "quick=$quick"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "moq_relay_version=$MOQ_RELAY_VERSION"
    echo "moqring_args=$MOQRING_ARGS"
    echo "moq_relay_fast_args=$MOQ_RELAY_FAST_ARGS"
    echo "bench_threads=$BENCH_THREADS"
    echo "relay_cpus=${RELAY_CPUS:-all}"
    echo "bench_cpus=${BENCH_CPUS:-all}"
} > "$run_dir/meta.env"

table=$(python3 perf/race_table.py "$run_dir")
echo "$table"
if [[ $append == 1 ]]; then
    printf '\n%s\n' "$table" >> perf/RESULTS.md
    echo "appended to perf/RESULTS.md (raw reports in ${run_dir#"$root"/})" >&2
fi
