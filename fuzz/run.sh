#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every target (CI), or of the targets named.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target (default 60)
#
# Installs cargo-fuzz when missing (crates.io; the nightly toolchain comes with the machine
# image), builds every target once, writes each target's seeds from that build (the codec
# tests' golden vectors, session and link exchanges), then fuzzes each target for SECONDS
# from its seeds plus the corpus kept in fuzz/corpus/TARGET by earlier runs. Any crash,
# hang (-timeout), memory bound broken or out-of-memory fails the run: the input is left
# in fuzz/artifacts/TARGET/ and the run exits non-zero. Prints executions per target.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire webtransport session session_h3 link)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# -a: debug assertions and overflow checks on (a wrapped counter is a finding); no
# sanitizer: the code under test has no `unsafe`, and ASan would halve the executions.
flags=(-O -a -s none)
start=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz/run.sh: built in $(($(date +%s) - start)) s"

summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  log="artifacts/$target.log"
  mkdir -p artifacts
  echo "fuzz/run.sh: $target for ${seconds} s"
  status=0
  MOQRING_FUZZ_SEEDS="seeds/$target" cargo +nightly fuzz run "${flags[@]}" "$target" \
    "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$status" -ne 0 ]; then
    grep -v '^#[0-9]' "$log" | tail -60 >&2
    echo "fuzz/run.sh: $target FAILED (exit $status); input in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  summary+=("$target: ${runs:-?} executions, ${rate:-?} exec/s, ${cov:-cov: ?} edges")
done
printf 'fuzz/run.sh: %s\n' "${summary[@]}"
echo "fuzz/run.sh: done in $(($(date +%s) - start)) s"
