#!/usr/bin/env bash
# Check that snapbundle-core builds with --no-default-features (no_std + alloc):
#   1. natively, with the normal (rustup) cargo:   cargo build -p snapbundle-core --no-default-features
#   2. for wasm32-unknown-unknown with Debian's rustc-web 1.96 + -Zbuild-std=core,alloc
#      (how the two toolchains coexist: below), release profile, into target/wasm.
#
# Usage: scripts/build-wasm-core.sh [--clean] [--wasm-only | --native-only] [-- extra cargo args]
#   --clean        delete target/wasm first (from-scratch wasm build, incl. core/alloc)
#   --wasm-only    skip step 1 (Cargo.lock is still synced with the native cargo, see below)
#   --native-only  skip step 2
#   WASM_RUSTFLAGS=...   RUSTFLAGS for the wasm step only (changing them rebuilds core/alloc)
#   NATIVE_CARGO=...     cargo for step 1 (default: first `cargo` on PATH, i.e. rustup's 1.95)
#
# Why the two cargos do not fight:
#   * The wasm step gets the 1.96 toolchain only through per-command environment variables
#     (RUSTC, RUSTC_BOOTSTRAP, linker) and an explicit /usr/bin/cargo; nothing is written to any
#     .cargo/config.toml, so a plain `cargo build` in the workspace keeps using rustup's 1.95.
#   * Separate target dir target/wasm: the artifacts of 1.95 (target/debug, target/release) and
#     of 1.96 never invalidate each other's fingerprints.
#   * Cargo.lock is owned by the native cargo. Step 1 (or, with --wasm-only, `cargo metadata`)
#     runs first and brings the lock up to date the normal way; the 1.96 cargo then runs with
#     --locked, so it can never rewrite the workspace lock file (different cargo versions could
#     otherwise re-encode or re-resolve it). If it would need to, it fails with a clear message.
#     (-Zbuild-std resolves the standard library's own deps from
#     /usr/lib/rustlib/src/rust/library/Cargo.lock, independent of the workspace lock.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CLEAN=0; DO_NATIVE=1; DO_WASM=1; EXTRA=()
while (($#)); do
  case "$1" in
    --clean) CLEAN=1 ;;
    --wasm-only) DO_NATIVE=0 ;;
    --native-only) DO_WASM=0 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "build-wasm-core: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

PKG=snapbundle-core
TARGET=wasm32-unknown-unknown
WASM_TARGET_DIR="$ROOT/target/wasm"
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
WASM_LINKER=wasm-ld-22
NATIVE_CARGO=${NATIVE_CARGO:-cargo}

die() { echo "build-wasm-core: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
say() { printf '==> %s\n' "$*"; }

# Environment for the native cargo: never inherit the wasm toolchain overrides.
native_cargo() { env -u RUSTC -u RUSTC_BOOTSTRAP -u CARGO_BUILD_RUSTC "$NATIVE_CARGO" "$@"; }

T_ALL=$(now)

# ---- sync Cargo.lock with the native cargo (the lock's owner) ------------------------------
sync_lock_native() {
  command -v "$NATIVE_CARGO" >/dev/null 2>&1 || die "'$NATIVE_CARGO' not found"
  native_cargo metadata --format-version 1 -q >/dev/null \
    || die "'$NATIVE_CARGO metadata' failed (workspace manifests broken?)"
}

# ---- step 1: native ---------------------------------------------------------------------
if ((DO_NATIVE)); then
  command -v "$NATIVE_CARGO" >/dev/null 2>&1 || die "'$NATIVE_CARGO' not found (rustup toolchain expected)"
  NV=$(native_cargo --version)
  say "native: $NV ($(command -v "$NATIVE_CARGO"))"
  say "native: cargo build -p $PKG --no-default-features ${EXTRA[*]:-}"
  T=$(now)
  native_cargo build -p "$PKG" --no-default-features "${EXTRA[@]}" \
    || die "native build of $PKG --no-default-features failed"
  say "native: OK in $(elapsed "$T")"
elif ((DO_WASM)); then
  sync_lock_native
fi

# ---- step 2: wasm32-unknown-unknown with Debian rustc-web + -Zbuild-std -------------------
if ((DO_WASM)); then
  [[ -x $DEB_CARGO && -x $DEB_RUSTC ]] || die "$DEB_CARGO / $DEB_RUSTC missing: run scripts/install-deps.sh (cargo-web, rustc-web)"
  command -v "$WASM_LINKER" >/dev/null 2>&1 || die "$WASM_LINKER missing: run scripts/install-deps.sh (lld-22)"
  SRC=$("$DEB_RUSTC" --print sysroot)/lib/rustlib/src/rust/library
  [[ -f $SRC/Cargo.lock ]] || die "$SRC missing: run scripts/install-deps.sh (rust-web-src; needed by -Zbuild-std)"

  if ((CLEAN)) && [[ -d $WASM_TARGET_DIR ]]; then
    say "wasm: removing $WASM_TARGET_DIR (--clean)"
    rm -rf "$WASM_TARGET_DIR"
  fi

  say "wasm: $("$DEB_CARGO" --version) / $("$DEB_RUSTC" --version), linker $WASM_LINKER"
  say "wasm: RUSTC_BOOTSTRAP=1 RUSTC=$DEB_RUSTC $DEB_CARGO build --locked --release --target $TARGET -Zbuild-std=core,alloc -p $PKG --no-default-features (target dir target/wasm) ${EXTRA[*]:-}"
  T=$(now)
  # Native RUSTFLAGS (e.g. -C target-cpu=native) must not leak into the wasm build.
  WASM_ENV=(RUSTC_BOOTSTRAP=1 RUSTC="$DEB_RUSTC"
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$WASM_LINKER"
            CARGO_TARGET_DIR="$WASM_TARGET_DIR")
  [[ -n ${WASM_RUSTFLAGS:-} ]] && WASM_ENV+=(RUSTFLAGS="$WASM_RUSTFLAGS")
  LOG=$(mktemp /tmp/build-wasm-core.XXXXXX)
  trap 'rm -f "$LOG"' EXIT
  set +e
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u CARGO_BUILD_TARGET \
      -u CARGO_BUILD_TARGET_DIR -u CARGO_BUILD_RUSTC "${WASM_ENV[@]}" \
    "$DEB_CARGO" build --locked --release --target "$TARGET" -Zbuild-std=core,alloc \
      -p "$PKG" --no-default-features "${EXTRA[@]}" 2>&1 | tee "$LOG" >&2
  rc=${PIPESTATUS[0]}
  set -e
  if ((rc != 0)); then
    if grep -qi -e 'needs to be updated but --locked' -e 'cannot update the lock file' "$LOG"; then
      die "Cargo.lock is out of date for $DEB_CARGO --locked. Run a normal 'cargo build' (rustup cargo) to update it, then rerun."
    fi
    die "wasm32 build of $PKG failed (exit $rc)"
  fi
  RLIB="$WASM_TARGET_DIR/$TARGET/release/libsnapbundle_core.rlib"
  say "wasm: OK in $(elapsed "$T"): ${RLIB#"$ROOT"/} ($(du -h "$RLIB" | cut -f1))"
fi

say "total: $(elapsed "$T_ALL")"
