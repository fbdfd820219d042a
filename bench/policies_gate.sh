#!/usr/bin/env bash
# The committed baseline comparison (reports/policies/) still holds: `sim compare-policies`
# on the eight seed scenarios again, every figure within TOLERANCE_PCT (5 %) of the
# committed policies.csv (or 0.05 absolute, for figures near 0). A change that moves the
# default, dragonfly or kraken figures must regenerate the reports and their README (the
# loop at the top of reports/policies/README.md). Needs ./target/release/sim.
set -euo pipefail
cd "$(dirname "$0")/.."
tolerance="${TOLERANCE_PCT:-5}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in nginx-50 nginx-100 nginx-200 nginx-500 tensorflow-50 tensorflow-100 tensorflow-200 tensorflow-500; do
    ./target/release/sim compare-policies "scenarios/$f.toml" --out "$out" >/dev/null
done
python3 - reports/policies "$out" "$tolerance" <<'PY'
import csv, math, os, sys
committed, fresh, tol = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 100
bad, n = [], 0
for name in sorted(os.listdir(committed)):
    path = os.path.join(committed, name, "policies.csv")
    if not os.path.isfile(path):
        continue
    def rows(p):
        return {(r["mode"], r["metric"]): r for r in csv.DictReader(open(p))}
    old, new = rows(path), rows(os.path.join(fresh, name, "policies.csv"))
    for key, r in old.items():
        for policy in ("default", "dragonfly", "kraken"):
            a, b = float(r[policy]), float(new[key][policy])
            n += 1
            if math.isnan(a) and math.isnan(b):
                continue
            if not (abs(b - a) <= max(tol * abs(a), 0.05)):
                bad.append(f"{name} {key[0]} {key[1]} {policy}: committed {a:g}, now {b:g}")
print(f"policies_gate: {n} figures compared with reports/policies, {len(bad)} off by more than {tol:.0%}")
for line in bad[:40]:
    print("  " + line)
if bad:
    sys.exit("policies_gate: FAIL: regenerate reports/policies (the loop in its README) and update the figures quoted there and in sched/README.md")
PY
