#!/usr/bin/env bash
# Builds the CPU image (Dockerfile) with buildah, tagged polytune:latest (or $IMAGE).
# Where no registry is reachable for the debian:12 base, it first makes one with debootstrap
# from the Debian package mirror and tags it as the FROM image (localhost/debian:12).
#   scripts/build-image.sh [IMAGE]        e.g. IMAGE=registry.example/polytune:0.1.0
# Needs: buildah, debootstrap (apt-get install buildah debootstrap), root or a rootless setup.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-${IMAGE:-polytune:latest}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v buildah >/dev/null || { echo "build-image: buildah is needed (apt-get install buildah)" >&2; exit 2; }

BASE=debian:12
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1 && ! buildah inspect --type image localhost/debian:12 >/dev/null 2>&1; then
  if ! timeout 60 buildah pull -q "docker.io/library/debian:12" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "build-image: no registry and no debootstrap" >&2; exit 2; }
    echo "build-image: no registry reachable; making debian:12 with debootstrap from $MIRROR"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$root.tar" --exclude='./dev/*' .
    c=$(buildah from scratch)
    buildah add "$c" "$root.tar" / >/dev/null  # a local tar is unpacked
    buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah commit -q "$c" localhost/debian:12 >/dev/null
    buildah rm "$c" >/dev/null
    rm -f "$root.tar"
  fi
fi
buildah inspect --type image "$BASE" >/dev/null 2>&1 || BASE=localhost/debian:12
echo "build-image: building $IMAGE from $BASE"
buildah build --isolation chroot --layers --build-arg BASE="$BASE" -t "$IMAGE" -f Dockerfile .
buildah images "$IMAGE"
