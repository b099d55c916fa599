#!/usr/bin/env bash
# Orders at saturation, minute after minute, on a running stack seeded with bench/seed.py: for
# each minute, the throughput and p99 (wrk, -t2 -c32, the `orders` scenario), the orders in the
# history, the memory of every process (RSS), and the JetStream store. Stops after MINUTES, or
# once the history holds ORDERS orders, whichever comes first.
#
# Usage: bench/soak.sh [MINUTES] [ORDERS]     (5 and no limit by default)
# env:   URL (http://127.0.0.1:8080), STACK_DIR (.stack), STACK_PG_PORT (5433),
#        STACK_NATS_MONITOR_PORT (8222)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MINUTES=${1:-5}
ORDERS=${2:-0}
URL=${URL:-http://127.0.0.1:8080}
STACK_DIR=$(realpath -m "${STACK_DIR:-$HERE/../.stack}")
PG_PORT=${STACK_PG_PORT:-5433}
MONITOR=${STACK_NATS_MONITOR_PORT:-8222}
command -v wrk >/dev/null || { echo "soak.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat "$HERE/wrk/common.lua" "$HERE/wrk/orders.lua" "$HERE/wrk/report.lua" >"$WORK/orders.lua"

orders_in_history() {
    local sql="select count(*) from orders" pg run
    run=$(realpath -m "$STACK_DIR/pg/run")
    pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [ "$(id -u)" = 0 ]; then
        (cd / && setpriv --reuid=postgres --regid=postgres --clear-groups -- \
            "$pg/psql" -X -q -t -A -h "$run" -p "$PG_PORT" -U postgres -d order_db -c "$sql")
    else
        "$pg/psql" -X -q -t -A -h "$run" -p "$PG_PORT" -U postgres -d order_db -c "$sql"
    fi
}

# Memory in MiB of the processes whose pid files ./stack keeps (resident), and of PostgreSQL's
# processes together (proportional: their shared buffers counted once).
memory() {
    local file name pid postmaster kb
    for file in "$STACK_DIR"/run/*.pid; do
        name=$(basename "$file" .pid)
        pid=$(cat "$file")
        kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        printf '%s %d MiB, ' "$name" $((kb / 1024))
    done
    postmaster=$(head -n 1 "$STACK_DIR/pg/data/postmaster.pid" 2>/dev/null || true)
    kb=0
    for pid in $postmaster $(pgrep -P "$postmaster" 2>/dev/null || true); do
        kb=$((kb + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
    done
    printf 'postgres %d MiB' $((kb / 1024))
}

jetstream() {
    curl -s "http://127.0.0.1:$MONITOR/jsz" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("JetStream %d messages, %.0f MiB stored" % (d.get("messages", 0), d.get("bytes", 0) / 2**20))'
}

printf 'minute | orders/s | p99 | non-2xx | orders in history | memory | JetStream\n'
printf -- '--- | ---: | ---: | ---: | ---: | --- | ---\n'
for minute in $(seq "$MINUTES"); do
    result=$(wrk -t2 -c32 -d60s --timeout 10s -s "$WORK/orders.lua" "$URL" 2>/dev/null | grep '^RESULT')
    rps=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$result")
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$result")
    non2xx=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$result")
    total=$(orders_in_history)
    printf '%s | %.0f | %s ms | %s | %s | %s | %s\n' "$minute" "$rps" "$p99" "$non2xx" "$total" "$(memory)" "$(jetstream)"
    if [ "$ORDERS" -gt 0 ] && [ "$total" -ge "$ORDERS" ]; then break; fi
done
