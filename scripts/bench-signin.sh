#!/usr/bin/env bash
# Sign-in cost, and what a flood of sign-ins does to reads. Against one release
# server (`serve --demo` in a temp folder) on 127.0.0.1:
#   1. sign-in time per request: sequential POST /signin with the right
#      password, one at a time (median, p95), with the argon2id parameters
#      read from the code;
#   2. GET /record (signed in) at 16 connections for SECONDS, nothing else running;
#   3. the same reads while 200 connections POST /signin (right passwords,
#      valid CSRF cookie and token) again as soon as each is answered; the
#      sign-in side counts signed in (303), shed (503), throttled (429), other;
#   4. a summary: read p99 with and without the flood, and their ratio.
# The flood signs in to 50 accounts made for it (sign-up, then the confirmation
# link from the outbox), in turn: the sign-in limits let at most 5 attempts per
# account and address be checked at once (more could all be guesses), so 200
# at once on one account would mostly be refused with 429 before any hashing.
# Right passwords are not failures, so nothing else in the limits applies.
# Loopback only, bounded in time (about 2 * SECONDS + 30 s after the build).
# Needs Debian's wrk (apt-get install wrk) and curl.
#   scripts/bench-signin.sh [SECONDS] [SIGNIN_CONNECTIONS]   (defaults 15, 200)
# KEYHOLD_BENCH_NO_BUILD=1 uses the existing target/release/keyhold as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
case $secs in '' | *[!0-9]* | 0) echo "SECONDS must be a positive whole number" >&2; exit 2 ;; esac
case ${2:-200} in '' | *[!0-9]* | 0) echo "SIGNIN_CONNECTIONS must be a positive whole number" >&2; exit 2 ;; esac
read_conns=16
flood_conns=${2:-200}
sequential=30
flood_accounts=50
email=patient@demo.keyhold.test
password=keyhold-demo-2026
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }
if [ "${KEYHOLD_BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release --locked -p keyhold
fi
bin=target/release/keyhold
[ -x "$bin" ] || { echo "$bin is missing" >&2; exit 1; }

# The parameters the server hashes with, from the code (PasswordHasher::owasp).
argon=$(grep -A1 '^const OWASP' crates/keyhold-crypto/src/password.rs \
  | grep -o 'Params::new([0-9_]*, *[0-9]*, *[0-9]*' | sed -n 1p | sed 's/Params::new(//; s/_//g; s/ //g')
IFS=, read -r m_kib t_cost p_cost <<<"$argon"
[ -n "${p_cost:-}" ] || { echo "cannot read the argon2 parameters from password.rs" >&2; exit 1; }
max_waiting=$(grep -o 'hashing_max_waiting: [0-9][0-9_]*' crates/keyhold-domain/src/service.rs | sed -n 1p | grep -o '[0-9]*$')
cores=$(nproc)

tmp=$(mktemp -d)
pid=
flood=
cleanup() {
  [ -n "$flood" ] && kill "$flood" 2>/dev/null || true
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "$flood" ] && wait "$flood" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The real parameters: never the test-only fast hashing.
env -u KEYHOLD_DANGER_FAST_HASH \
  "$bin" serve --demo --data "$tmp/data" --keys "$tmp/keys" --bind 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 150); do grep -q "listening on" "$tmp/out" 2>/dev/null && break; sleep 0.2; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/out" | sed -n 1p || true)
[ -n "$url" ] || { cat "$tmp/err" >&2; exit 1; }

# A CSRF cookie and its token, with no session: the token is reusable for any
# number of sign-ins that carry the same cookie and no session cookie.
jar="$tmp/csrf-jar"
token=$(curl -s -m 10 -c "$jar" "$url/signin" | grep -o 'name="csrf_token" value="[^"]*"' | sed -n 1p | sed 's/.*value="//; s/"$//')
csrf_cookie=$(awk '$6 ~ /keyhold_csrf/ { printf "%s=%s", $6, $7 }' "$jar")
[ -n "$token" ] && [ -n "$csrf_cookie" ] || { echo "no CSRF token or cookie from GET /signin" >&2; exit 1; }
case $token in *[!A-Za-z0-9_-]*) echo "unexpected characters in the CSRF token" >&2; exit 1 ;; esac
body="csrf_token=$token&email=${email/@/%40}&password=$password"

