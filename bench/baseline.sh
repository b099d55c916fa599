#!/usr/bin/env bash
# The baseline (bench/baseline) on a PostgreSQL of its own, seeded, at http://127.0.0.1:9090;
# or stopped. Usage: bench/baseline.sh [up|down]. State in $BASELINE_DIR (/tmp/commerce-baseline:
# the PostgreSQL user must be able to reach it), PostgreSQL on $BASELINE_PG_PORT (5499).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${BASELINE_DIR:-/tmp/commerce-baseline}
PG_PORT=${BASELINE_PG_PORT:-5499}
PORT=${BASELINE_PORT:-9090}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || { echo "baseline.sh: PostgreSQL not found (./stack up installs it)" >&2; exit 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && setpriv --reuid=postgres --regid=postgres --clear-groups -- "$@"); else "$@"; fi
}

case "${1:-up}" in
down)
    if [ -f "$DIR/baseline.pid" ]; then kill "$(cat "$DIR/baseline.pid")" 2>/dev/null || true; rm -f "$DIR/baseline.pid"; fi
    [ -f "$DIR/pg/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null
    exit 0
    ;;
up) ;;
*) echo "usage: bench/baseline.sh [up|down]" >&2; exit 2 ;;
esac

(cd "$HERE/.." && cargo build --release --locked --quiet -p baseline)
mkdir -p "$DIR/pg"
[ "$(id -u)" = 0 ] && chown postgres "$DIR/pg"
# PostgreSQL's defaults, as a user would install it: durable commits, default memory.
[ -f "$DIR/pg/data/PG_VERSION" ] || as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" status >/dev/null 2>&1 ||
    as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w start \
        -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" >/dev/null
if ! { [ -f "$DIR/baseline.pid" ] && kill -0 "$(cat "$DIR/baseline.pid")" 2>/dev/null; }; then
    DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres PORT=$PORT \
        nohup "${CARGO_TARGET_DIR:-$HERE/../target}/release/baseline" >"$DIR/baseline.log" 2>&1 </dev/null &
    echo $! >"$DIR/baseline.pid"
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
fi
python3 "$HERE/seed.py" "http://127.0.0.1:$PORT" 1000 >/dev/null
echo "baseline up at http://127.0.0.1:$PORT (bench/baseline.sh down stops it)"
