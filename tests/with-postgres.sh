#!/usr/bin/env bash
# Runs a command beside a private PostgreSQL cluster: Debian's packages
# (installed if missing), a new cluster in a temp folder, listening on
# 127.0.0.1 on a free port, stopped and removed when the command ends.
# The command finds it in KEYHOLD_TEST_POSTGRES_URL (a superuser connection
# string; each test creates its own database there).
#
#   bash tests/with-postgres.sh cargo test -p keyhold-storage
set -euo pipefail

log() { printf '[with-postgres] %s\n' "$*" >&2; }
die() { printf '[with-postgres] FAILED: %s\n' "$*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: tests/with-postgres.sh COMMAND [ARGS...]"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/postgres" ]; then
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL under /usr/lib/postgresql and no apt-get"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot apt-get install postgresql"
    sudo_cmd=(sudo)
  fi
  log "apt-get install postgresql"
  "${sudo_cmd[@]}" apt-get update >/dev/null || die "apt-get update failed"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    || die "apt-get install postgresql failed"
  bin=$(find_bin)
  [ -x "$bin/postgres" ] || die "postgresql installed but no server binary found"
fi

dir=$(mktemp -d /tmp/keyhold-pg.XXXXXX)
chmod 0755 "$dir"
# PostgreSQL refuses to run as root: as root, the cluster belongs to the
# `postgres` user that Debian's package creates.
as=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root, but there is no postgres user to run the server as"
  chown postgres "$dir"
  as=(runuser -u postgres --)
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=400" >/dev/null \
  || { cat "$dir/server.log" >&2; die "the PostgreSQL server did not start"; }
log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"

export KEYHOLD_TEST_POSTGRES_URL="host=127.0.0.1 port=$port user=postgres dbname=postgres"
status=0
"$@" || status=$?
exit "$status"
