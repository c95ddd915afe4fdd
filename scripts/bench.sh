#!/usr/bin/env bash
# Issue 9's performance targets, measured in one run (docs/PERFORMANCE.md,
# "Issue 9 targets"). Loopback only; every process it starts is stopped on exit.
#
#   scripts/bench.sh [--patients 1000[,100000]] [--entries 100] [--seconds 15]
#                    [--connections 64] [--reseed] [--no-build] [--no-ingest]
#
# 1. Builds release (`keyhold`, `keyhold-bench`), unless --no-build.
# 2. P2: `cargo bench -p keyhold-domain --bench ingest` (feed ingest through the
#    domain beside raw sled inserts: of the very rows ingest wrote, and of one
#    entry-sized row per entry), unless --no-ingest.
# 3. For each data set size: seeds PATIENTS x ENTRIES synthetic patients with
#    `keyhold-bench seed` into $TARGET/bench-data/PxE/ — or reuses what an
#    earlier run seeded there (100,000 x 100 takes long; --reseed starts
#    again). The server writes its audit entries into that folder, so a reused
#    data set grows by each run's reads; the disk figure is the one taken right
#    after seeding. Then it starts `keyhold serve` on 127.0.0.1 (a free port)
#    and measures:
#    - start-up: from exec until GET /healthz answers 200;
#    - P1 (after 5 s of the same reads as a warm-up, not measured):
#      GET /fhir/R4/Patient/{id} as the record's owner (session cookie:
#      session, policy, demographics opened, a durable audit entry per
#      request) at CONNECTIONS connections for SECONDS, then the bare axum
#      handler (`keyhold-bench bare`) serving the same bytes;
#    - the whole record, for comparison: GET /fhir/R4/Condition?patient={id}
#      (every entry opened and filtered; reported beside P1, not as P1);
#    - P3: the same reads while 200 connections sign in (right passwords,
#      50 accounts in turn, as scripts/bench-signin.sh), against P1's figure;
#    - P4: resident memory (VmRSS, sampled during the loads, and VmHWM), disk
#      bytes against the plaintext JSON of the same data, and with two sizes
#      the read p99 of the larger against the smaller.
# 4. Prints one table: each figure, its target, PASS or MISS.
#
# TARGET is $CARGO_TARGET_DIR when set, else target. Needs curl and Debian's
# wrk (installed with apt-get when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=1000
entries=100
secs=15
conns=64
flood_conns=200
reseed=0
build=1
ingest=1
while [ $# -gt 0 ]; do
  case $1 in
    --patients) sizes=${2:?}; shift 2 ;;
    --entries) entries=${2:?}; shift 2 ;;
    --seconds) secs=${2:?}; shift 2 ;;
    --connections) conns=${2:?}; shift 2 ;;
    --reseed) reseed=1; shift ;;
    --no-build) build=0; shift ;;
    --no-ingest) ingest=0; shift ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in ${sizes//,/ } "$entries" "$secs" "$conns"; do
  case $n in '' | *[!0-9]* | 0) echo "counts must be positive whole numbers: $n" >&2; exit 2 ;; esac
done

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  fi
  command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
fi
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-target}
if [ "$build" = 1 ]; then
  cargo build --release --locked -p keyhold -p keyhold-bench
fi
keyhold=$target/release/keyhold
bench=$target/release/keyhold-bench
[ -x "$keyhold" ] && [ -x "$bench" ] || { echo "$keyhold or $bench is missing (run without --no-build)" >&2; exit 1; }

