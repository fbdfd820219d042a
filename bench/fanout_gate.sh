#!/usr/bin/env bash
# fanout_gate.sh -- the CI gate on the 8-pod network-namespace fan-out at its defaults:
# runs `bench/netns_fanout.sh p2p` (real registry, scheduler, seed and peer daemons, skopeo,
# tbf-shaped links), then the simulator on scenarios/fidelity/netns-fanout-8.toml (the same
# set-up as a scenario), and fails when
#   - a pod failed or pulled unverified content,
#   - the fan-out took longer than MAX_WALL_S (26.7 s: the landed code before the daemon ran
#     the simulator's configuration; it takes about 20.4 s since),
#   - the registry sent more than MAX_COPIES copies of the image,
#   - the measured wall time is more than MAX_SIM_ERROR (relative) away from the
#     simulator's p2p makespan.
# Env: MAX_WALL_S=26.7 MAX_COPIES=1.01 MAX_SIM_ERROR=0.35, and netns_fanout.sh's own.
# Needs root, tests/setup.sh's packages and `cargo build --release --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_WALL_S=${MAX_WALL_S:-26.7}; MAX_COPIES=${MAX_COPIES:-1.01}; MAX_SIM_ERROR=${MAX_SIM_ERROR:-0.35}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/release}
export WORK=${WORK:-$(mktemp -d /tmp/p2pimg-fanout-gate.XXXXXX)}

# (Captured, then echoed: `tee /dev/stderr` would reopen a log file stderr points at and
# truncate it.)
out=$(bash bench/netns_fanout.sh p2p)
printf '%s\n' "$out" >&2
result=$(grep '^fanout_result' <<<"$out" | tail -1)
[[ -n $result ]] || { echo "fanout_gate: no fanout_result line" >&2; exit 1; }
field() { tr ' ' '\n' <<<"$result" | awk -F= -v k="$1" '$1==k{print $2}'; }
pods=$(field pods); ok=$(field ok); verified=$(field verified)
wall=$(field wall_s); copies=$(field registry_copies)

sim_dir=$(mktemp -d)
"$BIN_DIR/sim" scenarios/fidelity/netns-fanout-8.toml --out "$sim_dir" >/dev/null
predicted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["modes"]["p2p"]["makespan_s"])' \
  "$sim_dir/netns-fanout-8/summary.json")
rm -rf "$sim_dir"

python3 - "$pods" "$ok" "$verified" "$wall" "$copies" "$predicted" "$MAX_WALL_S" "$MAX_COPIES" "$MAX_SIM_ERROR" <<'EOF'
import sys
pods, ok, verified = (int(x) for x in sys.argv[1:4])
wall, copies, predicted, max_wall, max_copies, max_err = (float(x) for x in sys.argv[4:10])
error = wall / predicted - 1
print(f"fanout_gate: measured {wall:.2f} s (limit {max_wall}), registry copies {copies:.3f} (limit {max_copies}), "
      f"simulated {predicted:.2f} s: measured is {error:+.1%} of it (limit +-{max_err:.0%})")
faults = []
if ok != pods or verified != pods:
    faults.append(f"{pods - ok} pods failed, {pods - verified} unverified")
if wall > max_wall:
    faults.append(f"the fan-out took {wall:.2f} s, more than {max_wall} s")
if copies > max_copies:
    faults.append(f"the registry sent {copies:.3f} copies, more than {max_copies}")
if abs(error) > max_err:
    faults.append(f"the simulator's {predicted:.2f} s is {error:+.1%} off the measured {wall:.2f} s")
for f in faults:
    print(f"fanout_gate: FAIL: {f}", file=sys.stderr)
sys.exit(1 if faults else 0)
EOF
