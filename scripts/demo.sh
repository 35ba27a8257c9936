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

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(free_port)
export POLYTUNE_COORDINATOR=127.0.0.1:$PORT
CMETRICS=$(free_port); W1METRICS=$(free_port); W2METRICS=$(free_port); PROM=127.0.0.1:$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
build/coordinator/polytune-coordinator --listen "$POLYTUNE_COORDINATOR" --data-dir "$DEMO/coordinator" \
  --metrics-listen "127.0.0.1:$CMETRICS" 2> "$DEMO/coordinator.log" &
PIDS+=($!)
WMETRICS=("$W1METRICS" "$W2METRICS")
for w in 1 2; do
  build/worker/daemon/polytune-worker --coordinator "$POLYTUNE_COORDINATOR" --work-dir "$DEMO/worker$w" \
    --devices cpu:1 --name "worker$w" --metrics-listen "127.0.0.1:${WMETRICS[$((w - 1))]}" \
    2> "$DEMO/worker$w.log" &
  PIDS+=($!)
done
# A local Prometheus scraping all three endpoints every second, with the alert rules.
if command -v prometheus >/dev/null; then
  cp deploy/prometheus/alerts.yml "$DEMO/alerts.yml"
  cat > "$DEMO/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: polytune-coordinator
    static_configs: [{targets: ["127.0.0.1:$CMETRICS"]}]
  - job_name: polytune-worker
    static_configs: [{targets: ["127.0.0.1:$W1METRICS", "127.0.0.1:$W2METRICS"]}]
YAML
  prometheus --config.file="$DEMO/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus" \
    --web.listen-address="$PROM" 2> "$DEMO/prometheus.log" &
  PIDS+=($!)
fi
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
if command -v prometheus >/dev/null; then
  echo
  echo "== asked of Prometheus (PromQL over its HTTP API)"
  promql() {
    python3 - "$PROM" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
prom, expr = sys.argv[1], sys.argv[2]
r = json.load(urllib.request.urlopen(f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
for s in r["data"]["result"]:
    labels = ",".join(f"{k}={v}" for k, v in s["metric"].items() if k not in ("instance", "job", "__name__"))
    print(f"  {labels or '-':24s} {float(s['value'][1]):.4g}")
PY
  }
  echo "final training loss:       polytune_train_loss{job_id=\"$JOB\"}"
  promql "polytune_train_loss{job_id=\"$JOB\"}"
  echo "tokens/s while training:   max_over_time(rate(polytune_train_tokens_total[10s])[5m:1s])"
  promql "max_over_time(rate(polytune_train_tokens_total{job_id=\"$JOB\"}[10s])[5m:1s])"
  echo "eval loss per language:    polytune_eval_loss"
  promql "polytune_eval_loss{job_id=\"$JOB\"}"
  echo
  echo "metrics: http://127.0.0.1:$CMETRICS/metrics (coordinator), http://127.0.0.1:$W1METRICS/metrics and"
  echo "         http://127.0.0.1:$W2METRICS/metrics (workers); Prometheus: http://$PROM/ (alerts: /alerts)"
fi
echo
echo "adapter (PEFT format): $DEMO/adapter   logs: $DEMO/*.log"
