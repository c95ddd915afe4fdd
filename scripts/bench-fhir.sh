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
. scripts/lib/demo-server.sh
start_demo_server
sign_in_demo_patient
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
