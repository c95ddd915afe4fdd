#!/usr/bin/env bash
# Installs what the browser end-to-end tests need:
#   - Debian's chromium (playwright-core drives it; no browser download is made)
#   - the pinned npm packages in tests/e2e (npm ci, from package-lock.json)
#   - the pinned npm packages of the test OpenID provider in tests/idp (npm ci)
#   - the FHIR validator (PyPI fhir.resources, pinned) in tests/fhir/.venv
# Idempotent: each step is skipped when its result is already in place.
# Usage: bash tests/e2e/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"

log() { printf 'e2e setup: %s\n' "$*"; }
die() { printf 'e2e setup: ERROR: %s\n' "$*" >&2; exit 1; }

# --- chromium -------------------------------------------------------------
if [[ -x "$chromium_bin" ]]; then
  log "chromium present at $chromium_bin"
else
  log "chromium missing at $chromium_bin: installing Debian package 'chromium'"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install chromium yourself and set CHROMIUM_BIN"
  sudo_cmd=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot apt-get install chromium"
    sudo_cmd=(sudo)
  fi
  log "apt-get update"
  "${sudo_cmd[@]}" apt-get update || die "apt-get update failed"
  log "apt-get install -y chromium"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
    || die "apt-get install chromium failed"
  [[ -x "$chromium_bin" ]] || die "chromium installed but $chromium_bin is not executable"
fi
# `chromium --version` goes through Debian's wrapper script; a failure here means
# the browser cannot start at all, which the tests would only report later.
log "chromium version: $("$chromium_bin" --version 2>/dev/null || echo unknown)"

# --- node packages --------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found (Node 20 or newer is needed)"
command -v npm >/dev/null 2>&1 || die "npm not found"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || die "Node $(node -v) is too old: Node 20 or newer is needed"

[[ -f "$here/package-lock.json" ]] || die "$here/package-lock.json is missing"

# npm writes node_modules/.package-lock.json on every install; if it is newer
# than package-lock.json and package.json the install is up to date.
stamp="$here/node_modules/.package-lock.json"
if [[ -f "$stamp" && "$stamp" -nt "$here/package-lock.json" && "$stamp" -nt "$here/package.json" \
      && -d "$here/node_modules/playwright-core" && -d "$here/node_modules/axe-core" ]]; then
  log "node_modules up to date in $here (npm ci skipped)"
else
  log "npm ci in $here"
  # playwright-core downloads no browser; the variable guards against any
  # install hook that would try.
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) || die "npm ci failed"
fi

# --- the test OpenID provider (tests/idp) ----------------------------------
idp_dir="$(cd "$here/.." && pwd)/idp"
[[ -f "$idp_dir/package-lock.json" ]] || die "$idp_dir/package-lock.json is missing"

# Same check as above, for tests/idp's own node_modules.
idp_stamp="$idp_dir/node_modules/.package-lock.json"
if [[ -f "$idp_stamp" && "$idp_stamp" -nt "$idp_dir/package-lock.json" && "$idp_stamp" -nt "$idp_dir/package.json" \
      && -d "$idp_dir/node_modules/oidc-provider" && -d "$idp_dir/node_modules/jose" ]]; then
  log "node_modules up to date in $idp_dir (npm ci skipped)"
else
  log "npm ci in $idp_dir"
  (cd "$idp_dir" && npm ci --no-audit --no-fund) || die "npm ci failed in $idp_dir"
fi

# --- the independent FHIR validator (tests/fhir) ----------------------------
fhir_dir="$(cd "$here/.." && pwd)/fhir"
venv="$fhir_dir/.venv"
fhir_stamp="$venv/.installed"
if [[ -f "$fhir_stamp" && "$fhir_stamp" -nt "$fhir_dir/requirements.txt" && -x "$venv/bin/python" ]]; then
  log "FHIR validator up to date in $venv (pip skipped)"
else
  command -v python3 >/dev/null 2>&1 || die "python3 not found (Python 3.11 is needed for the FHIR validator)"
  log "python venv and pip install -r requirements.txt in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$fhir_dir/requirements.txt" \
    || die "pip install of the FHIR validator failed"
  touch "$fhir_stamp"
fi

log "done. Run the tests with: (cd $here && npm test)"
