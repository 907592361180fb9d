#!/usr/bin/env bash
# Runs every libFuzzer target of a sanitizer build for a bounded time, as many at once as
# there are cores, and prints the executions per target and in total. Fails if any target
# finds a crash, a leak, a timeout or an out-of-memory input (kept in build/fuzz/artifacts).
#
#   cpp/fuzz/run.sh [build/asan] [build/fuzz-seeds]
#
# FUZZ_SECONDS sets the time per target (default 30; 600 for a longer hunt, 0 to skip).
# The corpus each target grows is kept in build/fuzz/corpus/<target> for the next run.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/asan}
seeds=${2:-build/fuzz-seeds}
seconds=${FUZZ_SECONDS:-30}
targets=(safetensors zip pickle torch_zip index pt2 codegen)
work=build/fuzz
if [ "$seconds" = 0 ]; then
  echo "fuzz: skipped (FUZZ_SECONDS=0)"
  exit 0
fi
rm -rf "$work/logs"
mkdir -p "$work/artifacts" "$work/logs"

fuzz_one() {
  local target=$1 status=0
  mkdir -p "$work/corpus/$target"
  "$build/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -dict="$seeds/$target.dict" -artifact_prefix="$work/artifacts/$target-" \
    "$work/corpus/$target" "$seeds/$target" \
    >"$work/logs/$target.log" 2>&1 || status=$?
  echo "$status" >"$work/logs/$target.status"
}

for target in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= $(nproc))); do wait -n || true; done
  fuzz_one "$target" &
done
wait

failed=()
total=0
summary=()
for target in "${targets[@]}"; do
  status=$(cat "$work/logs/$target.status")
  runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$work/logs/$target.log" | tail -1)
  if [ "$status" != 0 ] || [ -z "$runs" ]; then
    failed+=("$target")
    echo "fuzz_$target FAILED (exit $status); the end of $work/logs/$target.log:"
    tail -n 60 "$work/logs/$target.log"
    continue
  fi
  total=$((total + runs))
  summary+=("$target $runs")
done
printf -v per_target '%s, ' "${summary[@]}"
echo "fuzz: $total executions in total, ${seconds}s per target (${per_target%, })"
if ((${#failed[@]})); then
  echo "fuzz: failing targets: ${failed[*]} (inputs in $work/artifacts)"
  exit 1
fi
