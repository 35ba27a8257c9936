#!/usr/bin/env bash
# Polytune's trainer against the PyTorch-eager LoRA peer (bench/peer/lora_peer.py on Debian's
# python3-torch) on the same Llama shape, batch, sequence, threads and activation
# checkpointing, in interleaved A/B rounds (ABBA order, so drift in the machine hits both
# alike). Prints one JSON object: each side's median tokens/s and peak RSS, and the ratios.
#
#   bench/peer_compare.sh [--rounds 3] [--build build] [--peer-env same|installed] [train_bench options...]
#   e.g. bench/peer_compare.sh --rounds 3 --hidden 512 --layers 8 --seq 512 --batch 4 --threads 2
#
# --peer-env same (the default) gives the peer the BLAS build, GEMM kernels and OpenMP wait
# policy Polytune runs with; `installed` runs it as the machine's defaults leave it (what a user
# who tuned nothing gets: on Debian 12 the pthread OpenBLAS, its own kernel choice, OpenMP's
# spinning wait policy).
# Polytune runs NF4 (double quant) unless --no-quant 1 is passed; the peer's base is unquantised
# (NF4 needs bitsandbytes' CUDA kernels). --compute-dtype float32|bfloat16 goes to both sides:
# the peer's frozen base and activations in that dtype (as Hugging Face loads a bf16 model), its
# LoRA weights fp32 cast to it, as PEFT does.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3
BUILD=build
PEER_ENV=same
ARGS=()
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --peer-env) PEER_ENV=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
threads=$(nproc)
for ((i = 0; i < ${#ARGS[@]}; i++)); do [[ ${ARGS[i]} == --threads ]] && threads=${ARGS[i + 1]}; done
PY=/usr/bin/python3
$PY -c 'import torch' 2>/dev/null || { echo "peer_compare: the peer needs Debian's PyTorch: apt-get install python3-torch" >&2; exit 1; }
PEER_ARGS=()
for ((i = 0; i < ${#ARGS[@]}; i += 2)); do
  case ${ARGS[i]} in --no-quant | --rank | --world | --port | --profile | --skip-sgemm | --work | --peak-tflops | --keep-projections) ;;
    *) PEER_ARGS+=("${ARGS[i]}" "${ARGS[i + 1]}") ;;
  esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run_ours() { OMP_NUM_THREADS=$threads "$BUILD/bench/train_bench" "${ARGS[@]}" --threads "$threads" --skip-sgemm 1 >>"$tmp/ours.jsonl"; }
# The peer's torch uses the same OpenBLAS: it gets the GEMM kernels and the build (OpenMP or
# pthreads) ours chose (train_bench reports them; see ReexecWithTunedCpuEnvironment), and the
# same OpenMP wait policy, so the two differ only in their own code.
core="" blas_dir=""
ours_field() { $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline()).get(sys.argv[2], ""))' "$tmp/ours.jsonl" "$1"; }
peer_env() {
  [[ -n $core ]] || core=$(ours_field openblas_core)
  local lib
  [[ -n $blas_dir ]] || { lib=$(ours_field openblas_library); [[ -z $lib ]] || blas_dir=$(dirname "$lib"); }
}
[[ $PEER_ENV == same || $PEER_ENV == installed ]] || { echo "peer_compare: --peer-env is same or installed, not '$PEER_ENV'" >&2; exit 1; }
run_peer() {
  if [[ $PEER_ENV == installed ]]; then
    OMP_NUM_THREADS=$threads $PY bench/peer/lora_peer.py --impl eager "${PEER_ARGS[@]}" --threads "$threads" >>"$tmp/peer.jsonl"
    return
  fi
  peer_env
  LD_LIBRARY_PATH=$blas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$core} \
    OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=$threads \
    $PY bench/peer/lora_peer.py --impl eager "${PEER_ARGS[@]}" --threads "$threads" >>"$tmp/peer.jsonl"
}
for ((r = 0; r < ROUNDS; r++)); do
  if ((r % 2 == 0)); then run_ours; run_peer; else run_peer; run_ours; fi
  echo "peer_compare: round $((r + 1))/$ROUNDS done" >&2
done
$PY - "$tmp/ours.jsonl" "$tmp/peer.jsonl" "$PEER_ENV" <<'EOF'
import json, statistics, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
peer = [json.loads(l) for l in open(sys.argv[2])]
def side(runs):
    return {"tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
            "peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in runs),
            "runs_tokens_per_second": [round(r["tokens_per_second"], 1) for r in runs]}
o, p = side(ours), side(peer)
shape = {k: ours[0][k] for k in ("hidden", "layers", "vocab", "seq", "global_batch", "lora_r", "checkpointing", "quantization", "compute_dtype")
         if k in ours[0]}
shape["threads"] = ours[0].get("threads_per_rank")
shape["peer_env"] = sys.argv[3]
print(json.dumps({"shape": shape, "polytune": o, "peer_eager_pytorch": dict(p, torch=peer[0]["torch"]),
                  "tokens_per_second_ratio": o["tokens_per_second"] / p["tokens_per_second"],
                  "peak_rss_ratio": o["peak_rss_bytes"] / p["peak_rss_bytes"]}, indent=1))
EOF
