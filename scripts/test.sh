#!/usr/bin/env bash
# The one command that runs every check and every test of snapbundle on a fresh machine:
#
#   scripts/test.sh
#
# 1. installs what is missing (Debian packages via scripts/install-deps.sh);
# 2. cargo fmt --check, cargo clippy --all-targets -D warnings, cargo doc with warnings denied;
# 3. cargo test for the whole workspace (unit tests, fixtures, hostile inputs, import/export);
# 4. builds the no_std core for the host without default features and for wasm32-unknown-unknown
#    (scripts/build-wasm-core.sh, Debian rustc-web 1.96 with -Zbuild-std).
# It prints a closing line "N passed, N failed" over the steps and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "<== $name: ok ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "<== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}

step "install dependencies" scripts/install-deps.sh
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "cargo test" cargo test --workspace --locked
step "core: no_std builds (host and wasm32)" scripts/build-wasm-core.sh

echo
if ((failed > 0)); then
  printf 'failed step: %s\n' "${failures[@]}"
fi
echo "steps: $passed passed, $failed failed"
((failed == 0))
