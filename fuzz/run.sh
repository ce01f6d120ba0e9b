#!/usr/bin/env bash
# Fuzz campaign driver (not part of CI; CI replays tests/regressions/ instead).
#
#   fuzz/run.sh [SECONDS] [TARGET...]    run each target (default: all ten) for SECONDS (default 60)
#   fuzz/run.sh --install                only install cargo-fuzz (pinned) if missing
#
# - installs cargo-fuzz 0.13.1 with the nightly toolchain if it is missing (idempotent);
# - builds the seeds: the 0.6.2 reference bundles (tests/fixtures), the hostile-input corpus
#   (regenerated with `cargo test -p snapbundle-tests --test corpus`, written to target/corpus),
#   their decompressed tar streams when small, and the manifest / cache metadata JSON inside them;
#   the microsandbox 0.7.13 .msb archives (tests/fixtures/microsandbox-0.7.13) as plain tars, their
#   GNU long-name variants, and their archive.json / snapshot.json members;
# - runs the targets one at a time under `nice -n 19` with libFuzzer's limits (10 s per input,
#   1 GiB RSS, 256 MiB per malloc) and the harness's own allocation bound (fuzz/src/lib.rs);
# - prints one line per target: executions, exec/s, coverage (edges) and features, corpus size,
#   and appends it to fuzz/logs/campaign.tsv (the running totals are summed by --totals).
#
#   fuzz/run.sh --totals                 sum executions per target over every logged run
#
# A crash leaves its input in fuzz/artifacts/<target>/; fix the bug, then copy the input to
# tests/regressions/ (see tests/regressions/README.md) so that `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$PWD
ROOT=$(cd .. && pwd)
CARGO_FUZZ_VERSION=0.13.1
# The core forbids unsafe code, so AddressSanitizer finds little and costs 2-3x: off by default
# (SANITIZER=address fuzz/run.sh ... to turn it on).
SANITIZER=${SANITIZER:-none}
# Niceness of the fuzzers (19: they only take idle CPU; NICE=0 on a machine of their own).
NICE=${NICE:-19}
ALL_TARGETS=(tar_walker manifest cache_meta validator_zstd validator_tar msb_inventory msb_descriptor msb_validator
  msb_released_inventory msb_released_descriptor)

install() {
  if cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then return 0; fi
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}

totals() {
  [[ -f logs/campaign.tsv ]] || { echo "no runs logged yet"; return 0; }
  awk -F'\t' '{ex[$2]+=$3; s[$2]+=$4; cov[$2]=$6; ft[$2]=$7; n[$2]++}
    END {for (t in ex) printf "%-15s %3d runs %12d execs %7d s  last cov %s ft %s\n", t, n[t], ex[t], s[t], cov[t], ft[t]}' \
    logs/campaign.tsv | sort
}

case "${1:-}" in
  --install) install; exit 0 ;;
  --totals) totals; exit 0 ;;
  -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
esac

SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")

install

