#!/usr/bin/env bash
# Chaos run of the control plane: a coordinator and 3 CPU workers on loopback, JOBS small
# two-rank jobs, and for CHAOS_SECONDS a kill -9 every few seconds of a random worker daemon
# (its ranks die with it) or of the coordinator, each restarted a few seconds later on the
# same data/work dir. Then every job must end SUCCEEDED with the adapter of an uninterrupted
# run of its spec (byte for byte). Prints one JSON object: jobs, kills, restarts, seconds.
#
#   bench/chaos.sh [BUILD_DIR]        (CHAOS_SECONDS=120 CHAOS_JOBS=8 CHAOS_SEED=1 by default)
# Exit code 0 only if every job succeeded with the reference adapter.
set -euo pipefail

BUILD=$(cd "${1:-build}" && pwd)
SECONDS_OF_CHAOS=${CHAOS_SECONDS:-120}
JOBS=${CHAOS_JOBS:-8}
RANDOM=${CHAOS_SEED:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
POLYTUNE="$BUILD/cli/polytune"
dir=$(mktemp -d /tmp/polytune-chaos-XXXXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
target="127.0.0.1:$port"
rdv=$((22000 + ($$ % 500) * 10))
declare -A worker_pid
coord_pid=""

cleanup() {
  for p in "${worker_pid[@]}" $coord_pid; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT

start_coordinator() {
  "$BUILD/coordinator/polytune-coordinator" --listen "$target" --data-dir "$dir/coord" --heartbeat-timeout 3s \
    --restart-backoff 1s --metrics-listen "" >>"$dir/coord.log" 2>&1 &
  coord_pid=$!
}
start_worker() {
  "$BUILD/worker/daemon/polytune-worker" --coordinator "$target" --work-dir "$dir/w$1" --devices cpu:1 --name "w$1" \
    --polytune-bin "$BUILD/cli/polytune-engine" --rendezvous-ports "$rdv-$((rdv + 9))" --metrics-listen "" \
    >>"$dir/w$1.log" 2>&1 &
  worker_pid[$1]=$!
}
cli() { "$POLYTUNE" --coordinator "$target" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
state_of() { cli status "$1" --json 2>/dev/null | json 'd["state"]' || echo UNKNOWN; }
adapter_sha() {
  rm -rf "$dir/dl-$1"
  cli download "$1" --out "$dir/dl-$1" >/dev/null && sha256sum "$dir/dl-$1/adapter_model.safetensors" | cut -d' ' -f1
}
wait_ended() {  # job, seconds
  for _ in $(seq $(($2 * 2))); do
    case $(state_of "$1") in SUCCEEDED | FAILED | CANCELLED) return 0 ;; esac
    sleep 0.5
  done
  return 1
}

start_coordinator
for i in 1 2 3; do start_worker "$i"; done
"$POLYTUNE" model init --out "$dir/model" --hidden-size 64 --layers 2 --heads 4 --kv-heads 2 --intermediate-size 128 \
  --vocab-size 320 --seed 5 >/dev/null
cat >"$dir/job.yaml" <<EOF
model: {path: $dir/model}
lora: {r: 4, alpha: 8, dropout: 0.1}
data: {train: $ROOT/examples/data/instructions_train.jsonl, eval: $ROOT/examples/data/instructions_eval.jsonl, max_seq_len: 128}
training: {lr: 0.002, seed: 3, max_steps: 40, micro_batch_size: 2, grad_accum_steps: 2, checkpoint_every: 4, eval_every: 10}
resources: {world_size: 2, max_restarts: 50}
EOF
for _ in $(seq 100); do
  [ "$(cli workers --json 2>/dev/null | json 'sum(w["alive"] for w in d)' 2>/dev/null || echo 0)" = 3 ] && break
  sleep 0.2
done

# The uninterrupted run.
ref=$(cli submit "$dir/job.yaml" --name reference --json | json 'd["id"]')
wait_ended "$ref" 300 || { echo "reference job did not end" >&2; exit 1; }
[ "$(state_of "$ref")" = SUCCEEDED ] || { echo "reference job failed" >&2; cli status "$ref" >&2; exit 1; }
ref_sha=$(adapter_sha "$ref")

start=$(date +%s)
ids=()
for j in $(seq "$JOBS"); do ids+=("$(cli submit "$dir/job.yaml" --name "chaos-$j" --json | json 'd["id"]')"); done
worker_kills=0
coordinator_kills=0
while [ $(($(date +%s) - start)) -lt "$SECONDS_OF_CHAOS" ]; do
  sleep $((3 + RANDOM % 5))
  if [ $((RANDOM % 4)) = 0 ]; then
    kill -9 "$coord_pid" 2>/dev/null || true
    wait "$coord_pid" 2>/dev/null || true
    coordinator_kills=$((coordinator_kills + 1))
    sleep $((1 + RANDOM % 3))
    start_coordinator
  else
    w=$((1 + RANDOM % 3))
    kill -9 "${worker_pid[$w]}" 2>/dev/null || true
    wait "${worker_pid[$w]}" 2>/dev/null || true
    worker_kills=$((worker_kills + 1))
    sleep $((1 + RANDOM % 4))
    start_worker "$w"
  fi
done
chaos_end=$(date +%s)

ok=0
restarts=0
identical=0
for id in "${ids[@]}"; do
  wait_ended "$id" 900 || true
  st=$(cli status "$id" --json)
  state=$(echo "$st" | json 'd["state"]')
  restarts=$((restarts + $(echo "$st" | json 'd["restarts"]')))
  if [ "$state" = SUCCEEDED ]; then
    ok=$((ok + 1))
    [ "$(adapter_sha "$id")" = "$ref_sha" ] && identical=$((identical + 1))
  else
    echo "$id ended $state: $(echo "$st" | json 'd["reason"]')" >&2
  fi
done
end=$(date +%s)
echo "{\"jobs\": $JOBS, \"succeeded\": $ok, \"identical_adapters\": $identical, \"worker_kills\": $worker_kills," \
  "\"coordinator_kills\": $coordinator_kills, \"restarts\": $restarts, \"chaos_seconds\": $((chaos_end - start))," \
  "\"total_seconds\": $((end - start))}"
[ "$ok" = "$JOBS" ] && [ "$identical" = "$JOBS" ]
