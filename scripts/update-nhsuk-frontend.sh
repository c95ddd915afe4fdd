#!/usr/bin/env bash
# Re-vendor the NHS.UK frontend (npm package `nhsuk-frontend`, MIT licence)
# into crates/keyhold-web/assets/.
#
# Usage: scripts/update-nhsuk-frontend.sh [VERSION]
#
# The version is pinned below. To upgrade, run with the new version, check the
# pages, then update NHSUK_FRONTEND_VERSION here and in assets/README.md.
#
# The assets are served flat at /assets/<filename>, under a strict
# Content-Security-Policy, so the stylesheet is adjusted while copying:
#   - url(/assets/images/<name>) becomes url(/assets/<name>);
#   - the @font-face rules that load Frutiger from assets.nhs.uk are removed
#     (the CSP allows fonts from 'self' only; text falls back to Arial);
#   - source map comments are removed (the maps are not vendored).
set -euo pipefail

NHSUK_FRONTEND_VERSION="10.6.1"
version="${1:-$NHSUK_FRONTEND_VERSION}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="$repo_root/crates/keyhold-web/assets"

workdir="$(mktemp -d)"
cleanup() { rm -rf "$workdir"; }
trap cleanup EXIT

echo "Fetching nhsuk-frontend@$version from the npm registry"
(cd "$workdir" && npm pack --silent "nhsuk-frontend@$version" >/dev/null)
tar -xzf "$workdir"/nhsuk-frontend-*.tgz -C "$workdir"
pkg="$workdir/package"
dist="$pkg/dist/nhsuk"

got_version="$(node -p "require('$pkg/package.json').version")"
got_licence="$(node -p "require('$pkg/package.json').license")"
if [[ "$got_version" != "$version" ]]; then
  echo "error: expected version $version, got $got_version" >&2
  exit 1
fi
if [[ "$got_licence" != "MIT" ]]; then
  echo "error: expected MIT licence, got $got_licence" >&2
  exit 1
fi

mkdir -p "$assets"

# Stylesheet: flatten image URLs, drop remote web fonts and source map comment.
sed -E \
  -e 's#url\(/assets/images/#url(/assets/#g' \
  -e 's#@font-face\{[^}]*assets\.nhs\.uk[^}]*\}##g' \
  -e 's#/\*[#] sourceMappingURL=[^*]*\*/##g' \
  "$dist/nhsuk-frontend.min.css" > "$assets/nhsuk-frontend.min.css"

# JavaScript (an ES module; loaded by assets/init.js): drop source map comment.
sed -E -e 's#//[#] sourceMappingURL=.*$##' \
  "$dist/nhsuk-frontend.min.js" > "$assets/nhsuk-frontend.min.js"

# Images the stylesheet refers to, copied flat next to it.
images="$(grep -oE 'url\(/assets/[^)]+\)' "$assets/nhsuk-frontend.min.css" \
  | sed -E 's#^url\(/assets/##; s#\)$##' | sort -u)"
for name in $images; do
  if [[ ! -f "$dist/assets/images/$name" ]]; then
    echo "error: stylesheet refers to missing image $name" >&2
    exit 1
  fi
  cp "$dist/assets/images/$name" "$assets/$name"
  echo "copied $name"
done

# Nothing in the stylesheet may point outside /assets/ (the CSP would block it).
if grep -oE 'url\([^)]*\)' "$assets/nhsuk-frontend.min.css" \
  | grep -vE '^url\((/assets/[^)]+|"?data:[^)]*)\)$' ; then
  echo "error: the stylesheet still refers to the URLs above" >&2
  exit 1
fi

echo "Vendored nhsuk-frontend $version into $assets"
