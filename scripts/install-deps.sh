#!/usr/bin/env bash
# Installs every Debian 12 package that building, the demo and the tests need.
# Idempotent: packages already present are skipped, so re-running costs a dpkg query.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libopenblas0-openmp libgloo-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev
  libabsl-dev libyaml-cpp-dev nlohmann-json3-dev libsqlite3-dev
  libre2-dev libicu-dev libcld2-dev libphonenumber-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  python3 prometheus openssl
  clang libclang-rt-14-dev
)
# The report test's browser; image builds (POLYTUNE_DEPS=build) need no browser.
[ "${POLYTUNE_DEPS:-all}" = build ] || PACKAGES+=(chromium)
command -v node >/dev/null || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Test-only npm packages (pinned in tests/deploy/package-lock.json): the Kubernetes, Prometheus
# Operator and cert-manager schemas the manifest test validates against. Without them (no node
# or no registry) that test skips and says why.
install_npm_test_packages() {
  if [ -f tests/deploy/package-lock.json ] && command -v npm >/dev/null &&
     [ ! -d tests/deploy/node_modules/kubernetes-models ]; then
    npm ci --prefix tests/deploy --no-audit --no-fund --loglevel=error ||
      echo "install-deps: npm ci in tests/deploy failed; the manifest test will skip" >&2
  fi
}
cd "$(dirname "$0")/.."

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  install_npm_test_packages
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_npm_test_packages
