#!/usr/bin/env bash
# The one command that runs every check and every test of snapbundle on a fresh machine:
#
#   scripts/test.sh
#
# 1. installs what is missing (Debian packages via scripts/install-deps.sh);
# 2. cargo fmt --check, no import cycle between the host's modules (scripts/module-imports.py),
#    cargo clippy --all-targets -D warnings, cargo doc with warnings denied;
# 3. cargo test for the whole workspace (unit tests, fixtures, hostile inputs, import/export), then
#    the README's demo (scripts/demo.sh) with the debug binary that cargo test built;
# 4. builds the no_std core for the host without default features and for wasm32-unknown-unknown
#    (scripts/build-wasm-core.sh, Debian rustc-web 1.96 with -Zbuild-std);
# 5. WebAssembly: rebuilds the sandbox component and checks it is byte-identical to the committed
#    one, builds the browser/node package (scripts/build-wasm.sh --check), tests the npm tarball
#    in node (install, streaming API, errors, TypeScript, imports) and the page in headless
#    Chromium (screenshots in target/artifacts/), and the parity of native and node on every case
#    (native and wasmtime are compared by `cargo test`);
# 6. builds the real microsandbox 0.7.13 as a test oracle (tests/oracle-0713) and checks that it
#    loads what `convert --to 0.7` writes as it loads the 0.6.2 bundles (scripts/oracle-0713.sh).
# It prints a closing line "N passed, N failed" over the steps and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# One full run builds every crate once: incremental caches would only take disk (gigabytes over the
# ~20 test binaries; a CI machine ran out of space in the last step once). A caller's choice wins.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
disk() { df -h --output=avail,target . | tail -n 1 | awk '{print "disk: " $1 " free on " $2}'; }
disk

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
    disk
  fi
}

step "install dependencies" scripts/install-deps.sh
step "install wasm tools" scripts/install-wasm-tools.sh
step "cargo fmt --check" cargo fmt --all --check
step "no import cycle between host modules" python3 scripts/module-imports.py host/src
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "cargo test" cargo test --workspace --locked
step "demo (scripts/demo.sh, the README's first command)" scripts/demo.sh --profile test
step "core: no_std builds (host and wasm32)" scripts/build-wasm-core.sh
step "wasm: build, component reproducible" scripts/build-wasm.sh --check
step "wasm: npm package and page (node --test)" env -C wasm/js-tests node --test package.test.mjs page.test.mjs
step "wasm: parity native = node" cargo test -p snapbundle-tests --test wasm_parity --locked -- --ignored
step "microsandbox 0.7.13 oracle: converted archives load as the bundles do" scripts/oracle-0713.sh

echo
disk
if ((failed > 0)); then
  printf 'failed step: %s\n' "${failures[@]}"
fi
echo "steps: $passed passed, $failed failed"
((failed == 0))
