#!/usr/bin/env bash
# Fetches the Debian 12 packages the engine needs and the GPU machine lacks (it has g++, CMake,
# ninja, CUDA and PyTorch's libtorch, but no abseil, yaml-cpp, ICU, RE2, CLD2 or libphonenumber,
# and no network), unpacks them with `dpkg -x` into .gpu-deps/root and packs that folder into
# .gpu-deps.tar.xz (about 15 MB), which travels with the tree (`run` with carry
# [".gpu-deps.tar.xz"]); scripts/gpu-check.sh unpacks it there. Both paths are ignored by git.
#
#   scripts/gpu-deps.sh            # download (cached in .gpu-deps/debs), unpack, pack
#
# Static libraries, documentation and what the engine does not use (ICU's io/test/tu
# libraries, CLD2's full and dynamic tables, Gloo's CMake files that point at /usr) are left
# out, so the unpacked tree stays near 55 MB. libcrypto.so is linked to the machine's own
# libcrypto.so.3 there (OpenSSL 3 is ABI-stable); only its headers come from here.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu-deps
PACKAGES=(
  libabsl-dev libabsl20220623
  libyaml-cpp-dev libyaml-cpp0.7
  nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev
  libicu-dev libicu72
  libre2-dev libre2-9
  libcld2-dev libcld2-0
  libphonenumber-dev libphonenumber8 libprotobuf32
  libssl-dev libgloo-dev
)

mkdir -p "$OUT/debs"
(
  cd "$OUT/debs"
  missing=()
  for p in "${PACKAGES[@]}"; do compgen -G "${p}_*.deb" >/dev/null || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "gpu-deps: downloading ${missing[*]}"
    apt-get download "${missing[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || {
      echo "gpu-deps: apt-get download failed; run 'apt-get update' first" >&2
      exit 1
    }
  fi
)

rm -rf "$OUT/root"
for p in "${PACKAGES[@]}"; do
  deb=$(ls "$OUT/debs/${p}"_*.deb | head -1)
  dpkg -x "$deb" "$OUT/root"
done

lib="$OUT/root/usr/lib/x86_64-linux-gnu"
find "$OUT/root" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' -delete
rm -rf "$OUT/root/usr/share/doc" "$OUT/root/usr/share/man" "$OUT/root/usr/share/lintian" "$OUT/root/usr/src" \
  "$OUT/root/usr/share/cmake/Gloo" "$OUT/root/usr/lib/libgloo"* "$OUT/root/usr/bin" "$OUT/root/usr/sbin"
rm -f "$lib"/libicuio.* "$lib"/libicutest.* "$lib"/libicutu.* "$lib"/libcld2_full.* "$lib"/libcld2_dynamic.* \
  "$lib"/libssl.so "$lib"/libgeocoding.so
rm -rf "$lib/icu"
# Links whose target is not in this tree would be taken for libraries by CMake and the linker.
find "$OUT/root" -xtype l ! -name 'libcrypto.so' -delete

tar -C "$OUT" -cJf .gpu-deps.tar.xz.tmp root
mv .gpu-deps.tar.xz.tmp .gpu-deps.tar.xz
echo "gpu-deps: $(du -sm "$OUT/root" | cut -f1) MB unpacked in $OUT/root, $(du -m .gpu-deps.tar.xz | cut -f1) MB packed in .gpu-deps.tar.xz"
