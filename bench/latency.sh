#!/usr/bin/env bash
# Latency at 80 % of saturation, open loop: for each workload, its saturated throughput (closed
# loop, 32 connections, 10 s), then RUNS runs of 10 s offering 80 % of it at a fixed rate (64
# connections; latency counted from each request's intended send time, so a stall shows in the
# tail instead of slowing the sender). Uses the stress tool against a running, seeded stack.
#
# Usage: bench/latency.sh [reads] [writes] [orders]     (all three by default)
# env:   STRESS (target/release/stress), URL (http://127.0.0.1:8080), RUNS=3, ADMIN_TOKEN (the
#        stack's, for the resets between runs: .stack/secrets/admin_token unless given)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STRESS=${STRESS:-$HERE/../target/release/stress}
URL=${URL:-http://127.0.0.1:8080}
RUNS=${RUNS:-3}
[ -x "$STRESS" ] || { echo "latency.sh: no $STRESS (cargo build --release -p stress)" >&2; exit 1; }

# One workload: its name, then the stress tool's workload arguments.
measure() {
    local name=$1 saturation rate
    shift
    saturation=$("$STRESS" --url "$URL" -c 32 -d 10s --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(int(json.load(sys.stdin)["throughput"]))')
    rate=$((saturation * 8 / 10))
    echo "$name: saturation $saturation req/s, 80 % = $rate req/s"
    for _ in $(seq "$RUNS"); do
        "$STRESS" --url "$URL" --rate "$rate" -c 64 -d 10s --json "$@" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin); l = d["latency_ms"]
print("  %.0f req/s  p50 %.1f  p99 %.1f  p99.9 %.1f ms  failures %s"
      % (d["throughput"], l["p50"], l["p99"], l["p999"], d.get("failures") or {}))'
    done
}

[ $# -gt 0 ] || set -- reads writes orders
for workload in "$@"; do
    case $workload in
    reads) measure reads read --products 1000 ;;
    writes) measure writes mix --users 1000 --products 1000 --mix create=50,update=50 ;;
    orders) measure orders orders --users 1000 --products 1000 --stock 100000000 ;;
    *) echo "latency.sh: no workload $workload (reads, writes, orders)" >&2; exit 2 ;;
    esac
done
