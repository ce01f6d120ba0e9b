#!/usr/bin/env bash
# Install the Debian packages snapbundle needs (Debian 12 "bookworm", run as root).
#
#   scripts/install-deps.sh           install whatever is missing (idempotent)
#   scripts/install-deps.sh --check   only report; exit 1 if anything is missing
#
# Packages:
#   rustc-web cargo-web rust-web-src lld-22   wasm toolchain (rustc/cargo 1.96 in /usr/bin, the
#                                             library source for -Zbuild-std, wasm-ld-22);
#                                             these come from bookworm-security
#   zstd e2fsprogs qemu-utils hyperfine       fixtures / image tooling / benchmarks
#   chromium                                  the validation page's browser test (wasm/js-tests)
#   docker-registry apache2-utils openssl     the registry tests (host/tests/registry.rs): the CNCF
#                                             distribution registry, htpasswd -B, a self-signed cert
#   libssl-dev pkg-config                     the registry client's TLS (native-tls: system OpenSSL)
#   python3                                   only if no python3 is on PATH at all
#
# When everything is already present it makes no network access and takes well under a second.
# It runs `apt-get update` only when it actually has to install something.
# Output: one line per package installed (plus errors). Full apt output is kept in a log file that
# is shown (tail) on failure.
set -euo pipefail

PKGS=(rustc-web cargo-web rust-web-src lld-22 zstd e2fsprogs qemu-utils hyperfine time chromium
      docker-registry apache2-utils openssl libssl-dev pkg-config)
MIN_RUSTC_MINOR=88   # workspace rust-version = 1.88 (sha2 0.11); bookworm's plain rustc-web 1.85 is too old

CHECK_ONLY=0
case "${1:-}" in
  --check) CHECK_ONLY=1 ;;
  "") ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "install-deps: unknown argument '$1' (use --check or nothing)" >&2; exit 2 ;;
esac

die() { echo "install-deps: ERROR: $*" >&2; exit 1; }

# --- what is missing? (one dpkg-query call: fast) ------------------------------------------
missing=()
installed_list=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PKGS[@]}" 2>/dev/null || true)
for p in "${PKGS[@]}"; do
  # "ii " = desired install, currently installed
  if ! grep -qE "^${p} ii" <<<"$installed_list"; then missing+=("$p"); fi
done
if ! command -v python3 >/dev/null 2>&1; then missing+=(python3); fi

# Post-conditions the build scripts rely on (checked even when nothing needs installing).
verify() {
  local problems=()
  [[ -x /usr/bin/cargo ]] || problems+=("/usr/bin/cargo missing (package cargo-web)")
  [[ -x /usr/bin/rustc ]] || problems+=("/usr/bin/rustc missing (package rustc-web)")
  command -v wasm-ld-22 >/dev/null 2>&1 || problems+=("wasm-ld-22 not on PATH (package lld-22)")
  [[ -d /usr/lib/rustlib/src/rust/library ]] \
    || problems+=("/usr/lib/rustlib/src/rust/library missing (package rust-web-src; needed by -Zbuild-std)")
  if [[ -x /usr/bin/rustc ]]; then
    local v minor
    v=$(/usr/bin/rustc --version 2>/dev/null | awk '{print $2}')
    minor=$(cut -d. -f2 <<<"$v")
    if [[ -z "$minor" || "$minor" -lt "$MIN_RUSTC_MINOR" ]]; then
      problems+=("/usr/bin/rustc is '$v', need >= 1.$MIN_RUSTC_MINOR. rustc-web 1.96 comes from bookworm-security:
    add 'deb http://deb.debian.org/debian-security bookworm-security main' to the apt sources and rerun")
    fi
  fi
  for c in zstd mke2fs qemu-img hyperfine python3 docker-registry htpasswd openssl; do
    command -v "$c" >/dev/null 2>&1 || problems+=("command '$c' not found")
  done
  if ((${#problems[@]})); then
    printf 'install-deps: ERROR: %s\n' "${problems[@]}" >&2
    return 1
  fi
}

if ((${#missing[@]} == 0)); then
  verify || exit 1
  exit 0
fi

if ((CHECK_ONLY)); then
  echo "install-deps: missing: ${missing[*]}"
  exit 1
fi

[[ $(id -u) -eq 0 ]] || die "must run as root to install: ${missing[*]} (this script does not use sudo)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found; this script supports Debian 12 only"

LOG=$(mktemp /tmp/install-deps.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
# Wait (up to 10 min) instead of failing if another apt/dpkg run holds the lock.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -q -y)

fail_with_log() {
  echo "install-deps: ERROR: $1 (last lines of $LOG follow)" >&2
  tail -n 25 "$LOG" >&2
  exit 1
}

# apt-get update has no lock timeout of its own; retry a few times if the lists lock is busy.
updated=0
for attempt in 1 2 3 4 5 6; do
  if apt-get "${APT_OPTS[@]}" update >>"$LOG" 2>&1; then updated=1; break; fi
  if grep -q 'Could not get lock' "$LOG"; then sleep 10; else break; fi
done
((updated)) || fail_with_log "apt-get update failed"

# Fail early and clearly if a package has no install candidate (e.g. bookworm-security missing).
for p in "${missing[@]}"; do
  cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z "$cand" || "$cand" == "(none)" ]]; then
    rm -f "$LOG"
    die "package '$p' is not available from the configured apt sources (rustc-web/cargo-web/rust-web-src/lld-22 need bookworm-security)"
  fi
done

apt-get "${APT_OPTS[@]}" install "${missing[@]}" >>"$LOG" 2>&1 \
  || fail_with_log "apt-get install ${missing[*]} failed"

for p in "${missing[@]}"; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?')
  echo "installed $p $v"
done

verify || exit 1
rm -f "$LOG"
