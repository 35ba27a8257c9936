#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every CTest test.
#
#   scripts/test.sh              the suite, in ./build, then a 20 s fuzz smoke per target
#   scripts/test.sh --sanitize   the unit tests (label "unit": every library, the fuzz replays
#                                included) built with ASan + UBSan in ./build-asan; any report fails
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ "${1:-}" = "--sanitize" ]; then
  GEN=()
  command -v ninja >/dev/null && GEN=(-G Ninja)
  if [ ! -f build-asan/CMakeCache.txt ]; then
    cmake -S . -B build-asan "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOLYTUNE_SANITIZE=ON -DPOLYTUNE_BUILD_BENCH=OFF
  fi
  cmake --build build-asan -j "${JOBS:-$(nproc)}"
  cd build-asan
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/../tests/sanitizer/lsan.supp:print_suppressions=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  exec ctest --output-on-failure -j "${CTEST_JOBS:-2}" --timeout 1800 -L unit
fi
bash scripts/build.sh
(cd build && ctest --output-on-failure -j "${CTEST_JOBS:-2}" --timeout 900)
# A fuzz smoke: every libFuzzer target for FUZZ_SMOKE_SECONDS (20) with ASan + UBSan, from its
# seeds and past crashes (the full sanitizer build of the unit tests, --sanitize, would double
# CI's time; run it before a release). FUZZ_SMOKE_SECONDS=0 skips it.
if [ "${FUZZ_SMOKE_SECONDS:-20}" != 0 ]; then
  FUZZ_JOBS=${FUZZ_JOBS:-2} bash scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-20}"
fi
