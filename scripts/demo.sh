#!/usr/bin/env bash
# The demo: builds Polytune, writes a small random Llama checkpoint with a tokenizer learned
# from the bundled multilingual instructions, evaluates it per language, fine-tunes it with
# QLoRA (NF4 + LoRA) on those instructions rendered with the model's chat template (loss on
# assistant turns only, packed rows) with two data-parallel CPU ranks, and evaluates again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
BIN=build/cli/polytune
DEMO=build/demo
rm -rf "$DEMO"
$BIN model init --out "$DEMO/model" --hidden-size 256 --layers 4 --heads 8 --kv-heads 4 \
  --intermediate-size 688 --vocab-size 1024 --seed 0
echo
echo "== how the first eval examples are rendered (trained spans in ⟦ ⟧)"
($BIN data render --tokenizer "$DEMO/model" --data examples/data/instructions_eval.jsonl || true) | head -14
echo
echo "== per-language eval before fine-tuning (NF4 base, no adapter; loss on assistant tokens)"
$BIN eval --model "$DEMO/model" --data examples/data/instructions_eval.jsonl --quantization nf4 --double-quant
echo
echo "== QLoRA fine-tuning, 2 data-parallel ranks"
$BIN train examples/demo.yaml --nproc 2
echo
echo "== per-language eval after fine-tuning (NF4 base + adapter)"
$BIN eval --model "$DEMO/model" --data examples/data/instructions_eval.jsonl --quantization nf4 --double-quant \
  --adapter "$DEMO/run/adapter"
echo
echo "adapter (PEFT format): $DEMO/run/adapter   metrics: $DEMO/run/metrics.jsonl"