seeds() {
  rm -rf seeds
  mkdir -p seeds/{tar_walker,manifest,cache_meta,validator_zstd,validator_tar,msb_inventory,msb_descriptor,msb_validator,msb_released_inventory,msb_released_descriptor}
  local corpus="$ROOT/target/corpus"
  if [[ ! -d $corpus ]]; then
    (cd "$ROOT" && nice -n 19 cargo test -q -p snapbundle-tests --test corpus -- --exact corpus_generate >/dev/null) || echo "run.sh: corpus not generated; seeding from the fixtures only" >&2
  fi
  local f base
  for f in "$ROOT"/tests/fixtures/microsandbox-0.6.2/*.tar* "$corpus"/*/*.bundle "$ROOT"/tests/regressions/*; do
    [[ -f $f && $f != *.json && $f != *.md ]] || continue
    base=$(basename "$f")
    if [[ $(head -c4 "$f" | od -An -tx1 | tr -d ' \n') == 28b52ffd ]]; then
      cp "$f" "seeds/validator_zstd/$base"
      # The tar inside, when small enough to be a useful seed.
      if zstd -dc "$f" 2>/dev/null | head -c 262145 >"seeds/tmp.tar" && (($(stat -c %s seeds/tmp.tar) <= 262144)); then
        cp seeds/tmp.tar "seeds/validator_tar/$base.tar"
        cp seeds/tmp.tar "seeds/tar_walker/$base.tar"
      fi
      rm -f seeds/tmp.tar
    elif (($(stat -c %s "$f") <= 262144)); then
      cp "$f" "seeds/validator_tar/$base"
      cp "$f" "seeds/tar_walker/$base"
    fi
  done
  # JSON documents inside the bundles: snapshot manifests and image-cache metadata.
  python3 - "$ROOT" <<'PY'
import io, os, sys, tarfile, subprocess, glob, hashlib
root = sys.argv[1]
paths = glob.glob(f"{root}/tests/fixtures/microsandbox-0.6.2/*.tar*") + glob.glob(f"{root}/target/corpus/*/*.bundle")
seen = set()
for p in sorted(paths):
    data = open(p, "rb").read()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        r = subprocess.run(["zstd", "-dc"], input=data, capture_output=True)
        data = r.stdout
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
            for m in t:
                if not m.isfile() or m.size > 1 << 20:
                    continue
                kind = "manifest" if m.name.endswith("/manifest.json") else "cache_meta" if m.name.startswith("cache/manifests/") else None
                # Released (0.6.7 - 0.6.16) archives of the corpus: their inventories and descriptors.
                if "/m2-released/" in p:
                    kind = "msb_released_inventory" if m.name == "archive.json" else "msb_released_descriptor" if m.name.endswith("/snapshot.json") else None
                if kind is None:
                    continue
                body = t.extractfile(m).read()
                h = hashlib.sha256(body).hexdigest()[:16]
                if (kind, h) in seen:
                    continue
                seen.add((kind, h))
                open(f"seeds/{kind}/{h}.json", "wb").write(body)
    except Exception:
        pass
PY
  # The 0.7.13 .msb archives: plain tar streams (msb_validator), the same with a GNU `././@LongLink`
  # record before every member (name field kept whole, or cut to a prefix), and the inventories and
  # descriptors inside them (msb_inventory, msb_descriptor).
  python3 - "$ROOT" <<'PY'
import glob, hashlib, os, subprocess, sys
root = sys.argv[1]

def octal(field):
    field = field.split(b"\0")[0].strip()
    return int(field or b"0", 8)

def checksum(h):
    h = h[:148] + b" " * 8 + h[156:]
    return h[:148] + b"%06o\0 " % sum(h) + h[156:]

def records(tar):
    """(header, extension blocks, data incl. padding, name) per member, then the rest."""
    out, at = [], 0
    while at + 512 <= len(tar) and any(tar[at:at + 512]):
        h = tar[at:at + 512]
        name = h[:100].split(b"\0")[0]
        ext, at2 = b"", at + 512
        if h[156:157] == b"S" and h[482]:
            while True:
                e = tar[at2:at2 + 512]
                ext += e
                at2 += 512
                if not e[504]:
                    break
        size = octal(h[124:136])
        end = at2 + (size + 511) // 512 * 512
        out.append((h, ext, tar[at2:end], name))
        at = end
    return out, tar[at:]

def long_link(name):
    data = name + b"\0"
    h = bytearray(512)
    h[:13] = b"././@LongLink"
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % len(data)
    h[136:148] = b"00000000000\0"
    h[156] = ord("L")
    h[257:265] = b"ustar  \0"
    h = checksum(bytes(h))
    return h + data + b"\0" * (-len(data) % 512)

def with_long_names(tar, cut):
    members, rest = records(tar)
    out = b""
    for h, ext, data, name in members:
        short = name[:cut] if cut else name
        h = checksum(short + b"\0" * (100 - len(short)) + h[100:])
        out += long_link(name) + h + ext + data
    return out + rest

def put(kind, name, body):
    open(f"seeds/{kind}/{name}", "wb").write(body)

seen = set()
for p in sorted(glob.glob(f"{root}/tests/fixtures/microsandbox-0.7.13/*.msb")):
    base = os.path.basename(p)[:-4]
    data = open(p, "rb").read()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True).stdout
    put("msb_validator", f"{base}.tar", data)
    try:
        members, _ = records(data)
    except Exception:
        continue
    if base != "neg-truncated":
        put("msb_validator", f"{base}.longlink.tar", with_long_names(data, 0))
        # Cut after the snapshot id's slash (a name field as the tar crate would cut a longer
        # name: the generation is still visible), and cut before it (only the long name says G3).
        put("msb_validator", f"{base}.longlink-cut48.tar", with_long_names(data, 48))
        put("msb_validator", f"{base}.longlink-cut9.tar", with_long_names(data, 9))
    for h, ext, body, name in members:
        body = body[:octal(h[124:136])]
        kind = "msb_inventory" if name == b"archive.json" else "msb_descriptor" if name.endswith(b"/snapshot.json") else None
        digest = hashlib.sha256(body).hexdigest()[:16]
        if kind and (kind, digest) not in seen and not ext:
            seen.add((kind, digest))
            put(kind, f"{base}.{digest}.json", body)
PY
}

seeds
mkdir -p logs
printf 'seeds:'; for t in "${ALL_TARGETS[@]}"; do printf ' %s=%s' "$t" "$(ls "seeds/$t" | wc -l)"; done; echo

# Build once, then run the binaries directly: the campaign fuzzes one fixed build even if the
# tree changes while it runs.
nice -n 19 cargo +nightly fuzz build -O -s "$SANITIZER" >/dev/null 2>logs/build.log \
  || { cat logs/build.log >&2; exit 1; }
BIN_DIR=target/x86_64-unknown-linux-gnu/release
mkdir -p bin
for t in "${TARGETS[@]}"; do cp "$BIN_DIR/$t" "bin/$t"; done
echo "built at $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet -- core || echo '+uncommitted core changes')"

for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  case $t in
    manifest|cache_meta|msb_inventory|msb_descriptor|msb_released_*) max_len=65536 ;;
    # The largest 0.7.13 archive is a 273 408-byte tar (its long-name variant 275 456).
    msb_validator) max_len=327680 ;;
    *) max_len=262144 ;;
  esac
  log="logs/$t.$(date +%Y%m%dT%H%M%S).log"
  t0=$SECONDS
  set +e
  nice -n "$NICE" "bin/$t" "corpus/$t" "seeds/$t" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
    -max_len=$max_len -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  # A run that crashed at once prints no status line: no match is not an error of this script.
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  line=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$line" | grep -o '[0-9]*' || echo 0)
  ft=$(grep -o 'ft: [0-9]*' <<<"$line" | grep -o '[0-9]*' || echo 0)
  corp=$(grep -o 'corp: [0-9]*' <<<"$line" | grep -o '[0-9]*' || echo 0)
  secs=$((SECONDS - t0))
  execs=${execs:-0}
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$execs" "$secs" "$rc" "$cov" "$ft" "$corp" >>logs/campaign.tsv
  printf '%-15s rc=%d %12d execs in %5d s (%d/s)  cov %s  ft %s  corpus %s  log %s\n' \
    "$t" "$rc" "$execs" "$secs" "$((execs / (secs > 0 ? secs : 1)))" "$cov" "$ft" "$corp" "$log"
  if ((rc != 0)); then
    echo "  $t FAILED: see $log and fuzz/artifacts/$t/"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/  /'
  fi
done
totals
