#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into ./build-fuzz and runs each for
# SECONDS (default 60), starting from its seed corpus (tests/fuzz/corpus/) and every input
# that once crashed (tests/fuzz/regressions/). A finding is written to
# build-fuzz/findings/<target>/ and makes the script fail; the executions per target are
# summed up in build-fuzz/fuzz-report.txt.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      FUZZ_JOBS=2 runs two targets at a time
#
# To keep a crash fixed: copy its input to tests/fuzz/regressions/<target>/ (CTest replays it
# in every build).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(job_spec safetensors examples tokenizer_json tokenizer_encode jinja json_line rpc_requests)
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOLYTUNE_FUZZ=ON \
    -DPOLYTUNE_BUILD_BENCH=OFF
fi
cmake --build build-fuzz -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]/#/fuzz_}"

run_one() {
  local t=$1 work=build-fuzz/corpus/$1 findings=build-fuzz/findings/$1
  mkdir -p "$work" "$findings"
  # The working corpus grows across runs; the seeds and regressions are read, never written.
  local seeds=(tests/fuzz/corpus/"$t")
  [ -d tests/fuzz/regressions/"$t" ] && seeds+=(tests/fuzz/regressions/"$t")
  ASAN_OPTIONS=detect_leaks=0 ./build-fuzz/tests/fuzz/fuzz_"$t" "$work" "${seeds[@]}" -max_total_time="$SECS" \
    -timeout=20 -rss_limit_mb=6144 -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings"/ \
    >build-fuzz/fuzz-"$t".log 2>&1
}

failed=0
pids=()
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  pids+=("$!:$t")
  while [ "$(jobs -rp | wc -l)" -ge "${FUZZ_JOBS:-1}" ]; do sleep 1; done
done
report=build-fuzz/fuzz-report.txt
: >"$report"
for p in "${pids[@]}"; do
  pid=${p%%:*} t=${p#*:}
  if wait "$pid"; then status=ok; else status=FINDING failed=1; fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' build-fuzz/fuzz-"$t".log | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' build-fuzz/fuzz-"$t".log | tail -1 | grep -o '[0-9]*' || echo 0)
  printf '%-18s %-8s %12s executions in %ss, %s coverage points, corpus %s inputs\n' "$t" "$status" "$execs" "$SECS" \
    "$cov" "$(ls build-fuzz/corpus/"$t" | wc -l)" | tee -a "$report"
  [ $status = ok ] || grep -E 'ERROR|SUMMARY|Test unit written' build-fuzz/fuzz-"$t".log | head -5
done
exit $failed
