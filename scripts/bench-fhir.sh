#!/usr/bin/env bash
# FHIR read requests per second for a signed-in patient: a search of their
# own record (session, policy, opening every sealed entry, a durable audit
# entry per request, mapping to FHIR JSON), Patient read, and the
# CapabilityStatement (no store work) as a floor. Loopback only, bounded in
# time. Needs Debian's wrk (apt-get install wrk).
#   scripts/bench-fhir.sh [SECONDS] [CONNECTIONS]
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
page=$(curl -s -H "Cookie: $cookie" "$url/record/demographics")
# The record's id is on its personal details page ("Keyhold record ID").
patient=$(grep -o '[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}' <<<"$page" | head -1)
[ -n "$patient" ] || { echo "could not find the demo patient's id" >&2; exit 1; }
body=$(curl -s -H "Cookie: $cookie" "$url/fhir/R4/Condition?patient=$patient")
grep -q '"searchset"' <<<"$body" || { echo "FHIR search not served: $body" >&2; exit 1; }

echo "== machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for path in "Condition?patient=$patient" "MedicationStatement?patient=$patient" "Patient/$patient" "metadata"; do
  echo "== GET /fhir/R4/$path ($conns connections, ${secs}s)"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Cookie: $cookie" -H "Accept: application/fhir+json" "$url/fhir/R4/$path"
done
