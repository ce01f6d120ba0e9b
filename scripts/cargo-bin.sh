#!/usr/bin/env bash
# Builds the snapbundle binary and prints its path, wherever cargo puts it (CARGO_TARGET_DIR,
# build.target-dir in a cargo config, or ./target): scripts never guess target/release.
#
#   scripts/cargo-bin.sh release   the optimised build (the default)
#   scripts/cargo-bin.sh test      the debug binary `cargo test --workspace` builds for the
#                                  integration tests (no second build: dev-dependencies change
#                                  the features a plain `cargo build` would compile with)
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-release} in
  release) build=(cargo build --locked --quiet --release -p snapbundle --bin snapbundle) ;;
  test) build=(cargo test --locked --quiet --workspace --no-run) ;;
  *)
    echo "usage: scripts/cargo-bin.sh [release|test]" >&2
    exit 2
    ;;
esac
# cargo prints one JSON message per artifact; the binary's has target kind "bin", an "executable"
# path and a profile with "test":false (`cargo test` also builds the binary's own unit-test
# harness, kind "bin" too, in an order that differs between a fresh and a cached build).
exe=$("${build[@]}" --message-format=json |
  grep '"kind":\["bin"\]' | grep '"name":"snapbundle"' | grep '"test":false' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [[ -z $exe || ! -x $exe ]]; then
  echo "cargo-bin.sh: cargo built no snapbundle executable (${1:-release})" >&2
  exit 1
fi
printf '%s\n' "$exe"
