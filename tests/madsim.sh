#!/usr/bin/env bash
# The madsim fault suite (simtest/): builds it with RUSTFLAGS="--cfg madsim" in its own
# target directory, runs every scenario on many seeds (one process per seed: see
# simtest/README.md, "Replays"), checks determinism by running some seeds twice, and on a
# failure prints the seed and the one command that replays it.
#
#   tests/madsim.sh                 # the CI run: build, then SEEDS seeds per scenario
#   tests/madsim.sh replay TEST SEED  # one scenario on one seed, with its output
#   tests/madsim.sh cross-check     # crosscheck-16.toml: the flow simulator, then madsim
#
# Environment: SEEDS (per scenario, default 12), FIRST_SEED (default 1), JOBS (processes
# at once, default 2), DET_SEEDS (seeds of `baseline` run twice, default 3),
# CARGO_TARGET_DIR (default target/madsim), RUST_LOG (logs of every node, for replays),
# RESULTS (a file to keep every run's line in: makespan, origin bytes, fingerprint).
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg madsim"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/madsim}"
SEEDS="${SEEDS:-12}"
FIRST_SEED="${FIRST_SEED:-1}"
JOBS="${JOBS:-2}"
DET_SEEDS="${DET_SEEDS:-3}"
DET_SEEDS=$(( DET_SEEDS < SEEDS ? DET_SEEDS : SEEDS ))
TESTS=(baseline peers_killed_and_restarted seed_killed scheduler_restarted partitions_healed
       slow_node origin_errors_and_throttling packet_loss swizzle_two_replicas
       scheduler_replica_failover)

build() {
    local out
    out=$(cargo test --profile madsim -p simtest --test faults --no-run 2>&1) || { echo "$out" >&2; exit 2; }
    BIN=$(echo "$out" | sed -n 's/.*Executable tests\/faults.rs (\(.*\))$/\1/p' | tail -1)
    [ -x "$BIN" ] || { echo "madsim.sh: cannot find the faults test binary in cargo's output" >&2; exit 2; }
}

# One scenario on one seed in its own process; prints its "ok" line, or the failure.
one() {
    local test=$1 seed=$2 log
    log=$(MADSIM_TEST_SEED=$seed MADSIM_TEST_NUM=1 "$BIN" --exact "$test" --test-threads 1 --nocapture 2>&1) && {
        echo "$log" | grep -oE "$test: seed $seed: ok.*" || echo "$test: seed $seed: ok"
        return 0
    }
    echo "FAIL $test seed $seed"
    # The panic message: the violations (or the panic), not the outcome dump or backtrace.
    echo "$log" | sed -n '/panicked at/,/^outcomes:\|^stack backtrace:/p' | grep -vE '^(outcomes:|stack backtrace:)' \
        | head -20 | sed 's/^/    /'
    echo "    replay: tests/madsim.sh replay $test $seed"
    return 1
}

if [ "${1:-}" = cross-check ]; then
    # The flow simulator's crosscheck-16 scenario, then the same under madsim (compared).
    cargo build --profile madsim -p simtest --test cross_check 2>&1 | tail -1
    out=$(mktemp -d)
    env -u RUSTFLAGS CARGO_TARGET_DIR="${REAL_TARGET_DIR:-target}" \
        cargo run --release -q -p sim -- simtest/crosscheck-16.toml --out "$out"
    SIM_SUMMARY="$out/crosscheck-16/summary.json" MADSIM_TEST_SEED="${SEED:-1}" MADSIM_TEST_NUM=1 \
        cargo test --profile madsim -p simtest --test cross_check -- --nocapture
    exit
fi
if [ "${1:-}" = replay ]; then
    [ $# -eq 3 ] || { echo "usage: tests/madsim.sh replay TEST SEED" >&2; exit 2; }
    build
    MADSIM_TEST_SEED=$3 MADSIM_TEST_NUM=1 exec "$BIN" --exact "$2" --test-threads 1 --nocapture
fi
[ $# -eq 0 ] || { echo "usage: tests/madsim.sh [replay TEST SEED | cross-check]" >&2; exit 2; }

t0=$(date +%s.%N)
build
t1=$(date +%s.%N)
export BIN
export -f one
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for test in "${TESTS[@]}"; do
    for ((s = FIRST_SEED; s < FIRST_SEED + SEEDS; s++)); do echo "$test $s"; done
done | xargs -P "$JOBS" -n 2 bash -c 'one "$0" "$1"' > "$results" || true
t2=$(date +%s.%N)

# Determinism: the same seed in two processes must give the same fingerprint.
det_fail=0
for ((s = FIRST_SEED; s < FIRST_SEED + DET_SEEDS; s++)); do
    a=$({ grep -E "^baseline: seed $s: ok" "$results" || true; } | sed -n 's/.*fingerprint \([0-9a-f]*\).*/\1/p')
    b=$(one baseline "$s" | sed -n 's/.*fingerprint \([0-9a-f]*\).*/\1/p')
    if [ -z "$a" ] || [ "$a" != "$b" ]; then
        echo "FAIL determinism: baseline seed $s: fingerprints ${a:-none} and ${b:-none}"
        echo "    replay: tests/madsim.sh replay baseline $s"
        det_fail=1
    fi
done
# madsim's own check: each seed runs twice in one process and every random draw and timer
# must match (services use svc::select! and svc::watch, deterministic under madsim).
for test in baseline scheduler_restarted; do
    for ((s = FIRST_SEED; s < FIRST_SEED + DET_SEEDS; s++)); do
        if ! log=$(MADSIM_TEST_CHECK_DETERMINISM=1 MADSIM_TEST_SEED=$s MADSIM_TEST_NUM=1 \
            "$BIN" --exact "$test" --test-threads 1 2>&1); then
            echo "FAIL MADSIM_TEST_CHECK_DETERMINISM: $test seed $s"
            echo "$log" | grep -E "panicked|non-determin" | head -5 | sed 's/^/    /'
            echo "    replay: MADSIM_TEST_CHECK_DETERMINISM=1 tests/madsim.sh replay $test $s"
            det_fail=1
        fi
    done
done
t3=$(date +%s.%N)

[ -z "${RESULTS:-}" ] || cp "$results" "$RESULTS"
runs=$(grep -c ": ok" "$results" || true)
fails=$(grep -c "^FAIL" "$results" || true)
grep -A22 "^FAIL" "$results" || true
awk -v b="$(echo "$t1 - $t0" | bc)" -v r="$(echo "$t2 - $t1" | bc)" -v d="$(echo "$t3 - $t2" | bc)" \
    -v n="$runs" -v f="$fails" -v t="${#TESTS[@]}" -v s="$SEEDS" -v ds="$DET_SEEDS" 'BEGIN {
    printf "madsim suite: %d scenarios x %d seeds: %d ok, %d failed; determinism: %d seeds twice in two processes, and MADSIM_TEST_CHECK_DETERMINISM on 2 scenarios x %d seeds\n", t, s, n, f, ds, ds
    printf "wall time: build %.1f s, runs %.1f s, determinism %.1f s\n", b, r, d
}'
virt=$(sed -n 's/.*makespan \([0-9.]*\) s virtual.*/\1/p' "$results" | paste -sd+ | bc 2>/dev/null || echo 0)
echo "virtual time to the last download, summed over runs: ${virt} s"
[ "$fails" -eq 0 ] && [ "$det_fail" -eq 0 ]
