#!/usr/bin/env bash
# The GPU machine's whole visit as one prepared run (about 8 minutes on one H100): build the
# engine without gRPC against the machine's PyTorch libtorch (CUDA) and the Debian packages in
# .gpu-deps.tar.xz (scripts/gpu-deps.sh makes it here), run the CUDA tests, then the GPU
# benchmark beside its peer (Hugging Face transformers + PEFT, bf16 LoRA), and write one JSON
# summary to $OUT/gpu-check.json.
#
#   scripts/gpu-deps.sh                      # here, once: the packages, packed
#   run: scripts/gpu-check.sh   carry: [".gpu-deps.tar.xz"]
#   scripts/gpu-check.sh --cpu               # here: the same steps against Debian's CPU libtorch,
#                                            # with the CUDA tests skipping and tiny shapes
#
# Environment: OUT (default build-gpu/out), GPU_CHECK_SHAPES (default "1b 8b-layers"),
# GPU_CHECK_STEPS (default 8), GPU_CHECK_BASES (default "nf4 bf16 nf4keep"), PEAK_TFLOPS (default 989,
# H100 SXM dense bf16).
# Every step runs even when an earlier one fails; the summary says which failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
[[ "${1:-}" == "--cpu" ]] && MODE=cpu
OUT=${OUT:-$ROOT/build-gpu/out}
BUILD=$ROOT/build-gpu
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
: >"$LOG"
STEPS=${GPU_CHECK_STEPS:-8}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
START=$(date +%s)
declare -A RESULT

log() { echo "[gpu-check +$(($(date +%s) - START))s] $*" | tee -a "$LOG" >&2; }
step() {  # step NAME COMMAND...: runs it, logs its output, records ok/failed
  local name=$1
  shift
  log "$name: $*"
  if "$@" >>"$LOG" 2>&1; then RESULT[$name]=ok; else RESULT[$name]="failed (exit $?)"; fi
  log "$name: ${RESULT[$name]}"
}

# --- Dependencies: the unpacked Debian packages, and the machine's libtorch.
if [[ ! -d .gpu-deps/root ]]; then
  [[ -f .gpu-deps.tar.xz ]] || { log ".gpu-deps.tar.xz is missing: run scripts/gpu-deps.sh here and carry it"; exit 2; }
  mkdir -p .gpu-deps && tar -C .gpu-deps -xJf .gpu-deps.tar.xz
fi
DEPS=$ROOT/.gpu-deps/root/usr
LIBDIR=$DEPS/lib/x86_64-linux-gnu
# Only OpenSSL's headers travel; the library is the machine's own (OpenSSL 3 keeps its ABI).
crypto=$(ls /usr/lib/x86_64-linux-gnu/libcrypto.so.3 /lib/x86_64-linux-gnu/libcrypto.so.3 2>/dev/null | head -1)
[[ -n "$crypto" ]] && ln -sf "$crypto" "$LIBDIR/libcrypto.so"
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
PY=python3
[[ $MODE == cpu ]] && PY=/usr/bin/python3  # Debian's python3-torch
TORCH_PREFIX=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
log "mode $MODE; torch $($PY -c 'import torch;print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$LOG"

# --- Build: engine, engine tests, bench, CLI; no gRPC.
CMAKE_ARGS=(-S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYTUNE_WITH_GRPC=OFF
  "-DCMAKE_PREFIX_PATH=$DEPS;$TORCH_PREFIX" "-DCMAKE_BUILD_RPATH=$LIBDIR" -DOPENSSL_ROOT_DIR="$DEPS")
command -v ninja >/dev/null || CMAKE_ARGS[5]="Unix Makefiles"
step configure cmake "${CMAKE_ARGS[@]}"
step build cmake --build "$BUILD" -j "$(nproc)" --target engine_tests train_bench polytune polytune-engine

# --- Tests: the CUDA ones (they skip without a device), then the CPU engine suite on this libtorch.
if [[ ${RESULT[build]} == ok ]]; then
  step cuda_tests "$BUILD/tests/engine_tests" --gtest_filter='Cuda.*' --gtest_output="json:$OUT/cuda_tests.json"
  step engine_tests timeout 240 "$BUILD/tests/engine_tests" --gtest_filter='-Cuda.*' --gtest_brief=1 \
    --gtest_output="json:$OUT/engine_tests.json"
fi

