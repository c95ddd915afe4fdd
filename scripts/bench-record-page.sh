#!/usr/bin/env bash
# Requests per second for a signed-in patient reading their own record page
# (session lookup, policy, opening every sealed entry, a durable audit entry per
# request, tera rendering), against /healthz on the same server as a floor.
# Loopback only, bounded in time. Needs Debian's wrk (apt-get install wrk).
#   scripts/bench-record-page.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
conns=${2:-16}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --locked -p keyhold
bin=target/release/keyhold
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$bin" serve --demo --data "$tmp/data" --keys "$tmp/keys" --bind 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/out" 2>/dev/null && break; sleep 0.2; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/out" | head -1)
[ -n "$url" ] || { cat "$tmp/err" >&2; exit 1; }

jar="$tmp/jar"
token=$(curl -s -c "$jar" -b "$jar" "$url/signin" | grep -o 'name="csrf_token" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
code=$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
  --data-urlencode "csrf_token=$token" --data-urlencode "email=patient@demo.keyhold.test" \
  --data-urlencode "password=keyhold-demo-2026" "$url/signin")
[ "$code" = 303 ] || { echo "sign-in failed ($code)" >&2; exit 1; }
cookie=$(awk '$6 ~ /keyhold_/ { printf "%s=%s; ", $6, $7 }' "$jar")
# Read the page whole first: under pipefail, `grep -q` closing the pipe early
# would make curl (and the check) fail at random.
page=$(curl -s -H "Cookie: $cookie" "$url/record")
grep -q "Your health record" <<<"$page" || { echo "record page not served" >&2; exit 1; }

echo "== GET /record, signed in ($conns connections, ${secs}s)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Cookie: $cookie" "$url/record"
echo "== GET /healthz (floor: routing, headers, a store read and a canary unwrap)"
wrk -t2 -c"$conns" -d"${secs}s" --latency "$url/healthz"
