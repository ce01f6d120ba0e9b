#!/usr/bin/env bash
# Builds the snapbundle binary and prints its path, wherever cargo puts it (CARGO_TARGET_DIR,
# build.target-dir in a cargo config, or ./target): scripts never guess target/release.
#
#   scripts/cargo-bin.sh [release|dev]     (default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
# cargo prints one JSON message per artifact; the binary's carries "executable":"<path>".
exe=$(cargo build --locked --quiet --profile "$profile" --workspace --bin snapbundle --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [[ -z $exe || ! -x $exe ]]; then
  echo "cargo-bin.sh: cargo built no snapbundle executable for profile $profile" >&2
  exit 1
fi
printf '%s\n' "$exe"
