#!/usr/bin/env bash
# The worker daemon and the CLI reach the coordinator through polytune::rpc only: neither
# links the coordinator's services, job manager or SQLite store, nor needs libsqlite3 itself.
# (Debian's libtorch pulls libsqlite3 in transitively for `polytune`, hence readelf's direct
# NEEDED entries rather than ldd.)
set -euo pipefail
worker=$1 cli=$2 coordinator=$3
fail=0
for bin in "$worker" "$cli"; do
  for sym in JobServiceImpl WorkerServiceImpl JobManager SqliteStore OpenSqliteStore; do
    if nm -C "$bin" | grep "$sym" >/dev/null; then echo "FAIL: $(basename "$bin") links $sym"; fail=1; fi
  done
  if readelf -d "$bin" | grep NEEDED | grep sqlite >/dev/null; then echo "FAIL: $(basename "$bin") needs libsqlite3"; fail=1; fi
done
# The check can fail: the coordinator itself does have them.
nm -C "$coordinator" | grep JobServiceImpl >/dev/null || { echo "FAIL: the check finds nothing even in the coordinator"; fail=1; }
readelf -d "$coordinator" | grep NEEDED | grep sqlite >/dev/null || { echo "FAIL: coordinator without libsqlite3?"; fail=1; }
[ $fail -eq 0 ] && echo "link boundaries hold"
exit $fail
