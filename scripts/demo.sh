#!/usr/bin/env bash
# The main job on the built-in sample: bundles written by real microsandbox 0.6.2 (a chain of
# three snapshots, and a snapshot with its image cache) are inspected, imported into a scratch
# home, verified, listed, exported again and re-imported elsewhere, taken through a microsandbox
# 0.7 .msb archive and back; a hostile bundle is refused.
# Every step checks what it shows: the script exits non-zero if anything differs from what it
# says (scripts/test.sh runs it, so a broken demo fails the tests).
#
#   scripts/demo.sh                 builds snapbundle in release mode first
#   scripts/demo.sh --profile test  uses the debug binary cargo test built (scripts/test.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [[ ${1:-} == --profile ]]; then
  profile=${2:?--profile needs release or test}
fi
sb=$(scripts/cargo-bin.sh "$profile")
samples=$PWD/tests/fixtures/microsandbox-0.6.2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Paths in what is shown: the scratch directory as $WORK, the samples and the binary by name.
shorten() { sed "s|$work|\$WORK|g; s|$samples/||g; s|$sb|snapbundle|g"; }
run() {
  printf '\n$ %s\n' "$*" | shorten
  "$@" 2>&1 | shorten
  return "${PIPESTATUS[0]}"
}
fail() {
  echo "demo: FAILED: $*" >&2
  exit 1
}

run "$sb" inspect "$samples/b-chain3-with-parents.tar.zst"
run "$sb" import -q "$samples/b-chain3-with-parents.tar.zst" --home "$work/home"
run "$sb" import -q "$samples/d-with-image-2layers.tar.zst" --home "$work/home"
run "$sb" list --home "$work/home"
run "$sb" verify sha256:d04c4f19 --home "$work/home"
echo
echo "# holes are kept: apparent size versus allocated bytes of the imported upper"
upper=$work/home/snapshots/sha256-d04c4f19cad63ec5/upper.ext4
du -h --apparent-size "$upper" | shorten
du -h "$upper" | shorten
apparent=$(stat -c %s "$upper")
allocated=$(($(stat -c %b "$upper") * $(stat -c %B "$upper")))
((allocated < apparent)) || fail "the imported upper is not sparse ($allocated of $apparent bytes allocated)"
run "$sb" export sha256:d04c4f19 --with-parents -q -o "$work/chain.tar.zst" --home "$work/home"
run "$sb" export sha256-c27360927b4bb0c3 --with-image -q -o "$work/image.tar.zst" --home "$work/home"
run "$sb" import -q "$work/chain.tar.zst" --home "$work/other-home"
run "$sb" import -q "$work/image.tar.zst" --home "$work/other-home"
echo
echo "# the re-imported store holds the same files, byte for byte: every file under snapshots/ and"
echo "# cache/ except cache/snapbundle/ (snapbundle's own records: named by inode, so they differ"
echo "# between two homes by design); these homes have no microsandbox index (db/msb.db) to compare"
store_sums() {
  (cd "$1" && find snapshots cache -path cache/snapbundle -prune -o -type f -print0 | sort -z |
    xargs -0 sha256sum)
}
store_sums "$work/home" > "$work/a.sum"
store_sums "$work/other-home" > "$work/b.sum"
[[ -s $work/a.sum ]] || fail "the first home holds no files"
if cmp -s "$work/a.sum" "$work/b.sum"; then
  echo "identical: $(wc -l < "$work/a.sum") files"
else
  diff "$work/a.sum" "$work/b.sum" || true
  fail "the re-imported store differs"
fi
echo
echo "# across generations: the chain as a microsandbox 0.7 .msb archive (what 0.7.13 makes of it),"
echo "# validated, imported back into a 0.6.2 home through the conversion, same files again"
run "$sb" export sha256:d04c4f19 --with-parents --format msb -q -o "$work/chain.msb" --home "$work/home"
run "$sb" verify "$work/chain.msb"
run "$sb" convert "$work/chain.msb" --to 0.6.2 -q -o "$work/chain-again.tar.zst"
run "$sb" import -q "$work/chain.msb" --home "$work/msb-home"
for d in "$work"/home/snapshots/sha256-*; do
  [[ -d $d ]] || continue
  n=$(basename "$d")
  [[ $n == sha256-c27360927b4bb0c3 ]] && continue
  cmp -s "$d/manifest.json" "$work/msb-home/snapshots/$n/manifest.json" || fail "$n: the manifest changed on the way through 0.7"
  cmp -s "$d/upper.ext4" "$work/msb-home/snapshots/$n/upper.ext4" || fail "$n: the upper changed on the way through 0.7"
done
echo "the three snapshots came back byte for byte"
echo
echo "# a hostile bundle is refused with the entry and the reason, and nothing is written"
before=$(cd "$work/home" && find . | sort | sha256sum)
status=0
run "$sb" import "$samples/r-dotdot-path.tar.zst" --home "$work/home" || status=$?
echo "exit status: $status"
((status == 1)) || fail "the hostile bundle was not refused as invalid (exit $status, expected 1)"
after=$(cd "$work/home" && find . | sort | sha256sum)
[[ $before == "$after" ]] || fail "the refused import changed the home"
echo "the home is unchanged"
echo
echo "demo: ok"
