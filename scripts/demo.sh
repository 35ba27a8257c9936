#!/usr/bin/env bash
# The demo: builds Polytune, writes a small random Llama checkpoint, evaluates it per
# language, fine-tunes it with QLoRA (NF4 + LoRA) on the bundled multilingual data with two
# data-parallel CPU ranks, and evaluates again with the adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
BIN=build/cli/polytune
DEMO=build/demo
rm -rf "$DEMO"
$BIN model init --out "$DEMO/model" --hidden-size 256 --layers 4 --heads 8 --kv-heads 4 \
  --intermediate-size 688 --vocab-size 512 --seed 0
echo
echo "== per-language eval before fine-tuning (NF4 base, no adapter)"
$BIN eval --model "$DEMO/model" --data examples/data/eval.jsonl --quantization nf4 --double-quant
echo
echo "== QLoRA fine-tuning, 2 data-parallel ranks"
$BIN train examples/demo.yaml --nproc 2
echo
echo "== per-language eval after fine-tuning (NF4 base + adapter)"
$BIN eval --model "$DEMO/model" --data examples/data/eval.jsonl --quantization nf4 --double-quant \
  --adapter "$DEMO/run/adapter"
echo
echo "adapter (PEFT format): $DEMO/run/adapter   metrics: $DEMO/run/metrics.jsonl"
