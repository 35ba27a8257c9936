#!/usr/bin/env bash
# Runs the training benchmarks and prints their JSON lines:
#   1. single process, all cores: tokens/s, peak RSS, bytes per NF4 parameter, matmul
#      efficiency against plain sgemm on the same shapes;
#   2. data-parallel efficiency: the same global batch on 2 ranks (half the cores each)
#      against 1 rank on all cores, and 1 rank on one core.
# Usage: bench/run_bench.sh [extra train_bench flags, e.g. --steps 8]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/bench/train_bench
[ -x "$BIN" ] || bash scripts/build.sh
"$BIN" "$@"
one_core=$("$BIN" --threads 1 --skip-sgemm 1 "$@")
echo "$one_core"
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$BIN" --rank 1 --world 2 --port "$port" "$@" > /dev/null &
two=$("$BIN" --rank 0 --world 2 --port "$port" "$@")
wait
echo "$two"
python3 - "$one_core" "$two" <<'PY'
import json, sys
one, two = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"dp_2_ranks_tokens_per_second": two["tokens_per_second"],
                  "one_rank_one_core_tokens_per_second": one["tokens_per_second"],
                  "dp_scaling_efficiency": two["tokens_per_second"] / (2 * one["tokens_per_second"])}))
PY
