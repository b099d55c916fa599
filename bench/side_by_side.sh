#!/usr/bin/env bash
# Side by side in one run: each wrk scenario (bench/wrk/) against every target in turn, ROUNDS
# rounds of SECS seconds, alternating the targets round by round so that the machine's noise
# falls on all of them alike. Prints every round, then per scenario a SUMMARY line: each
# target's median throughput and p99, its non-2xx answers, and its ratio to the first target.
# Every target must be up and seeded (bench/seed.py: users and products 1..1000).
#
# Usage: bench/side_by_side.sh SCENARIO...     (get_product ucreate pupdate orders mix)
# env:   TARGETS="baseline=http://127.0.0.1:9090 ours=http://127.0.0.1:8080"
#        (NAME=URL+OFFSET shifts an order scenario's product ids), SECS=10 CONNS=32 ROUNDS=3
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TARGETS=${TARGETS:-"baseline=http://127.0.0.1:9090 ours=http://127.0.0.1:8080"}
SECS=${SECS:-10}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "side_by_side.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: bench/side_by_side.sh SCENARIO..." >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One wrk run: scenario, URL, product id offset. Prints its RESULT line.
run() {
    cat "$HERE/wrk/common.lua" "$HERE/wrk/$1.lua" "$HERE/wrk/report.lua" >"$WORK/script.lua"
    ORDER_PRODUCT_BASE=$3 wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$WORK/script.lua" "$2" 2>/dev/null |
        grep '^RESULT' || echo "RESULT rps=0 p50_ms=0 p99_ms=0 errors=0 non2xx=0"
}

for scenario in "$@"; do
    [ -f "$HERE/wrk/$scenario.lua" ] || { echo "no scenario $scenario in bench/wrk/" >&2; exit 2; }
    : >"$WORK/results"
    for round in $(seq "$ROUNDS"); do
        for target in $TARGETS; do
            name=${target%%=*} spec=${target#*=}
            url=${spec%+*} offset=0
            [ "$spec" != "$url" ] && offset=${spec##*+}
            line=$(run "$scenario" "$url" "$offset")
            echo "$scenario round $round $name: $line"
            echo "$name $line" >>"$WORK/results"
        done
    done
    python3 - "$scenario" "$WORK/results" <<'PY'
import re, statistics, sys
scenario, path = sys.argv[1], sys.argv[2]
rows = [line.split(" ", 1) for line in open(path).read().splitlines()]
names = list(dict.fromkeys(name for name, _ in rows))
def values(name, key):
    return [float(re.search(key + r"=([0-9.]+)", line).group(1)) for n, line in rows if n == name]
first = statistics.median(values(names[0], "rps")) or 1
parts = []
for name in names:
    rps = statistics.median(values(name, "rps"))
    parts.append(f"{name} {rps:.0f} req/s p99 {statistics.median(values(name, 'p99_ms')):.1f} ms "
                 f"non2xx {sum(values(name, 'non2xx')):.0f} (x{rps / first:.2f})")
print(f"SUMMARY {scenario}: " + " | ".join(parts))
PY
done
