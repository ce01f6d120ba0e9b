#!/usr/bin/env bash
# Builds the microsandbox 0.7.13 oracle (tests/oracle-0713: the published crate's own
# Snapshot::load/save behind a small CLI) and runs the tests that judge snapbundle's `.msb`
# output with it (host/tests/convert_oracle.rs, ignored by a plain `cargo test`).
#
#   scripts/oracle-0713.sh            build, then run the oracle tests
#   scripts/oracle-0713.sh --build    only build; print the binary's path
#
# The first build compiles microsandbox and its dependencies (about 5 minutes on 2 cores); the
# crates come from crates.io at the versions pinned in tests/oracle-0713/Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$PWD/target/oracle-0713
cargo build --quiet --locked --manifest-path tests/oracle-0713/Cargo.toml --target-dir "$target"
bin=$target/debug/oracle0713
if [[ ${1:-} == --build ]]; then
  echo "$bin"
  exit 0
fi
# --workspace: the features cargo test --workspace built with (no rebuild of the host).
SNAPBUNDLE_ORACLE_0713=$bin cargo test --workspace --test convert_oracle --locked -- --ignored
