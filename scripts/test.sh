#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every CTest test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j "${CTEST_JOBS:-2}" --timeout 900
