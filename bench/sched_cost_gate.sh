#!/usr/bin/env bash
# The simulator's scheduler costs still describe the real service: runs
# `cargo bench -p sched --bench service_rpc_cost` (the scheduler binary on one CPU, 1,000
# peers, each on its own connection, registering at once, then reporting) and fails when
# the service's CPU per request is above MAX_RATIO (1.5) times what the simulator charges
# (`schedule_service_us`, `report_service_us` of sim's defaults, which every bundled
# scenario uses). A slower service would make every simulated rollout optimistic; a much
# faster one is a reason to lower the defaults (the gate prints the ratios either way).
# CPU time, not wall time, so a busy machine moves it less (77-107 us seen on a busy VM).
set -euo pipefail
cd "$(dirname "$0")/.."
max_ratio="${MAX_RATIO:-1.5}"
model=sim/src/scenario/model.rs
schedule_us=$(sed -n 's/.*SchedulerCost { schedule_service_us: \([0-9.]*\), report_service_us: \([0-9.]*\),.*/\1/p' "$model")
report_us=$(sed -n 's/.*SchedulerCost { schedule_service_us: \([0-9.]*\), report_service_us: \([0-9.]*\),.*/\2/p' "$model")
[ -n "$schedule_us" ] && [ -n "$report_us" ] || { echo "sched_cost_gate: cannot read SchedulerCost's defaults in $model" >&2; exit 2; }
out=$(ROUNDS="${ROUNDS:-3}" PEERS=1000 CONNECTIONS=1000 cargo bench -q -p sched --bench service_rpc_cost 2>&1) \
    || { echo "$out"; echo "sched_cost_gate: the bench failed" >&2; exit 1; }
echo "$out" | grep -v "^$"
line=$(echo "$out" | grep '^medians:') || { echo "sched_cost_gate: no 'medians:' line in the bench's output" >&2; exit 1; }
python3 - "$line" "$schedule_us" "$report_us" "$max_ratio" <<'PY'
import sys
line, schedule_us, report_us, max_ratio = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
got = dict(kv.split("=") for kv in line.split()[1:])
bad = 0
for name, measured, model in [("registration", float(got["register_cpu_us"]), schedule_us),
                              ("one-piece report", float(got["report_1_piece_cpu_us"]), report_us)]:
    ratio = measured / model
    verdict = "ok" if ratio <= max_ratio else "FAIL"
    print(f"sched_cost_gate: {name}: the service spends {measured:.1f} us of CPU, the simulator charges {model:g} us: {ratio:.2f}x (limit {max_ratio}x) {verdict}")
    bad += verdict == "FAIL"
if bad:
    print("sched_cost_gate: the real scheduler costs more than the simulator assumes; speed it up or raise the defaults in sim/src/scenario/model.rs and the scenarios (sim/README.md, 'Modelled costs')")
    sys.exit(1)
PY
