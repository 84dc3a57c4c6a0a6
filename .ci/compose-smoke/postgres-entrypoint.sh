#!/bin/sh
# The part of the official image's entrypoint our compose file relies on: a first
# start creates the cluster with a password-protected superuser and the database.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >/dev/null
    rm -f "$pwfile"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    db=${POSTGRES_DB:-$POSTGRES_USER}
    [ "$db" = postgres ] || createdb -U "$POSTGRES_USER" "$db"
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
# Host networking in the smoke test: loopback only.
exec postgres -D "$PGDATA" -c listen_addresses="${POSTGRES_LISTEN:-*}"
