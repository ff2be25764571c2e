#!/usr/bin/env bash
# The whole test suite: unit, property, fixture and end-to-end tests.
# This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The end-to-end tests start the real binary; build it first.
cargo build --locked -p regmesh
cargo test --locked --workspace
