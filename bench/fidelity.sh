#!/usr/bin/env bash
# fidelity.sh -- a scenario run twice: on real processes in network namespaces (the real
# docker-registry, scheduler, seed peers, a peerd and a real client per pod, every link shaped
# with tbf to the scenario's rates) and by the simulator on the same file; then compared.
#
# Usage:  bench/fidelity.sh SCENARIO.toml [skopeo|containerd]
#   The client defaults to the scenario's [emulation] client. The scenario's effective
#   [scheduler] and [peer] tables (what `sim` runs) are given to the scheduler and every peerd.
# Env:    OUT=reports/fidelity  MAX_ERROR=10 (p50, p99, makespan, %)  MAX_BYTES_ERROR=2 (registry, %)
#         MAX_OCI_P50_ERROR=MAX_ERROR (oci p50 alone: TCP's unfair shares are not modelled)
#         WORK=/tmp/p2pimg-fidelity  BIN_DIR=target/release  RUN_TIMEOUT_S=900
#         RUNS=1  emulate the scenario this many times (1-20); every measured figure is then the
#                 median over the runs, rank by rank (one run on this shared 2-core VM varies by
#                 8-17 % in p2p: take 3 or more before trusting a 10 % comparison)
# Output: OUT/<name>/: measured.txt (the emulation's lines), image.json, comparison.md,
#         comparison.json, pods.csv, start_cdf.png/.svg, sim/<name>/ (the simulated run's
#         reports). Exit 0 when every figure is within its limit, 1 when one is not, 2 when
#         the scenario cannot be emulated here (the message says which limit and why).
# Needs:  root, iproute2, docker-registry, the client (tests/setup.sh), and
#         cargo build --release -p sim -p peer -p sched -p e2e
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
OUT=${OUT:-$ROOT/reports/fidelity}
MAX_ERROR=${MAX_ERROR:-10}; MAX_BYTES_ERROR=${MAX_BYTES_ERROR:-2}; MAX_OCI_P50_ERROR=${MAX_OCI_P50_ERROR:-$MAX_ERROR}
WORK=${WORK:-/tmp/p2pimg-fidelity}
RUNS=${RUNS:-1}

log() { printf '[%s] fidelity: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

scenario=${1:-}; client=${2:-}
if [[ -z $scenario || $scenario == -h || $scenario == --help ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; [[ -n $scenario ]]; exit $?
fi
[[ -f $scenario ]] || { log "no scenario file $scenario"; exit 2; }
[[ $RUNS =~ ^[0-9]+$ ]] && (( RUNS >= 1 && RUNS <= 20 )) || { log "RUNS=$RUNS: give a whole number of runs from 1 to 20"; exit 2; }
[[ -z $client || $client == skopeo || $client == containerd ]] || { log "client must be skopeo or containerd, not '$client'"; exit 2; }
for b in sim peerd scheduler e2e-oci-push; do
  [[ -x $BIN_DIR/$b ]] || { log "$BIN_DIR/$b missing: cargo build --release -p sim -p peer -p sched -p e2e"; exit 2; }
done

plan=$(mktemp -d)
trap 'rm -rf "$plan"' EXIT
"$BIN_DIR/sim" fidelity-plan "$scenario" --out "$plan" >/dev/null || exit 2
# shellcheck disable=SC1091  # written just now by sim fidelity-plan: KEY=word lines
source "$plan/env"
if [[ -n $client && $client != "$CLIENT" ]]; then
  log "the scenario models $CLIENT; running $client instead (its pod lifecycle may not match)"
  CLIENT=$client
fi
dir=$OUT/$NAME
mkdir -p "$dir"
log "$NAME: $PODS pods at $POD_RATE, registry $REG_RATE, $SEEDS seed(s) at $SEED_RATE, layers $LAYERS_MIB MiB, $CLIENT, $WHAT"
start=$(date +%s)
: >"$dir/measured.txt"
for ((run = 1; run <= RUNS; run++)); do
  (( RUNS == 1 )) || log "run $run of $RUNS"
  PODS=$PODS POD_RATE=$POD_RATE REG_RATE=$REG_RATE SEED_RATE=$SEED_RATE SEEDS=$SEEDS LAYERS_MIB=$LAYERS_MIB \
    WORK=$WORK BIN_DIR=$BIN_DIR PEER_EXTRA_TOML=$plan/peer-core.toml PEER_MIRROR_KEYS=$plan/peer-mirror.toml SCHEDULER_EXTRA_TOML=$plan/scheduler-core.toml \
    bash "$ROOT/bench/netns_fanout.sh" "$WHAT" "$CLIENT" >>"$dir/measured.txt"
done
cp "$WORK/image.json" "$dir/image.json"
log "emulation took $(( $(date +%s) - start )) s; simulating"
"$BIN_DIR/sim" fidelity-compare "$scenario" --measured "$dir/measured.txt" --image "$dir/image.json" \
  --out "$OUT" --max-error "$MAX_ERROR" --max-bytes-error "$MAX_BYTES_ERROR" --max-oci-p50-error "$MAX_OCI_P50_ERROR"
