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
. scripts/lib/demo-server.sh
start_demo_server
sign_in_demo_patient
# Read the page whole first: under pipefail, `grep -q` closing the pipe early
# would make curl (and the check) fail at random.
page=$(curl -s -H "Cookie: $cookie" "$url/record")
grep -q "Your health record" <<<"$page" || { echo "record page not served" >&2; exit 1; }

echo "== GET /record, signed in ($conns connections, ${secs}s)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Cookie: $cookie" "$url/record"
echo "== GET /healthz (floor: routing, headers, a store read and a canary unwrap)"
wrk -t2 -c"$conns" -d"${secs}s" --latency "$url/healthz"
