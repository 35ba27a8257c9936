#!/usr/bin/env bash
# Start-up cost of a control-plane command: `polytune jobs` against a running coordinator,
# 20 runs, p50 and p95 wall time; the same through polytune-engine (which loads libtorch) for
# comparison. Prints one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$BUILD/coordinator/polytune-coordinator" --listen "127.0.0.1:$PORT" --data-dir "$TMP" --metrics-listen "" 2>/dev/null &
COORD=$!
trap 'kill $COORD 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do "$BUILD/cli/polytune" --coordinator "127.0.0.1:$PORT" jobs >/dev/null 2>&1 && break; sleep 0.1; done
python3 - "$BUILD" "$PORT" <<'PY'
import json, subprocess, sys, time
build, port = sys.argv[1], sys.argv[2]
def times(binary, n=20):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([f"{build}/cli/{binary}", "--coordinator", f"127.0.0.1:{port}", "jobs"], check=True,
                       stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.95) - 1]
p50, p95 = times("polytune")
e50, e95 = times("polytune-engine")
print(json.dumps({"command": "polytune jobs", "runs": 20, "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                  "engine_binary_p50_ms": round(e50, 1), "engine_binary_p95_ms": round(e95, 1)}))
PY
