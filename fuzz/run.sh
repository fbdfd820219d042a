#!/usr/bin/env bash
# Builds the fuzz targets (libFuzzer through libfuzzer-sys, stable Rust, coverage by LLVM's
# SanitizerCoverage passes) and runs each for FUZZ_SECONDS (20 by default) on its committed
# seed corpus (corpus/<target>/; new inputs go to a scratch copy, the committed one is left
# alone). Prints executions per target; exits non-zero on a crash, naming the input that
# caused it (libFuzzer writes it under $FUZZ_OUT/artifacts/<target>/).
#
#   bash fuzz/run.sh                     # every target, 20 s each
#   FUZZ_SECONDS=300 bash fuzz/run.sh dataplane_frame store_meta
#   bash fuzz/run.sh --build             # build only
#   fuzz/target/fuzz/x86_64-unknown-linux-gnu/release/<target> INPUT   # replay one input (a crash, a corpus file)
#
# Environment: FUZZ_SECONDS, FUZZ_JOBS (libFuzzer workers per target, 1), FUZZ_OUT (scratch
# directory, a fresh mktemp -d), FUZZ_TARGET_DIR (cargo's, fuzz/target/fuzz).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-1}"
out="${FUZZ_OUT:-$(mktemp -d -t p2pimg-fuzz.XXXXXX)}"
target_dir="${FUZZ_TARGET_DIR:-$here/target/fuzz}"
build_only=0
targets=()
for a in "$@"; do
  case "$a" in
    --build) build_only=1 ;;
    -*) echo "fuzz/run.sh: unknown option $a (targets by name, or --build)" >&2; exit 2 ;;
    *) targets+=("$a") ;;
  esac
done
if ((${#targets[@]} == 0)); then
  for f in "$here"/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
  [[ -f "$here/fuzz_targets/$t.rs" ]] || { echo "fuzz/run.sh: no target $t (see fuzz/fuzz_targets/)" >&2; exit 2; }
done

# What cargo-fuzz passes for `--sanitizer none`, all stable flags: edge coverage with 8-bit
# counters and the PC table libFuzzer reads, comparison tracing (so it learns magic values
# such as frame kinds and TOML keys), and `--cfg fuzzing`. Debug assertions and overflow
# checks come from the profile (Cargo.toml).
export RUSTFLAGS="${FUZZ_RUSTFLAGS:--Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing}"
export CARGO_TARGET_DIR="$target_dir"
# With an explicit --target, RUSTFLAGS reach only the targets' code, not build scripts and
# proc macros (which would not link without libFuzzer).
triple="$(rustc -vV | sed -n 's/^host: //p')"
start=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
(cd "$here" && cargo build --release --locked --target "$triple" "${bins[@]}")
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start )) s"
((build_only)) && exit 0

failed=()
printf '%-20s %8s %12s %10s %8s\n' target seconds executions exec/s corpus
for t in "${targets[@]}"; do
  bin="$target_dir/$triple/release/$t"
  corpus="$out/corpus/$t"
  artifacts="$out/artifacts/$t/"
  log="$out/$t.log"
  mkdir -p "$corpus" "$artifacts"
  if [[ -d "$here/corpus/$t" ]]; then cp -r "$here/corpus/$t/." "$corpus/"; fi
  dict=()
  [[ -f "$here/dict/$t.dict" ]] && dict=(-dict="$here/dict/$t.dict")
  rc=0
  "$bin" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" \
    ${jobs:+$( ((jobs > 1)) && echo "-jobs=$jobs -workers=$jobs")} >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  files=$(find "$corpus" -type f | wc -l)
  printf '%-20s %8s %12s %10s %8s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$files"
  if ((rc != 0)); then
    crash=$(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //' | tail -1)
    echo "fuzz: $t FAILED (exit $rc); input: ${crash:-none written}; log: $log" >&2
    grep -m1 -B2 -A20 "panicked at\|ERROR: libFuzzer" "$log" >&2 || tail -30 "$log" >&2
    echo "fuzz: replay with: $bin ${crash:-<input>}" >&2
    failed+=("$t")
  fi
done
echo "fuzz: ${#targets[@]} targets in $(( $(date +%s) - start )) s; scratch: $out"
if ((${#failed[@]})); then
  echo "fuzz: crashes in ${failed[*]}" >&2
  exit 1
fi
