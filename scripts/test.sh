#!/usr/bin/env bash
# The whole test suite: unit, property, fixture and end-to-end tests.
# This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The end-to-end tests start the real binary; build it first.
cargo build --locked -p regmesh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --workspace 2>&1 | tee "$log" || status=$?

# One closing line over every test binary (cargo prints one per binary,
# the last of which is often an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "regmesh: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
