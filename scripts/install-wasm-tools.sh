#!/usr/bin/env bash
# Install the pinned tools the WebAssembly build and tests need, when missing (idempotent; well
# under a second when everything is present):
#   wasm-bindgen-cli 0.2.130   `cargo install` (without --locked: the locked webpki-roots is not in
#                              the registry here); must match the wasm-bindgen crate exactly
#   wasm/js-tests/node_modules `npm ci` from the committed package-lock.json (typescript 5.9.3,
#                              playwright-core 1.64.1, which drives Debian's /usr/bin/chromium)
#   binaryen (Debian, 108)     wasm-opt, the browser module's size optimiser (scripts/build-wasm.sh)
# Other Debian packages (chromium, rustc-web, ...) come from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
WB_VERSION=0.2.130

if [[ $(wasm-bindgen --version 2>/dev/null) != "wasm-bindgen $WB_VERSION" ]]; then
  echo "install-wasm-tools: cargo install wasm-bindgen-cli $WB_VERSION (several minutes)"
  nice cargo install --quiet wasm-bindgen-cli --version "$WB_VERSION" --force
fi
if ! command -v wasm-opt >/dev/null; then
  echo "install-wasm-tools: apt-get install binaryen"
  log=$(mktemp /tmp/install-wasm-tools.XXXXXX)
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get install -y -q binaryen || { apt-get update -q && apt-get install -y -q binaryen; }; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "install-wasm-tools: ERROR: could not install binaryen (wasm-opt); needs root" >&2
    exit 1
  fi
  rm -f "$log"
fi
command -v node >/dev/null || { echo "install-wasm-tools: ERROR: node not found" >&2; exit 1; }
lock=wasm/js-tests/package-lock.json
stamp=wasm/js-tests/node_modules/.installed-lock
if [[ ! -f $stamp ]] || ! cmp -s "$lock" "$stamp"; then
  echo "install-wasm-tools: npm ci in wasm/js-tests"
  (cd wasm/js-tests && npm ci --no-audit --no-fund --silent)
  cp "$lock" "$stamp"
fi
