#!/usr/bin/env bash
# Writes the secrets compose.yml (and compose.cluster.yml) requires into .env at the repository's root, where
# `docker compose` reads them: each `${NAME:?...}` of compose.yml. With --admin, also an
# ADMIN_TOKEN, which turns on POST /admin/reset and /admin/shutdown (off by default: reset
# deletes every record). A variable already in .env is kept, never replaced: PostgreSQL sets
# its roles' passwords only when it creates its volume.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
env_file=$root/.env
umask 077
touch "$env_file"

# compose.cluster.yml's too (the NATS cluster option): one .env serves both.
names=$(cat "$root/compose.yml" "$root/compose.cluster.yml" | grep -v '^[[:space:]]*#' | grep -oE '\$\{[A-Z][A-Z0-9_]*:\?' |
    sed -E 's/^\$\{//; s/:\?$//' | sort -u)
added=()
case "${1:-}" in
    --admin) names="$names ADMIN_TOKEN" ;;
    "") ;;
    *) printf 'usage: compose/secrets.sh [--admin]\n' >&2; exit 2 ;;
esac
for name in $names; do
    grep -q "^$name=" "$env_file" && continue
    # A letter first, as ./stack does: nats-server reads an environment value as a configuration
    # value, and one starting with a digit would be taken for a number.
    printf '%s=s%s\n' "$name" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >>"$env_file"
    added+=("$name")
done
if [ ${#added[@]} -gt 0 ]; then
    printf 'compose/secrets.sh: wrote %s to %s\n' "${added[*]}" "$env_file"
else
    printf 'compose/secrets.sh: %s already has every secret\n' "$env_file"
fi