# --- Benchmark: Polytune (NF4 and a bf16 base) and the peer on the same shapes.
# name: hidden layers heads-dim kv-heads intermediate vocab seq batch
declare -A SHAPES=(
  [1b]="2048 16 64 8 8192 128256 2048 4"
  [8b-layers]="4096 4 128 8 14336 128256 2048 2"
  [tiny]="256 2 64 4 704 4096 128 2"
)
if [[ $MODE == cpu ]]; then
  SHAPE_LIST=${GPU_CHECK_SHAPES:-tiny}
  DEVICE=cpu
else
  SHAPE_LIST=${GPU_CHECK_SHAPES:-1b 8b-layers}
  DEVICE=cuda
fi
BENCH_WORK=${BENCH_WORK:-/tmp/polytune-gpu-bench}
for shape in $SHAPE_LIST; do
  read -r hidden layers head_dim kv inter vocab seq batch <<<"${SHAPES[$shape]}"
  common=(--hidden "$hidden" --layers "$layers" --head-dim "$head_dim" --kv-heads "$kv" --intermediate "$inter"
    --vocab "$vocab" --seq "$seq" --batch "$batch" --steps "$STEPS" --lora-r 16 --checkpointing 1)
  if [[ ${RESULT[build]} == ok ]]; then
    # nf4keep: NF4 with checkpointing that keeps the projection products (no GEMM recomputed);
    # GPU_CHECK_BASES="nf4 bf16" leaves it out where the run must be shorter.
    for base in ${GPU_CHECK_BASES:-nf4 bf16 nf4keep}; do
      extra=()
      [[ $base == bf16 ]] && extra=(--no-quant 1)
      [[ $base == nf4keep ]] && extra=(--keep-projections 1)
      step "bench_${shape}_${base}" bash -c '"$@" > "'"$OUT/polytune_${shape}_${base}.json"'"' _ \
        "$BUILD/bench/train_bench" "${common[@]}" "${extra[@]}" --device "$DEVICE" --peak-tflops "$PEAK_TFLOPS" \
        --work "$BENCH_WORK" --skip-sgemm 1
    done
  fi
  impl=hf
  $PY -c 'import transformers, peft' 2>/dev/null || impl=eager
  step "peer_${shape}" bash -c '"$@" > "'"$OUT/peer_${shape}.json"'"' _ \
    $PY bench/peer/lora_peer.py --impl "$impl" "${common[@]}" --device "$DEVICE" --peak-tflops "$PEAK_TFLOPS"
done

# --- One JSON summary.
results_json=$(for k in "${!RESULT[@]}"; do printf '%s\t%s\n' "$k" "${RESULT[$k]}"; done)
RESULTS="$results_json" $PY - "$OUT" "$MODE" "$(($(date +%s) - START))" <<'EOF'
import json, os, sys, glob
out, mode, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
summary = {"mode": mode, "seconds": seconds, "steps": {}, "tests": {}, "bench": {}}
for line in os.environ["RESULTS"].splitlines():
    k, v = line.split("\t", 1)
    summary["steps"][k] = v
for name in ("cuda_tests", "engine_tests"):
    path = os.path.join(out, name + ".json")
    if os.path.exists(path):
        t = json.load(open(path))
        cases = [c for s in t.get("testsuites", []) for c in s.get("testsuite", [])]
        summary["tests"][name] = {
            "tests": t.get("tests"), "failures": t.get("failures"),
            "skipped": sum(1 for c in cases if c.get("result") == "SKIPPED"),
            "failed": [c["classname"] + "." + c["name"] for c in cases if c.get("failures")]}
for path in sorted(glob.glob(os.path.join(out, "*_*.json"))):
    name = os.path.basename(path)[:-5]
    if name in ("cuda_tests", "engine_tests"):
        continue
    try:
        summary["bench"][name] = json.load(open(path))
    except ValueError:
        summary["bench"][name] = {"error": "no JSON (see gpu-check.log)"}
for shape in {k.split("_")[1] for k in summary["bench"] if k.startswith("peer_")}:
    peer = summary["bench"].get("peer_" + shape, {})
    for base in ("nf4", "bf16", "nf4keep"):
        ours = summary["bench"].get("polytune_%s_%s" % (shape, base), {})
        if ours.get("tokens_per_second") and peer.get("tokens_per_second"):
            mem_key = "cuda_peak_allocated_bytes" if mode == "gpu" else "peak_rss_bytes"
            ratio = {"tokens_per_second": ours["tokens_per_second"] / peer["tokens_per_second"]}
            if ours.get(mem_key) and peer.get(mem_key):
                ratio["peak_memory"] = ours[mem_key] / peer[mem_key]
            summary.setdefault("vs_peer", {})["%s_%s" % (shape, base)] = ratio
json.dump(summary, open(os.path.join(out, "gpu-check.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
EOF