tmp=$(mktemp -d)
pid=
bare_pid=
flood=
sampler=
stop() { # stop a process we started, by its id, and wait for it
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  stop "$flood"; stop "$sampler"; stop "$bare_pid"; stop "$pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cores=$(nproc)
load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
to_ms() { # wrk's 812.00us / 5.60ms / 1.20s / 1.00m -> ms
  awk -v x="$1" 'BEGIN {
    if (x ~ /us$/) { sub(/us$/, "", x); printf "%.2f", x / 1000 }
    else if (x ~ /ms$/) { sub(/ms$/, "", x); printf "%.2f", x }
    else if (x ~ /m$/) { sub(/m$/, "", x); printf "%.2f", x * 60000 }
    else if (x ~ /s$/) { sub(/s$/, "", x); printf "%.2f", x * 1000 }
    else print "nan" }'
}
pct() { to_ms "$(awk -v p="$1" '$1 == p { print $2; exit }' "$2")"; }
rps() { awk '/^Requests\/sec/ { printf "%.0f", $2; exit }' "$1"; }
bad_answers() { # non-2xx/3xx answers plus socket errors, from wrk's output
  awk '/Non-2xx or 3xx responses/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$1"
}
json_num() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" "$2" | sed -n 1p; }
json_str() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$2" | sed -n 1p; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
# verdict VALUE OP LIMIT: PASS when VALUE OP LIMIT holds (OP: ge or le)
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "nan" || v == "") { print "n/a"; exit }
    ok = (op == "ge") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
    print ok ? "PASS" : "MISS" }'
}

rows=$tmp/rows # size|figure|value|target|verdict
: >"$rows"
row() { printf '%s|%s|%s|%s|%s\n' "$@" >>"$rows"; }

echo "== machine: $cores cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average: $(load); $(date -u '+%Y-%m-%d %H:%M UTC')"

# ---- P2: ingest through the domain against raw sled (no server running) ----
if [ "$ingest" = 1 ]; then
  echo
  ing_load=$(load)
  echo "== P2: feed ingest (cargo bench -p keyhold-domain --bench ingest); load average before: $ing_load"
  cargo bench --locked -p keyhold-domain --bench ingest 2>&1 | tee "$tmp/ingest" | grep -v '^ *\(Compiling\|Finished\|Running\)'
  ing=$(json_num keyhold_new_per_s "$tmp/ingest")
  ing_upd=$(json_num keyhold_update_per_s "$tmp/ingest")
  ing_par=$(json_num keyhold_concurrent_per_s "$tmp/ingest")
  raw=$(json_num raw_per_s "$tmp/ingest")
  raw_same=$(json_num raw_same_rows_per_s "$tmp/ingest")
  same_rows=$(json_num same_rows "$tmp/ingest")
  same_bytes=$(json_num same_bytes "$tmp/ingest")
  [ -n "$ing" ] && [ -n "$raw" ] || { echo "the ingest bench printed no summary" >&2; exit 1; }
  row "-" "P2 ingest, new entries, one batch of 100 at a time (entries/s) [load average before: $ing_load]" "$ing" ">= 20000" "$(verdict "$ing" ge 20000)"
  row "-" "P2 ingest, 4 feeds at once, batches of 100 (entries/s)" "$ing_par" ">= 20000" "$(verdict "$ing_par" ge 20000)"
  row "-" "P2 ingest, updates (entries/s)" "$ing_upd" "-" ""
  row "-" "P2 raw sled, one entry-sized row per entry, same batching (rows/s)" "$raw" "-" ""
  row "-" "P2 raw sled, the very rows ingest wrote ($((same_rows / 10000)) rows, $((same_bytes / 10000)) bytes an entry), same batching (entries/s)" "$raw_same" "-" ""
  row "-" "P2 ingest / raw, the same rows and bytes" "$(ratio "$ing" "$raw_same")" ">= 0.50" "$(verdict "$(ratio "$ing" "$raw_same")" ge 0.5)"
  row "-" "P2 ingest / raw, one entry-sized row per entry" "$(ratio "$ing" "$raw")" ">= 0.50" "$(verdict "$(ratio "$ing" "$raw")" ge 0.5)"
fi