signin() {
  curl -s -m 30 -o /dev/null -w '%{http_code} %{time_total}\n' -H "Cookie: $csrf_cookie" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "$body" "$url/signin"
}

# 1. Sequential sign-ins (two warm-ups not counted).
signin >/dev/null
signin >/dev/null
: >"$tmp/seq"
for _ in $(seq "$sequential"); do signin >>"$tmp/seq"; done
bad=$(awk '$1 != 303' "$tmp/seq" | wc -l)
[ "$bad" -eq 0 ] || { echo "sequential sign-in failed:" >&2; sort "$tmp/seq" | uniq -c >&2; exit 1; }
read -r seq_median seq_p95 seq_min seq_max < <(awk '{ print $2 * 1000 }' "$tmp/seq" | sort -n | awk '
  { v[NR] = $1 }
  END {
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    r = int(0.95 * NR); if (r < 0.95 * NR) r++   # nearest rank
    printf "%.1f %.1f %.1f %.1f\n", med, v[r], v[1], v[NR]
  }')

# A signed-in session for the reads (as in bench-record-page.sh).
rjar="$tmp/read-jar"
rtoken=$(curl -s -m 10 -c "$rjar" -b "$rjar" "$url/signin" | grep -o 'name="csrf_token" value="[^"]*"' | sed -n 1p | sed 's/.*value="//; s/"$//')
code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -c "$rjar" -b "$rjar" \
  --data-urlencode "csrf_token=$rtoken" --data-urlencode "email=$email" \
  --data-urlencode "password=$password" "$url/signin")
[ "$code" = 303 ] || { echo "sign-in for the reads failed ($code)" >&2; exit 1; }
cookie=$(awk '$6 ~ /keyhold_/ { printf "%s=%s; ", $6, $7 }' "$rjar")
curl -s -m 10 -H "Cookie: $cookie" "$url/record" | grep "Your health record" >/dev/null || { echo "record page not served" >&2; exit 1; }

# Accounts for the flood: sign up, confirm from the outbox mail, sign in once
# (so each account and address pair is known, as a returning user's is).
outbox="$tmp/data/outbox"
for i in $(seq -w "$flood_accounts"); do
  code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H "Cookie: $csrf_cookie" \
    --data-urlencode "csrf_token=$token" --data-urlencode "name=Bench Person $i" \
    --data-urlencode "email=bench$i@bench.keyhold.test" --data-urlencode "password=$password" "$url/signup")
  [ "$code" = 200 ] || { echo "sign-up $i failed ($code)" >&2; exit 1; }
