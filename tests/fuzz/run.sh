#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 120).
#   bash tests/fuzz/run.sh            # all targets, 2 minutes each
#   SECONDS_EACH=600 bash tests/fuzz/run.sh web_request
# Not part of tests/run-all: it takes minutes per target. cargo fuzz needs
# nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. New inputs go to target/fuzz-corpus/TARGET (not committed); the
# committed seeds in tests/fuzz/corpus/TARGET are read, never written.
# A crash is saved under tests/fuzz/artifacts/TARGET and the script fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
each="${SECONDS_EACH:-120}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(upload_sniff nhs_number fhir_bundle audit_entry web_request)
fi
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  work="$root/target/fuzz-corpus/$t"
  mkdir -p "$work"
  echo "==> $t for ${each}s"
  (cd "$root" && cargo fuzz run --fuzz-dir tests/fuzz "$t" "$work" "tests/fuzz/corpus/$t" \
    -- -max_total_time="$each" -print_final_stats=1 2>&1 | tail -n 25)
done
