#!/usr/bin/env bash
# Fuzzes every device decoder (fuzz/fuzz_targets/*.rs, cargo-fuzz + libFuzzer) for a short,
# fixed time each: the CI smoke run of "decoders never panic".
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 20
#
# It installs cargo-fuzz when missing (`cargo install cargo-fuzz --locked`), builds all targets
# once (fuzz/target), replays the inputs that once crashed (fuzz/regressions/<target>/), then
# runs each target for SECONDS_PER_TARGET against a fresh copy of its seeds (fuzz/seeds/<target>/,
# made by fuzz/make-seeds.sh from the golden frames), FUZZ_JOBS targets at a time (default: the
# number of CPUs). One line per target, then `fuzz: N passed, N failed`; exits 1 if any target
# crashed, printing the crashing input's path and hex and the panic message.
#
# Environment: FUZZ_JOBS (parallel targets), FUZZ_SANITIZER (none | address; default none),
# FUZZ_TARGETS (space-separated subset of targets).
#
# Stable Rust only. cargo-fuzz passes nightly-only rustc flags (-Cpasses=sancov-module, and
# -Zsanitizer=address for ASan); RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. ASan
# works that way too (the stable toolchain ships its runtime, librustc-stable_rt.asan.a), but
# the default here is `--sanitizer none`: ekko-gateway and ekko-core contain no `unsafe` code,
# so what we look for (panics: bad indexing, overflow, unwrap, expect, unreachable, stack
# overflow) aborts the process with or without ASan, and without it each target runs about
# twice as many inputs in the same time with a fraction of the memory. FUZZ_SANITIZER=address
# turns it back on. Debug assertions and overflow checks are on (`-a`): an arithmetic overflow
# on device input is reported as a crash even though release builds would wrap silently.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-20}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
SANITIZER=${FUZZ_SANITIZER:-none}
START=$SECONDS

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
HOST=$(rustc -vV | sed -n 's/^host: //p')
BUILD=(--sanitizer "$SANITIZER" --debug-assertions --codegen-units 16 --target "$HOST")
echo "fuzz: building the targets ($HOST, sanitizer $SANITIZER)"
(cd fuzz && cargo fuzz build "${BUILD[@]}")
BUILT=$SECONDS
BIN=$ROOT/fuzz/target/$HOST/release
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
  mapfile -t TARGETS < <(cd fuzz && cargo fuzz list)
fi
RUN=$ROOT/fuzz/target/fuzz-run
rm -rf "$RUN"
mkdir -p "$RUN"

hex() { od -An -tx1 -v "$1" | tr -d ' \n'; }

# Prints what a failed libFuzzer run left: its log's panic message and every artifact.
report_crash() { # target log artifacts-dir
  local t=$1 log=$2 dir=$3 f
  grep -m1 -A4 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|has overflowed its stack" "$log" |
    sed 's/^/    /' || true
  for f in "$dir"/*; do
    [ -f "$f" ] || continue
    echo "    input: $f ($(wc -c <"$f") bytes)"
    echo "    hex: $(hex "$f" | head -c 8192)"
  done
  echo "    log: $log"
}

# One target: replay its regressions, then fuzz it. Writes its report in one go.
fuzz_one() { # target
  local t=$1 dir=$RUN/$1 out rc
  mkdir -p "$dir/corpus" "$dir/artifacts"
  out=$(
    shopt -s nullglob
    regressions=("$ROOT/fuzz/regressions/$t"/*)
    if [ ${#regressions[@]} -gt 0 ]; then
      if ! "$BIN/$t" -artifact_prefix="$dir/artifacts/" "${regressions[@]}" >"$dir/regressions.log" 2>&1; then
        echo "FAIL $t: a regression input crashes it again"
        report_crash "$t" "$dir/regressions.log" "$dir/artifacts"
        grep -o "Running: .*" "$dir/regressions.log" | tail -1 | sed 's/^/    /'
        exit 1
      fi
    fi
    seeds=("$ROOT/fuzz/seeds/$t"/*)
    [ ${#seeds[@]} -gt 0 ] && cp "${seeds[@]}" "$dir/corpus/"
    rc=0
    timeout $((SECS + 120)) "$BIN/$t" "$dir/corpus" -artifact_prefix="$dir/artifacts/" \
      -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$dir/fuzz.log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log")
    cov=$(grep -oE 'cov: [0-9]+' "$dir/fuzz.log" | tail -1 | cut -d' ' -f2)
    corpus=$(ls "$dir/corpus" | wc -l)
    if [ "$rc" -eq 0 ]; then
      printf 'PASS %-18s %4s s  %9s runs  cov %5s  corpus %4s  (%s seeds)\n' \
        "$t" "$SECS" "${runs:-?}" "${cov:-?}" "$corpus" "${#seeds[@]}"
    else
      echo "FAIL $t: libFuzzer exited $rc"
      report_crash "$t" "$dir/fuzz.log" "$dir/artifacts"
      exit 1
    fi
  ) && rc=0 || rc=$?
  printf '%s\n' "$out"
  echo "$rc" >"$dir/rc"
}

trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
echo "fuzz: ${#TARGETS[@]} targets, $SECS s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
  [ -x "$BIN/$t" ] || { echo "fuzz: no such target: $t" >&2; exit 2; }
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true
trap - EXIT

passed=0 failed=0
for t in "${TARGETS[@]}"; do
  if [ "$(cat "$RUN/$t/rc" 2>/dev/null || echo 1)" = 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
echo "fuzz: build $((BUILT - START)) s, runs $((SECONDS - BUILT)) s"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
