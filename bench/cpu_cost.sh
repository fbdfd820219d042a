#!/usr/bin/env bash
# cpu_cost.sh -- what moving one byte costs the real processes' CPU: the figures behind the
# simulator's [cpu] defaults (sim/README.md, "Modelled costs").
#
# Usage:  bench/cpu_cost.sh [RUNS]   (default 3)
#   Runs bench/cpu_probe.toml through the fidelity harness RUNS times: one pod whose 2 Gbit/s
#   links are faster than this machine's processes, so the processes set the pace. Each run
#   pulls the 405 MB image straight from the registry (oci) and through a seed peer and the
#   pod's peerd (p2p); each process's CPU (utime + stime, the kernel's socket work included)
#   is divided by the bytes it moved:
#     registry  its CPU in oci / the bytes it sent
#     client    skopeo's CPU in oci / the bytes it received
#     daemon    the peerds' CPU in p2p / the bytes they received plus the bytes they sent
#               (the seed: from the registry, to the pod; the pod's: from the seed, to
#               skopeo through its mirror); split evenly between receive and send
# Prints one line per run and the medians (`medians: ...`).
# Needs what bench/fidelity.sh needs (root, iproute2, docker-registry, skopeo, the binaries).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "cpu_cost.sh: RUNS must be a positive whole number, not '$RUNS'" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

field() {  # field NAME LINE
  sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"
}

rows=()
for run in $(seq 1 "$RUNS"); do
  # The comparison's verdict is not the point here: its exit status is ignored.
  OUT=$out MAX_ERROR=1000 MAX_BYTES_ERROR=1000 bash "$ROOT/bench/fidelity.sh" "$ROOT/bench/cpu_probe.toml" >"$out/log" 2>&1 \
    || [[ -s $out/cpu-probe/measured.txt ]] || { cat "$out/log" >&2; exit 1; }
  m=$out/cpu-probe/measured.txt
  direct=$(grep '^fanout_result mode=direct' "$m")
  p2p=$(grep '^fanout_result mode=p2p' "$m")
  for line in "$direct" "$p2p"; do
    [[ $(field verified "$line") == "$(field pods "$line")" ]] || { echo "cpu_cost.sh: a pull was not verified: $line" >&2; exit 1; }
  done
  row=$(awk -v rc="$(field registry_cpu_s "$direct")" -v rtx="$(field registry_tx_MB "$direct")" \
            -v cc="$(field client_cpu_s "$direct")" -v img="$(field image_MB "$direct")" \
            -v dc="$(field daemon_cpu_s "$p2p")" -v sc="$(field seed_cpu_s "$p2p")" \
            -v so="$(field seed_origin_MB "$p2p")" -v su="$(field seed_upload_MB "$p2p")" \
            -v pp="$(field pods_parent_MB "$p2p")" -v pu="$(field pods_upload_MB "$p2p")" \
            -v pc="$(field client_cpu_s "$p2p")" -v w="$(field wall_s "$p2p")" 'BEGIN {
      # ns per byte = CPU s * 1e9 / (MB * 1e6)
      moved = so + su + pp + pp + pu        # the pod daemon hands skopeo what it received
      printf "registry=%.2f client=%.2f daemon=%.2f seed=%.2f pod_daemon=%.2f client_p2p=%.2f p2p_wall_s=%.2f\n",
        rc * 1e3 / rtx, cc * 1e3 / img, dc * 1e3 / moved, sc * 1e3 / (so + su), (dc - sc) * 1e3 / (pp + pp + pu), pc * 1e3 / pp, w
    }')
  echo "run $run: $row (CPU-ns per byte)"
  rows+=("$row")
done
median() {  # the median of the numbers on stdin
  sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
line="medians:"
for key in registry client daemon seed pod_daemon client_p2p p2p_wall_s; do
  line+=" $key=$(printf '%s\n' "${rows[@]}" | sed -n "s/.*\b$key=\([0-9.]*\).*/\1/p" | median)"
done
echo "$line"
