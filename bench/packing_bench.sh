#!/usr/bin/env bash
# Packing speed-up on the bundled multilingual instructions: the same 20 optimizer steps
# (same examples, same loss) with and without packing; prints one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/cli/polytune
[ -x "$BIN" ] || bash scripts/build.sh
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
$BIN model init --out "$W/model" --hidden-size 256 --layers 4 --heads 8 --kv-heads 4 --intermediate-size 688 \
  --vocab-size 1024 >/dev/null
for packing in false true; do
  cat > "$W/$packing.yaml" <<YAML
model: {path: $W/model}
lora: {r: 16, alpha: 32, dropout: 0.05}
data: {train: $PWD/examples/data/instructions_train.jsonl, max_seq_len: 512, packing: $packing}
training: {max_steps: 20, micro_batch_size: 8, lr: 1.0e-3, seed: 1}
output_dir: $W/out-$packing
YAML
  $BIN train "$W/$packing.yaml" >/dev/null 2>&1
done
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
def stats(p):
    rows = [json.loads(l) for l in open(f"{w}/out-{p}/metrics.jsonl") if '"loss"' in l]
    return rows[-1]["elapsed_seconds"], sum(r["tokens"] for r in rows), [r["loss"] for r in rows]
(tu, nu, lu), (tp, np_, lp) = stats("false"), stats("true")
print(json.dumps({"steps": len(lu), "unpacked_seconds": tu, "packed_seconds": tp, "speedup": tu / tp,
                  "real_tokens_per_second_unpacked": nu / tu, "real_tokens_per_second_packed": np_ / tp,
                  "max_loss_difference": max(abs(a - b) for a, b in zip(lu, lp))}))
PY
