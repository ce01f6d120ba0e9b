#!/usr/bin/env bash
# The main job on the built-in sample: bundles written by real microsandbox 0.6.2 (a chain of
# three snapshots, and a snapshot with its image cache) are inspected, imported into a scratch
# home, verified, listed, exported again and re-imported elsewhere; a hostile bundle is refused.
#
#   scripts/demo.sh            (builds snapbundle in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p snapbundle
sb=$PWD/target/release/snapbundle
samples=$PWD/tests/fixtures/microsandbox-0.6.2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
  printf '\n$ %s\n' "$*" | sed "s|$work|\$WORK|g; s|$sb|snapbundle|g; s|$samples/||g"
  "$@" 2>&1 | sed "s|$work|\$WORK|g"
}

run "$sb" inspect "$samples/b-chain3-with-parents.tar.zst"
run "$sb" import -q "$samples/b-chain3-with-parents.tar.zst" --home "$work/home"
run "$sb" import -q "$samples/d-with-image-2layers.tar.zst" --home "$work/home"
run "$sb" list --home "$work/home"
run "$sb" verify sha256:d04c4f19 --home "$work/home"
echo
echo "# holes are kept: apparent size versus allocated bytes of the imported upper"
du -h --apparent-size "$work/home/snapshots/sha256-d04c4f19cad63ec5/upper.ext4" | sed "s|$work|\$WORK|"
du -h "$work/home/snapshots/sha256-d04c4f19cad63ec5/upper.ext4" | sed "s|$work|\$WORK|"
run "$sb" export sha256:d04c4f19 --with-parents -q -o "$work/chain.tar.zst" --home "$work/home"
run "$sb" export sha256-c27360927b4bb0c3 --with-image -q -o "$work/image.tar.zst" --home "$work/home"
run "$sb" import -q "$work/chain.tar.zst" --home "$work/other-home"
run "$sb" import -q "$work/image.tar.zst" --home "$work/other-home"
echo
echo "# the re-imported store holds the same files, byte for byte"
(cd "$work/home" && find snapshots cache -type f -print0 | sort -z | xargs -0 sha256sum) > "$work/a.sum"
(cd "$work/other-home" && find snapshots cache -type f -print0 | sort -z | xargs -0 sha256sum) > "$work/b.sum"
if cmp -s "$work/a.sum" "$work/b.sum"; then echo "identical: $(wc -l < "$work/a.sum") files"; else diff "$work/a.sum" "$work/b.sum"; exit 1; fi
echo
echo "# a hostile bundle is refused with the entry and the reason, and nothing is written"
set +e
run "$sb" import "$samples/r-dotdot-path.tar.zst" --home "$work/home"
echo "exit status: ${PIPESTATUS[0]}"