p99_by_size=$tmp/p99s
: >"$p99_by_size"
for n in ${sizes//,/ }; do
  set_dir=$target/bench-data/${n}x${entries}
  data=$set_dir/data
  keys=$set_dir/keys
  summary=$set_dir/seed.json
  echo
  if [ "$reseed" = 1 ] || [ ! -s "$summary" ]; then
    rm -rf "$set_dir"
    mkdir -p "$set_dir"
    echo "== seeding $n patients x $entries entries into $set_dir; load average before: $(load)"
    "$bench" seed --data "$data" --keys "$keys" --patients "$n" --entries "$entries" \
      --json-out "$summary.partial" | tee "$set_dir/seed.log"
    du -sB1 "$data" | cut -f1 >"$set_dir/disk-after-seed"
    mv "$summary.partial" "$summary"
  else
    echo "== reusing the data set seeded earlier in $set_dir (--reseed to make it anew)"
    grep -h '^[0-9]* patients' "$set_dir/seed.log" 2>/dev/null || true
  fi
  plain=$(json_num plaintext_json_bytes "$summary")
  seed_rate=$(json_num entries_per_second "$summary")
  seed_secs=$(json_num seconds "$summary")
  patient=$(json_str patient "$summary")
  email=$(json_str email "$summary")
  password=$(json_str password "$summary")
  disk=$(cat "$set_dir/disk-after-seed")
  row "$n" "seeding (entries/s; seconds)" "$(printf '%.0f; %.0f s' "$seed_rate" "$seed_secs")" "-" ""

  # ---- start-up ----
  echo "== starting keyhold serve on $data; load average before: $(load)"
  started=$(now)
  env -u KEYHOLD_DANGER_FAST_HASH "$keyhold" serve --data "$data" --keys "$keys" --bind 127.0.0.1:0 \
    >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  url=
  up=
  for _ in $(seq 6000); do # 10 minutes at most
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/err" >&2; echo "keyhold serve stopped" >&2; exit 1; }
    [ -n "$url" ] || url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/out" 2>/dev/null | sed -n 1p || true)
    if [ -n "$url" ] && [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$url/healthz")" = 200 ]; then
      up=$(now)
      break
    fi
    sleep 0.05
  done
  [ -n "$up" ] || { cat "$tmp/err" >&2; echo "keyhold serve did not answer /healthz" >&2; exit 1; }
  startup=$(awk -v a="$started" -v b="$up" 'BEGIN { printf "%.2f", b - a }')
  echo "up in $startup s at $url"

  # ---- sign in as the reader, fetch the body the bare handler will serve ----
  jar=$tmp/jar
  rm -f "$jar"
  token=$(curl -s -m 10 -c "$jar" -b "$jar" "$url/signin" | grep -o 'name="csrf_token" value="[^"]*"' | sed -n 1p | sed 's/.*value="//; s/"$//')
  code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
    --data-urlencode "csrf_token=$token" --data-urlencode "email=$email" \
    --data-urlencode "password=$password" "$url/signin")
  [ "$code" = 303 ] || { echo "sign-in as $email failed ($code)" >&2; exit 1; }
  cookie=$(awk '$6 ~ /keyhold_/ { printf "%s=%s; ", $6, $7 }' "$jar")
  path=/fhir/R4/Patient/$patient
  curl -s -m 10 -H "Cookie: $cookie" -H 'Accept: application/fhir+json' -o "$tmp/body" "$url$path"
  grep -q '"resourceType":"Patient"' "$tmp/body" || { echo "Patient read not served:" >&2; head -c 300 "$tmp/body" >&2; exit 1; }
  body_bytes=$(wc -c <"$tmp/body")
  "$bench" bare --body "$tmp/body" --content-type application/fhir+json >"$tmp/bare-out" 2>"$tmp/bare-err" &
  bare_pid=$!
  bare_url=
  for _ in $(seq 100); do
    bare_url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/bare-out" 2>/dev/null | sed -n 1p || true)
    [ -n "$bare_url" ] && break
    sleep 0.05
  done
  [ -n "$bare_url" ] || { cat "$tmp/bare-err" >&2; exit 1; }
  cmp -s "$tmp/body" <(curl -s -m 10 "$bare_url$path") || { echo "the bare handler serves other bytes" >&2; exit 1; }

  # Resident memory, sampled every half second while the loads run.
  (while kill -0 "$pid" 2>/dev/null; do
    awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true
    sleep 0.5
  done) >"$tmp/rss" &
  sampler=$!

  reads() { # URL -> wrk output
    wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s --latency \
      -H "Cookie: $cookie" -H 'Accept: application/fhir+json' "$1$path"
  }
  echo
  # Warm-up: the first seconds after a start read a cold store (start-up is
  # measured above); P1 is the steady state.
  echo "== warm-up: 5 s of the P1 reads, not measured"
  wrk -t2 -c"$conns" -d5s -H "Cookie: $cookie" -H 'Accept: application/fhir+json' "$url$path" >/dev/null
  p1_load=$(load)
  echo "== P1: GET $path ($body_bytes bytes) as its owner, $conns connections, ${secs}s; load average before: $p1_load"
  reads "$url" | tee "$tmp/p1"
  echo "== P1 baseline: the bare handler, same bytes; load average before: $(load)"
  reads "$bare_url" | tee "$tmp/bare"
  stop "$bare_pid"; bare_pid=
  [ "$(bad_answers "$tmp/p1")" = 0 ] || { echo "P1: some reads failed" >&2; exit 1; }
  p1_rps=$(rps "$tmp/p1"); p1_50=$(pct 50% "$tmp/p1"); p1_99=$(pct 99% "$tmp/p1")
  b_rps=$(rps "$tmp/bare"); b_50=$(pct 50% "$tmp/bare"); b_99=$(pct 99% "$tmp/bare")
  echo "$n $p1_99" >>"$p99_by_size"
  row "$n" "P1 Patient read, $conns conns (req/s) [load average before: $p1_load]" "$p1_rps" ">= 5000" "$(verdict "$p1_rps" ge 5000)"
  row "$n" "P1 Patient read p50 / p99 (ms)" "$p1_50 / $p1_99" "p99 <= 10" "$(verdict "$p1_99" le 10)"
  row "$n" "P1 bare handler, same bytes (req/s; p50 / p99 ms)" "$b_rps; $b_50 / $b_99" "-" ""
  row "$n" "P1 keyhold / bare (req/s)" "$(ratio "$p1_rps" "$b_rps")" ">= 0.50" "$(verdict "$(ratio "$p1_rps" "$b_rps")" ge 0.5)"

  # The whole record, for comparison: a search opens every entry (ENTRIES of them).
  search="/fhir/R4/Condition?patient=$patient"
  curl -s -m 10 -H "Cookie: $cookie" "$url$search" | grep -q '"searchset"' || { echo "FHIR search not served" >&2; exit 1; }
  s_load=$(load)
  echo "== P1 (whole record): GET $search, $conns connections, ${secs}s; load average before: $s_load"
  wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s --latency \
    -H "Cookie: $cookie" -H 'Accept: application/fhir+json' "$url$search" | tee "$tmp/search"
  [ "$(bad_answers "$tmp/search")" = 0 ] || { echo "P1: some searches failed" >&2; exit 1; }
  row "$n" "P1 (whole record) Condition search, every entry opened (req/s; p50 / p99 ms) [load average before: $s_load]" \
    "$(rps "$tmp/search"); $(pct 50% "$tmp/search") / $(pct 99% "$tmp/search")" "-" ""

  # ---- P3: the same reads during a sign-in flood ----
  csrf_jar=$tmp/csrf-jar
  rm -f "$csrf_jar"
  ftoken=$(curl -s -m 10 -c "$csrf_jar" "$url/signin" | grep -o 'name="csrf_token" value="[^"]*"' | sed -n 1p | sed 's/.*value="//; s/"$//')
  csrf_cookie=$(awk '$6 ~ /keyhold_csrf/ { printf "%s=%s", $6, $7 }' "$csrf_jar")
  accounts=$(json_num accounts "$summary")
  fpassword=$(sed -n 's/.*"password": *"\([^"]*\)".*/\1/p' "$summary" | tail -1) # the flood's
  # Each flood account signs in once first, as a returning user has.
  for i in $(seq -w "$accounts"); do
    code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H "Cookie: $csrf_cookie" \
      --data-urlencode "csrf_token=$ftoken" --data-urlencode "email=bench$i@bench.keyhold.test" \
      --data-urlencode "password=$fpassword" "$url/signin")
    [ "$code" = 303 ] || { echo "first sign-in of bench$i failed ($code)" >&2; exit 1; }
  done
  echo
  p3_load=$(load)
  echo "== P3: the P1 reads while $flood_conns connections sign in ($accounts accounts in turn); load average before: $p3_load"
  KH_ACCOUNTS="$accounts" KH_TOKEN="$ftoken" KH_PASSWORD="$fpassword" KH_COOKIE="$csrf_cookie" \
    wrk -t2 -c"$flood_conns" -d"$((secs + 5))s" --timeout 15s --latency -s scripts/lib/signin-flood.lua \
    "$url/signin" >"$tmp/flood" 2>&1 &
  flood=$!
  sleep 2 # let the hashing queue fill before measuring
  reads "$url" | tee "$tmp/p3"
  wait "$flood" || true
  flood=
  grep '^FLOOD' "$tmp/flood" || { cat "$tmp/flood" >&2; echo "the flood printed no counts" >&2; exit 1; }
  p3_rps=$(rps "$tmp/p3"); p3_50=$(pct 50% "$tmp/p3"); p3_99=$(pct 99% "$tmp/p3")
  signed=$(sed -n 's/.*signed_in_per_s=\([0-9.]*\).*/\1/p' "$tmp/flood")
  row "$n" "P3 reads during 200 sign-ins (req/s; p50 / p99 ms) [load average before: $p3_load]" "$p3_rps; $p3_50 / $p3_99 ($signed sign-ins/s)" "-" ""
  row "$n" "P3 read p99, sign-ins / none (P1)" "$(ratio "$p3_99" "$p1_99")" "<= 3" "$(verdict "$(ratio "$p3_99" "$p1_99")" le 3)"

  # ---- P4 ----
  stop "$sampler"; sampler=
  rss_kib=$(sort -n "$tmp/rss" | tail -1)
  hwm_kib=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
  rss_mib=$(awk -v k="${rss_kib:-0}" 'BEGIN { printf "%.0f", k / 1024 }')
  hwm_mib=$(awk -v k="${hwm_kib:-0}" 'BEGIN { printf "%.0f", k / 1024 }')
  disk_now=$(du -sB1 "$data" | cut -f1)
  stop "$pid"; pid=
  row "$n" "P4 start-up to /healthz 200 (s)" "$startup" "<= 5" "$(verdict "$startup" le 5)"
  row "$n" "P4 resident memory under load, max VmRSS / VmHWM (MiB)" "$rss_mib / $hwm_mib" "<= 1024" "$(verdict "$hwm_mib" le 1024)"
  row "$n" "P4 disk after seeding / plaintext JSON (MB)" \
    "$(awk -v d="$disk" -v p="$plain" 'BEGIN { printf "%.1f / %.1f", d / 1e6, p / 1e6 }')" "-" ""
  row "$n" "P4 disk / plaintext JSON" "$(ratio "$disk" "$plain")" "<= 2.5" "$(verdict "$(ratio "$disk" "$plain")" le 2.5)"
  row "$n" "disk now, after this run's audited reads (MB)" "$(awk -v d="$disk_now" 'BEGIN { printf "%.1f", d / 1e6 }')" "-" ""
done

# With two sizes or more: the read p99 of each against the smallest.
if [ "$(wc -l <"$p99_by_size")" -gt 1 ]; then
  read -r small small99 < <(sort -n "$p99_by_size" | sed -n 1p)
  sort -n "$p99_by_size" | sed 1d | while read -r big big99; do
    r=$(ratio "$big99" "$small99")
    row "$big" "P4 read p99 at $big / at $small patients" "$r" "<= 1.5" "$(verdict "$r" le 1.5)"
  done
fi

echo
echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'); $cores cores; load average now: $(load))"
echo "| patients | figure | value | target | result |"
echo "| --- | --- | --- | --- | --- |"
awk -F'|' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$rows"
