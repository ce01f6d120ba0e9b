#!/usr/bin/env bash
# Build the WebAssembly artifacts with Debian's rustc-web 1.96 and -Zbuild-std (as
# scripts/build-wasm-core.sh explains; no std, so only core and alloc are built from source):
#
#   1. the sandbox component: wasm/guest → core module → component (wasm/componentize, wit-component)
#      → wasm/component/snapbundle-validator.wasm, the committed artifact the host embeds;
#   2. the browser/node package: wasm/ (wasm-bindgen 0.2.130) → target/npm/snapbundle-wasm/
#      (node/ for require, with wasm/npm/node-entry.js as node/index.js; web/ for browsers;
#      package.json from wasm/npm/) and a copy of web/ in
#      wasm/www/pkg/ for the static page; `npm pack` of the package into target/npm/.
#
# Profiles (root Cargo.toml): the guest is built for speed (`wasm-guest`, opt-level 3), the
# browser module for size (`wasm`, opt-level z, then binaryen's `wasm-opt -Oz`).
#
# Usage: scripts/build-wasm.sh [--check]
#   --check   do not touch the committed component: rebuild it and fail unless the bytes are
#             identical (CI uses this; after changing the core run the script without --check
#             and commit wasm/component/snapbundle-validator.wasm)
# Needs: scripts/install-deps.sh (rustc-web, cargo-web, rust-web-src, lld-22) and
#        wasm-bindgen 0.2.130 and wasm-opt on PATH (scripts/install-wasm-tools.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "build-wasm: unknown argument '$1'" >&2; exit 2 ;;
esac

die() { echo "build-wasm: ERROR: $*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }
TARGET=wasm32-unknown-unknown
COMMITTED=wasm/component/snapbundle-validator.wasm
NPM_OUT=target/npm/snapbundle-wasm
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}
[[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || die "Debian cargo/rustc missing: run scripts/install-deps.sh"
command -v wasm-ld-22 >/dev/null || die "wasm-ld-22 missing: run scripts/install-deps.sh"

# Paths must not leak into the artifacts (the committed component must rebuild byte for byte
# in any checkout): map the checkout and the registry to fixed names.
# A panic traps (there is nothing to unwind to or print on): -Cpanic=immediate-abort and
# -Zlocation-detail=none leave out the panic formatting and the source locations (-1.5 KB).
FLAGS="-C target-feature=+simd128 -Zlocation-detail=none -Zunstable-options -Cpanic=immediate-abort"
FLAGS+=" --remap-path-prefix=$ROOT=/snapbundle --remap-path-prefix=$CARGO_HOME_DIR=/cargo"

wasm_build() { # <package> <target dir> <profile> (as a cdylib)
  # The Debian cargo runs --locked: Cargo.lock belongs to the rustup cargo (see build-wasm-core.sh).
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u CARGO_BUILD_TARGET \
      -u CARGO_BUILD_TARGET_DIR -u CARGO_BUILD_RUSTC \
      RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
      CARGO_TARGET_DIR="$ROOT/$2" RUSTFLAGS="$FLAGS" \
    nice /usr/bin/cargo rustc --locked --quiet --profile "$3" --target "$TARGET" -Zbuild-std=core,alloc -p "$1" \
      --crate-type cdylib
}

sizes() { # <file>...
  for f in "$@"; do
    printf '    %-58s %8d bytes raw  %8d bytes gzip -9\n' "$f" "$(stat -c %s "$f")" "$(gzip -9c "$f" | wc -c)"
  done
}

env -u RUSTC -u RUSTC_BOOTSTRAP cargo metadata --format-version 1 -q >/dev/null   # sync Cargo.lock natively

say "guest: snapbundle-guest → $TARGET (Debian $(/usr/bin/rustc --version | cut -d' ' -f2), -Zbuild-std=core,alloc)"
wasm_build snapbundle-guest target/wasm-guest wasm-guest
MODULE=target/wasm-guest/$TARGET/wasm-guest/snapbundle_guest.wasm
OUT=target/wasm-guest/snapbundle-validator.wasm
env -u RUSTC -u RUSTC_BOOTSTRAP nice cargo run --locked --quiet -p snapbundle-componentize -- "$MODULE" "$OUT"
if ((CHECK)); then
  if ! cmp -s "$OUT" "$COMMITTED"; then
    die "$COMMITTED is not what the sources build (rebuilt: $OUT, $(stat -c %s "$OUT") bytes; committed: $(stat -c %s "$COMMITTED" 2>/dev/null || echo missing)).
    The core or the guest changed: run scripts/build-wasm.sh and commit $COMMITTED."
  fi
  say "component: rebuilt from source, identical to the committed $COMMITTED"
else
  mkdir -p "$(dirname "$COMMITTED")"
  cp "$OUT" "$COMMITTED"
  say "component: $COMMITTED updated"
fi

say "browser package: snapbundle-wasm → $TARGET, wasm-bindgen"
command -v wasm-bindgen >/dev/null || die "wasm-bindgen missing: run scripts/install-wasm-tools.sh"
[[ $(wasm-bindgen --version) == "wasm-bindgen 0.2.130" ]] || die "need wasm-bindgen 0.2.130, found '$(wasm-bindgen --version)'"
command -v wasm-opt >/dev/null || die "wasm-opt missing: run scripts/install-wasm-tools.sh (Debian binaryen)"
wasm_build snapbundle-wasm target/wasm-bindgen wasm
# Binaryen's size optimiser (-8 %), before wasm-bindgen: binaryen 108 run on wasm-bindgen's
# output turns its externref table into one the JS glue cannot fill.
BG=target/wasm-bindgen/opt/snapbundle_wasm.wasm
mkdir -p "$(dirname "$BG")"
wasm-opt -Oz --enable-simd --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int "target/wasm-bindgen/$TARGET/wasm/snapbundle_wasm.wasm" -o "$BG"
rm -rf "$NPM_OUT" wasm/www/pkg
mkdir -p "$NPM_OUT"
wasm-bindgen --target nodejs --out-dir "$NPM_OUT/node" "$BG"
wasm-bindgen --target web --out-dir "$NPM_OUT/web" "$BG"
cp wasm/npm/package.json wasm/npm/README.md "$NPM_OUT/"
cp wasm/npm/node-entry.js "$NPM_OUT/node/index.js"   # SHA-256 from node:crypto (see the file)
mkdir -p wasm/www/pkg
cp "$NPM_OUT"/web/snapbundle_wasm.js "$NPM_OUT"/web/snapbundle_wasm_bg.wasm wasm/www/pkg/
(cd target/npm && npm pack --silent ./snapbundle-wasm >/dev/null)
say "npm package: $(ls target/npm/snapbundle-wasm-*.tgz)"

say "sizes"
sizes "$MODULE" "$COMMITTED" "$NPM_OUT/web/snapbundle_wasm_bg.wasm" "$NPM_OUT/web/snapbundle_wasm.js" \
  "$(ls target/npm/snapbundle-wasm-*.tgz)"