done
for i in $(seq -w "$flood_accounts"); do
  link=
  for _ in $(seq 50); do
    link=$(grep -l "^To: bench$i@bench.keyhold.test" "$outbox"/*.eml 2>/dev/null | sed -n 1p \
      | xargs -r grep -ho "$url/account/confirm/[A-Za-z0-9_-]*" | sed -n 1p || true)
    [ -n "$link" ] && break
    sleep 0.1
  done
  [ -n "$link" ] || { echo "no confirmation mail for bench$i in $outbox" >&2; exit 1; }
  code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H "Cookie: $csrf_cookie" \
    --data-urlencode "csrf_token=$token" "$link")
  [ "$code" = 303 ] || { echo "confirming bench$i failed ($code)" >&2; exit 1; }
  code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H "Cookie: $csrf_cookie" \
    --data-urlencode "csrf_token=$token" --data-urlencode "email=bench$i@bench.keyhold.test" \
    --data-urlencode "password=$password" "$url/signin")
  [ "$code" = 303 ] || { echo "first sign-in of bench$i failed ($code)" >&2; exit 1; }
done

# The flood: every connection POSTs /signin again as soon as it is answered,
# each request to the next of the flood's accounts (scripts/lib/signin-flood.lua).

to_ms() { # wrk's 812.00us / 5.60ms / 1.20s / 1.00m -> ms
  awk -v x="$1" 'BEGIN {
    if (x ~ /us$/) { sub(/us$/, "", x); printf "%.2f", x / 1000 }
    else if (x ~ /ms$/) { sub(/ms$/, "", x); printf "%.2f", x }
    else if (x ~ /m$/) { sub(/m$/, "", x); printf "%.2f", x * 60000 }
    else if (x ~ /s$/) { sub(/s$/, "", x); printf "%.2f", x * 1000 }
    else print "nan" }'
}
pct() { awk -v p="$1" '$1 == p { print $2; exit }' "$2"; }
rps() { awk '/^Requests\/sec/ { print $2; exit }' "$1"; }
reads() { wrk -t2 -c"$read_conns" -d"${secs}s" --timeout 10s --latency -H "Cookie: $cookie" "$url/record"; }

echo "== machine: $cores cores; $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== argon2id m=$m_kib KiB, t=$t_cost, p=$p_cost; hashing: $cores at once (one per core), $max_waiting waiting, the rest shed (503)"
echo
echo "== 1. sign-in, one at a time ($sequential requests after 2 warm-ups; curl time_total)"
echo "median ${seq_median} ms, p95 ${seq_p95} ms (min ${seq_min}, max ${seq_max})"
echo
echo "== 2. GET /record, signed in, $read_conns connections, ${secs}s, no sign-ins running"
reads | tee "$tmp/base"
echo
echo "== 3. the same reads while $flood_conns connections sign in ($flood_accounts accounts in turn, right passwords)"
KH_ACCOUNTS="$flood_accounts" KH_TOKEN="$token" KH_PASSWORD="$password" KH_COOKIE="$csrf_cookie" \
  wrk -t2 -c"$flood_conns" -d"$((secs + 5))s" --timeout 15s --latency -s scripts/lib/signin-flood.lua "$url/signin" >"$tmp/flood" 2>&1 &
flood=$!
sleep 2 # let the queue fill before measuring
reads | tee "$tmp/loaded"
wait "$flood" || true
flood=
echo "-- the sign-in side (wrk -c$flood_conns, $((secs + 5))s, the read window inside it)"
cat "$tmp/flood"
echo

grep -q '^FLOOD' "$tmp/flood" || { echo "the flood's wrk printed no counts" >&2; exit 1; }
base50=$(to_ms "$(pct 50% "$tmp/base")"); base99=$(to_ms "$(pct 99% "$tmp/base")")
load50=$(to_ms "$(pct 50% "$tmp/loaded")"); load99=$(to_ms "$(pct 99% "$tmp/loaded")")
ratio=$(awk -v a="$load99" -v b="$base99" 'BEGIN { printf "%.1f", a / b }')
read -r _ f_secs f_in f_shed f_thr f_other f_to f_in_s f_shed_s < <(grep '^FLOOD' "$tmp/flood" | sed 's/[a-z_]*=//g')
echo "== summary"
echo "argon2id m=$m_kib KiB t=$t_cost p=$p_cost; $cores cores; $max_waiting may wait"
echo "sign-in, one at a time:     median $seq_median ms, p95 $seq_p95 ms"
echo "reads, no sign-ins:         $(rps "$tmp/base") req/s, p50 $base50 ms, p99 $base99 ms"
echo "reads, $flood_conns sign-ins running: $(rps "$tmp/loaded") req/s, p50 $load50 ms, p99 $load99 ms"
echo "read p99 ratio (flood / none): ${ratio}x"
echo "sign-ins over ${f_secs}s: $f_in signed in ($f_in_s/s), $f_shed shed with 503 ($f_shed_s/s), $f_thr throttled (429), $f_other other, $f_to timed out"
