#!/usr/bin/env bash
# The demo: builds Polytune, writes a small random Llama checkpoint with a tokenizer learned
# from the bundled multilingual instructions, evaluates it per language, then starts a
# coordinator and two CPU workers locally, submits the bundled QLoRA job with world_size 2
# (chat template, loss on assistant turns, packing), watches it to the end, downloads the
# adapter, evaluates again per language and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
BIN=build/cli/polytune
DEMO=build/demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
$BIN model init --out "$DEMO/model" --hidden-size 256 --layers 4 --heads 8 --kv-heads 4 \
  --intermediate-size 688 --vocab-size 1024 --seed 0
echo
echo "== how the first eval examples are rendered (trained spans in ⟦ ⟧)"
($BIN data render --tokenizer "$DEMO/model" --data examples/data/instructions_eval.jsonl || true) | head -14
echo
echo "== per-language eval before fine-tuning (NF4 base, no adapter; loss on assistant tokens)"
$BIN eval --model "$DEMO/model" --data examples/data/instructions_eval.jsonl --quantization nf4 --double-quant

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export POLYTUNE_COORDINATOR=127.0.0.1:$PORT
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
build/coordinator/polytune-coordinator --listen "$POLYTUNE_COORDINATOR" --data-dir "$DEMO/coordinator" \
  2> "$DEMO/coordinator.log" &
PIDS+=($!)
for w in 1 2; do
  build/worker/daemon/polytune-worker --coordinator "$POLYTUNE_COORDINATOR" --work-dir "$DEMO/worker$w" \
    --devices cpu:1 --name "worker$w" 2> "$DEMO/worker$w.log" &
  PIDS+=($!)
done
for _ in $(seq 50); do
  [ "$($BIN workers --json 2>/dev/null | python3 -c 'import json,sys;print(len(json.load(sys.stdin)))' 2>/dev/null)" = 2 ] && break
  sleep 0.2
done
echo
echo "== cluster"
$BIN workers
echo
echo "== submit the bundled multilingual job (world_size 2) and watch it"
JOB=$($BIN submit examples/demo_job.yaml --name demo-multilingual)
echo "submitted $JOB"
$BIN watch "$JOB"
$BIN status "$JOB" | head -8
$BIN download "$JOB" --out "$DEMO/adapter"
echo
echo "== per-language eval after fine-tuning (NF4 base + downloaded adapter)"
$BIN eval --model "$DEMO/model" --data examples/data/instructions_eval.jsonl --quantization nf4 --double-quant \
  --adapter "$DEMO/adapter"
echo
echo "adapter (PEFT format): $DEMO/adapter   logs: $DEMO/*.log"
