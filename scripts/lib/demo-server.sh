# Shared by the wrk benchmarks: build the release binary, start it on the
# demo data on a free loopback port, and sign in as the demo patient.
# Source it, then: start_demo_server; sign_in_demo_patient.
# Sets: bin, tmp, pid, url, cookie. Stops the server and cleans up on exit.

start_demo_server() {
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
}

sign_in_demo_patient() {
  local jar="$tmp/jar" token code
  token=$(curl -s -c "$jar" -b "$jar" "$url/signin" | grep -o 'name="csrf_token" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
  code=$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
    --data-urlencode "csrf_token=$token" --data-urlencode "email=patient@demo.keyhold.test" \
    --data-urlencode "password=keyhold-demo-2026" "$url/signin")
  [ "$code" = 303 ] || { echo "sign-in failed ($code)" >&2; exit 1; }
  cookie=$(awk '$6 ~ /keyhold_/ { printf "%s=%s; ", $6, $7 }' "$jar")
}
