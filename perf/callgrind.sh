#!/usr/bin/env bash
# Counts the user-space instructions a relay spends per delivered frame, under
# valgrind's callgrind, for moqring and moq-relay with the same load: instruction counts
# do not drift with this VM's noisy CPU time, so the ratio is stable from run to run.
# It also splits moqring's count by who executes it (AES-GCM, quiche, moqring itself,
# libc and the rest), which is the profile behind perf/RESULTS.md's "what limits it".
#
# Usage: perf/callgrind.sh [--no-append]
#   --no-append   print the table, leave RESULTS.md alone
#
# Environment (all optional):
#   SUBSCRIBERS   subscribers of the one publisher (default 5: under valgrind a relay runs
#                 about 50 times slower, and moq-relay loses frames at 10)
#   DURATION WARMUP   measured window and warmup, seconds (default 10 and 4)
#   RELAYS        default "moqring moq-relay"
#   SCHEME        moql (raw QUIC, default) or https (the bench connects over WebTransport)
#
# The load is scenario (a) of race.sh (30 fps x 5000 B, 60 frames a group) from a native
# `moqring bench`; only the relay runs under valgrind, on one thread (`moqring relay
# --threads 1`; moq-relay's default build, since its io_uring runtime delivers nothing
# under valgrind). Instrumentation is switched on when the bench's warm-up ends and off
# when its window ends (callgrind_control), so startup and handshakes are not counted.
# Kernel work (the UDP sends and receives) is not counted: callgrind sees user space only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

append=1
for arg in "$@"; do
    case "$arg" in
        --no-append) append=0 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

SUBSCRIBERS=${SUBSCRIBERS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-4}
RELAYS=${RELAYS:-moqring moq-relay}
SCHEME=${SCHEME:-moql}
case $SCHEME in
    moql) transport="raw QUIC" ;;
    https) transport="WebTransport" ;;
    *) echo "SCHEME must be moql or https" >&2; exit 2 ;;
esac

for tool in valgrind callgrind_control callgrind_annotate jq; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
cargo build --release --quiet
moqring=$root/target/release/moqring
moq_relay=$root/perf/.tools/moq-relay-default/bin/moq-relay
if [[ " $RELAYS " == *" moq-relay "* && ! -x $moq_relay ]]; then
    echo "moq-relay not built: run perf/build-moq-relay.sh first" >&2
    exit 1
fi

out=$root/perf/out/callgrind-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

# Waits until `file` has `count` lines containing `word`, while process `pid` (the bench)
# runs; fails if it exits first.
wait_lines() {
    local file=$1 word=$2 count=$3 pid=$4
    while [[ $(grep -c -- "$word" "$file" 2>/dev/null || true) -lt $count ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the bench ended before $count '$word' lines; see $file" >&2
            return 1
        fi
        sleep 0.05
    done
}

# Runs relay $1 under callgrind with the bench's load; leaves $out/$1.json and $out/$1.cg.
run() {
    local name=$1 port=$2
    local log=$out/$name.relay.log
    case $name in
        moqring)
            RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
                --callgrind-out-file="$out/$name.cg.%p" \
                "$moqring" relay --bind 127.0.0.1:$port --threads 1 \
                --cert "$out/cert.pem" --key "$out/key.pem" >"$log" 2>&1 &
            ;;
        moq-relay)
            valgrind --tool=callgrind --instr-atstart=no \
                --callgrind-out-file="$out/$name.cg.%p" \
                "$moq_relay" --listen 127.0.0.1:$port --listen-tls-cert "$out/cert.pem" \
                --listen-tls-key "$out/key.pem" --auth-public '**' --log-level warn \
                >"$log" 2>&1 &
            ;;
    esac
    local pid=$!
    sleep 3
    local progress=$out/$name.bench.log
    "$moqring" bench "$SCHEME://127.0.0.1:$port/bench" --tls-disable-verify --alpn moq-lite-05 \
        --json --threads 1 --connect-rate 50 --setup-timeout 60s \
        --warmup "${WARMUP}s" --duration "${DURATION}s" --drain 3s \
        --publishers 1 --subscribers "$SUBSCRIBERS" --fps 30 --frame-size 5000 \
        --group-frames 60 >"$out/$name.json" 2>"$progress" &
    local bench=$!
    wait_lines "$progress" warmup "$WARMUP" "$bench"
    callgrind_control -i on "$pid" >/dev/null
    wait_lines "$progress" measuring "$DURATION" "$bench"
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$pid" >/dev/null
    wait "$bench"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # The dump is the largest file (the one written at exit holds nothing).
    ls -S "$out/$name.cg."* | head -1 | xargs -I{} mv {} "$out/$name.cg"
    rm -f "$out/$name.cg."*
}

