#!/usr/bin/env bash
# Builds the CPU image (scripts/build-image.sh) and runs the demo job inside it with the
# image's own binaries: a coordinator, two workers and the CLI as separate processes, the
# bundled multilingual QLoRA job to SUCCEEDED, its adapter downloaded and evaluated. Runs the
# container with `buildah run --isolation chroot` (or `podman run` with IMAGE_TEST_PODMAN=1
# where the host allows it). Too slow for every CI run (~20 min on 2 cores, most of it the
# image build); its result goes in release notes.
#   scripts/image-test.sh [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-polytune:latest}
[ "${SKIP_BUILD:-0}" = 1 ] || bash scripts/build-image.sh "$IMAGE"

# Inside the container, as its non-root user, in a scratch folder.
read -r -d '' INSIDE <<'SH' || true
set -eu
D=$(mktemp -d /tmp/polytune-image-test.XXXXXX)
cp -r /usr/share/polytune/examples "$D/examples"
cd "$D"
echo "== binaries"; polytune --version; polytune-coordinator --version; polytune-worker --version
polytune model init --out "$D/build/demo/model" --hidden-size 256 --layers 4 --heads 8 --kv-heads 4 \
  --intermediate-size 688 --vocab-size 1024 --seed 0 >/dev/null
export POLYTUNE_COORDINATOR=127.0.0.1:17070
polytune-coordinator --listen "$POLYTUNE_COORDINATOR" --data-dir "$D/coordinator" --metrics-listen "" 2>"$D/coordinator.log" &
for w in 1 2; do
  polytune-worker --coordinator "$POLYTUNE_COORDINATOR" --work-dir "$D/worker$w" --devices cpu:1 --name "worker$w" \
    --metrics-listen "" --model-root "$D/build" 2>"$D/worker$w.log" &
done
for _ in $(seq 100); do polytune workers 2>/dev/null | grep -q worker2 && break; sleep 0.2; done
polytune workers
JOB=$(polytune submit examples/demo_job.yaml --name image-test)
echo "submitted $JOB"
# watch exits 0 only on SUCCEEDED
polytune watch "$JOB" >"$D/watch.log" 2>&1 || { tail -20 "$D/watch.log"; tail -20 "$D"/*.log; exit 1; }
polytune status "$JOB" | head -4
polytune download "$JOB" --out "$D/adapter"
ls -l "$D/adapter"
polytune eval --model "$D/build/demo/model" --data examples/data/instructions_eval.jsonl --quantization nf4 \
  --double-quant --adapter "$D/adapter"
echo "IMAGE TEST PASSED: $JOB SUCCEEDED in the image, adapter downloaded"
kill $(jobs -p) 2>/dev/null || true
SH

start=$(date +%s)
if [ "${IMAGE_TEST_PODMAN:-0}" = 1 ]; then
  podman run --rm "$IMAGE" sh -c "$INSIDE"
else
  c=$(buildah from "$IMAGE")
  trap 'buildah rm "$c" >/dev/null 2>&1 || true' EXIT
  buildah run --isolation chroot --user 10001:10001 "$c" -- sh -c "$INSIDE"
fi
echo "image-test: $IMAGE passed in $(($(date +%s) - start)) s (run only)"
