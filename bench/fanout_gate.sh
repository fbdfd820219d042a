#!/usr/bin/env bash
# fanout_gate.sh -- the CI gate on the 8-pod network-namespace fan-out at its defaults:
# `bench/fidelity.sh scenarios/fidelity/netns-fanout-8.toml` runs the fan-out for real in both
# modes (real registry, scheduler, seed and peer daemons, skopeo, tbf-shaped links) and the
# simulator on the same file, and this fails when
#   - a pod failed or pulled unverified content,
#   - p2p took longer than MAX_WALL_S (26.7 s: the landed code before the daemon ran the
#     simulator's configuration; about 20 s since) or more than MAX_P2P_RATIO of direct,
#   - the registry sent more than MAX_COPIES copies of the image in p2p,
#   - a simulated time (p50, p99, makespan) is more than MAX_SIM_ERROR_PCT off the measured,
#     or the registry bytes more than 2 %.
# Env: MAX_WALL_S=26.7 MAX_P2P_RATIO=0.5 MAX_COPIES=1.01 MAX_SIM_ERROR_PCT=35, and
#      netns_fanout.sh's own. Reports: $OUT/netns-fanout-8/ (a temporary directory by default).
# Needs root, tests/setup.sh's packages and `cargo build --release --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_WALL_S=${MAX_WALL_S:-26.7}; MAX_P2P_RATIO=${MAX_P2P_RATIO:-0.5}; MAX_COPIES=${MAX_COPIES:-1.01}
MAX_SIM_ERROR_PCT=${MAX_SIM_ERROR_PCT:-35}
export OUT=${OUT:-$(mktemp -d /tmp/p2pimg-fanout-gate.XXXXXX)}
export WORK=${WORK:-$OUT/work}

fidelity=0
MAX_ERROR=$MAX_SIM_ERROR_PCT MAX_BYTES_ERROR=2 bash bench/fidelity.sh scenarios/fidelity/netns-fanout-8.toml || fidelity=$?
(( fidelity <= 1 )) || { echo "fanout_gate: the fidelity harness could not run (exit $fidelity)" >&2; exit 1; }
measured=$OUT/netns-fanout-8/measured.txt
cat "$measured" >&2

python3 - "$measured" "$MAX_WALL_S" "$MAX_P2P_RATIO" "$MAX_COPIES" "$fidelity" <<'PY'
import sys
path, max_wall, max_ratio, max_copies, fidelity = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5])
res = {}
for line in open(path):
    if line.startswith("fanout_result "):
        kv = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
        res[kv["mode"]] = kv
faults = []
if set(res) != {"direct", "p2p"}:
    faults.append(f"expected direct and p2p results, got {sorted(res)}")
else:
    d, p = res["direct"], res["p2p"]
    for mode, r in res.items():
        if r["ok"] != r["pods"] or r["verified"] != r["pods"]:
            faults.append(f"{mode}: {int(r['pods']) - int(r['ok'])} pods failed, {int(r['pods']) - int(r['verified'])} unverified")
    wall, direct, copies = float(p["wall_s"]), float(d["wall_s"]), float(p["registry_copies"])
    ratio = wall / direct
    print(f"fanout_gate: p2p {wall:.2f} s (limit {max_wall}), direct {direct:.2f} s, ratio {ratio:.2f} (limit {max_ratio}), "
          f"registry copies {copies:.3f} (limit {max_copies})")
    if wall > max_wall:
        faults.append(f"p2p took {wall:.2f} s, more than {max_wall} s")
    if ratio > max_ratio:
        faults.append(f"p2p took {ratio:.2f}x direct, more than {max_ratio}x")
    if copies > max_copies:
        faults.append(f"the registry sent {copies:.3f} copies in p2p, more than {max_copies}")
if fidelity:
    faults.append("the simulator is off the measurement by more than the limit (fidelity: FAILS lines above)")
for f in faults:
    print(f"fanout_gate: FAIL: {f}", file=sys.stderr)
sys.exit(1 if faults else 0)
PY