# Self instructions of every function of callgrind file $1, as "count symbol" lines.
functions() {
    callgrind_annotate --threshold=100 "$1" 2>/dev/null |
        awk '/^ *[0-9,]+ +\(/ && $0 !~ /PROGRAM TOTALS/ {
            n = $1; gsub(",", "", n); $1 = ""; $2 = ""; sub(/ \[[^]]*\]$/, ""); print n, $0 }'
}

# Sum of the counts in "count symbol" file $1 whose symbol matches the extended regex $2
# (and not $3).
share() {
    awk -v re="$2" -v not="${3:-^$}" '$0 ~ re && $0 !~ not { s += $1 } END { print s + 0 }' "$1"
}

crypto='aes|gcm|ghash|AEAD|aead|sha256|SHA256|chacha|poly1305'
port=4500
declare -A per_frame
rows=()
for name in $RELAYS; do
    port=$((port + 1))
    echo "== $name under callgrind ($SUBSCRIBERS subscribers, ${DURATION}s)" >&2
    run "$name" "$port"
    functions "$out/$name.cg" >"$out/$name.functions"
    frames=$(jq '.frames_delivered' "$out/$name.json")
    lost=$(jq '.frames_lost' "$out/$name.json")
    total=$(share "$out/$name.functions" '.')
    if [[ $frames -eq 0 ]]; then
        echo "$name delivered nothing; see $out" >&2
        exit 1
    fi
    per_frame[$name]=$((total / frames))
    aes=$(share "$out/$name.functions" "$crypto")
    case $name in
        moqring)
            stack=$(share "$out/$name.functions" 'quiche::|octets::' "$crypto")
            own=$(share "$out/$name.functions" 'moqring::' "$crypto")
            ;;
        moq-relay)
            # moq-relay 0.17 runs on noq (moq_noq_proto, its fork of quinn) and rustls.
            stack=$(share "$out/$name.functions" 'noq|quinn|rustls' "$crypto")
            own=$(share "$out/$name.functions" 'moq_|kio::' "$crypto|noq")
            ;;
    esac
    rest=$((total - aes - stack - own))
    pct() { awk -v a="$1" -v t="$total" 'BEGIN { printf "%.0f %%", 100 * a / t }'; }
    rows+=("| $name | $frames | $lost | ${per_frame[$name]} | $(pct "$aes") | $(pct "$stack") | $(pct "$own") | $(pct "$rest") |")
done

table=$(
    echo "## Instructions per delivered frame (callgrind, $transport), $(date -u +%Y-%m-%d)"
    echo
    echo "Commit $(git rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) vCPU."
    echo "Command: \`SCHEME=$SCHEME SUBSCRIBERS=$SUBSCRIBERS DURATION=$DURATION WARMUP=$WARMUP RELAYS=\"$RELAYS\" perf/callgrind.sh\`."
    echo "One publisher, 30 fps x 5000 B, $SUBSCRIBERS subscribers; the relay on one thread under callgrind, user-space instructions over the bench's ${DURATION} s window divided by the frames delivered in it. QUIC stack: quiche/octets for moqring, noq (moq-relay's fork of quinn)/rustls for moq-relay (crypto excluded); relay code: moqring:: symbols, or moq_*/kio:: ones outside noq; rest: libc, std, allocator, runtime."
    echo
    echo "| relay | frames delivered | lost | instructions per frame | AES-GCM and hashes | QUIC stack | relay code | rest |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [[ -n ${per_frame[moqring]:-} && -n ${per_frame[moq-relay]:-} ]]; then
        echo
        awk -v a="${per_frame[moqring]}" -v b="${per_frame[moq-relay]}" \
            'BEGIN { printf "moqring / moq-relay: **%.2fx** instructions per delivered frame.\n", a / b }'
    fi
)
echo "$table"
if [[ $append == 1 ]]; then
    printf '\n%s\n' "$table" >>"$root/perf/RESULTS.md"
    echo "appended to perf/RESULTS.md; raw data in $out" >&2
fi
