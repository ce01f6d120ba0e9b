#!/usr/bin/env python3
"""`push FILE.msb` and `pull -o FILE.msb` through a registry on loopback, next to `export
--format msb` + `import` of the same chain, all in one run.

    bench/msb_registry_bench.py [--scale 1.0] [--dir /tmp/snapbundle-msb-registry-bench]

Makes a 0.6.2 home with a chain of 3 snapshots (128 MiB mixed uppers as bundlegen.py makes
them: 384 MiB; `--scale` multiplies), writes it as a `.msb` archive (`export --with-parents
--format msb`: timed, that is the file route's first half) and imports that archive into a
fresh home (the second half). Then, on Debian's `docker-registry` (127.0.0.1, plain HTTP,
storage in --dir): `push chain.msb` (the archive as it is), `pull -o` of it into a new file
(checked byte for byte against the pushed archive), and `pull` of it into a fresh store. Prints
the table and the ratios (push + pull -o) / (export + import) and (push + pull into the store) /
(export + import); the target is 1.5x. Last, the dedup check: the head's archive without its
parents' layers cannot be made by export, so the parent chain's archive (c1 with parents) is
pushed first and then the head's (c2 with parents) into the same repository: the second sends
only the head's own members.
"""
import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
import measure  # noqa: E402
from registry_bench import start_registry, timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def make_chain(snaps, n, size):
    """n snapshots, each the parent of the next; returns their directories' names."""
    names, parent = [], None
    for i in range(n):
        d = os.path.join(snaps, f"c{i}")
        os.makedirs(d)
        integ = bundlegen.write_upper(os.path.join(d, "upper.ext4"), size)
        data, digest = bundlegen.manifest(size, integ, parent)
        with open(os.path.join(d, "manifest.json"), "wb") as f:
            f.write(data)
        names.append(f"c{i}")
        parent = digest
    return names


def same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--dir", default="/tmp/snapbundle-msb-registry-bench")
    a = ap.parse_args()
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry is not installed (scripts/install-deps.sh installs it)")
    exe = measure.build_release(ROOT)
    shutil.rmtree(a.dir, ignore_errors=True)
    src = os.path.join(a.dir, "src-home")
    snaps = os.path.join(src, "snapshots")
    os.makedirs(snaps)
    size = max(MIB, int(128 * MIB * a.scale) // 4096 * 4096)
    print(f"generating: a chain of 3 x {size // MIB} MiB mixed uppers ...", flush=True)
    make_chain(snaps, 3, size)
    archive = os.path.join(a.dir, "chain.msb")
    parent_archive = os.path.join(a.dir, "parent.msb")
    proc, registry = start_registry(a.dir)
    reg = ["--plain-http", "--json"]
    scratch = ["--home", os.path.join(a.dir, "push-home")]
    try:
        t_exp, _ = timed([exe, "export", "c2", "--with-parents", "--format", "msb", "-o", archive,
                          "--home", src, "--quiet"])
        t_imp, _ = timed([exe, "import", archive, "--home", os.path.join(a.dir, "imp"), "--quiet"])
        t_push, out = timed([exe, "push", archive, f"{registry}/bench/chain:v1", "--quiet"] + scratch + reg)
        push = out["push"]
        pulled = os.path.join(a.dir, "pulled.msb")
        t_pull, pout = timed([exe, "pull", f"{registry}/bench/chain:v1", "-o", pulled, "--quiet",
                              "--home", os.path.join(a.dir, "pull-o-home")] + reg)
        identical = same(archive, pulled)
        t_store, _ = timed([exe, "pull", f"{registry}/bench/chain:v1", "--quiet",
                            "--home", os.path.join(a.dir, "pull-home")] + reg)
        # Dedup: the parent chain's archive, then the head's, into a fresh repository.
        timed([exe, "export", "c1", "--with-parents", "--format", "msb", "-o", parent_archive,
               "--home", src, "--quiet"])
        t_parent, out = timed([exe, "push", parent_archive, f"{registry}/dedup/chain:parent", "--quiet",
                               "--home", os.path.join(a.dir, "dedup-home")] + reg)
        parent = out["push"]
        t_child, out = timed([exe, "push", archive, f"{registry}/dedup/chain:child", "--quiet",
                              "--home", os.path.join(a.dir, "dedup-home")] + reg)
        child = out["push"]
    finally:
        proc.kill()
        proc.wait()
    msb_size = os.path.getsize(archive)
    print(f"\nloopback registry (docker-registry {registry}); one run each; chain of 3 x {size // MIB} MiB, "
          f".msb archive {msb_size / MIB:.1f} MiB")
    print(f"{'export --format msb':<28}{t_exp:>8.2f} s")
    print(f"{'import chain.msb':<28}{t_imp:>8.2f} s")
    print(f"{'push chain.msb':<28}{t_push:>8.2f} s   {push['uploaded']} uploaded, "
          f"{push['bytes_sent'] / MIB:.1f} MiB sent")
    print(f"{'pull -o pulled.msb':<28}{t_pull:>8.2f} s   {pout['pull']['bytes_downloaded'] / MIB:.1f} MiB "
          f"received; byte-identical to the pushed archive: {identical}")
    print(f"{'pull into a store':<28}{t_store:>8.2f} s")
    r_file = (t_push + t_pull) / (t_exp + t_imp)
    r_store = (t_push + t_store) / (t_exp + t_imp)
    print(f"\n(push + pull -o) / (export + import) = {r_file:.2f}x; "
          f"(push + pull into a store) / (export + import) = {r_store:.2f}x; target 1.5x: "
          f"{'met' if r_file <= 1.5 else 'NOT met'} (pull -o), {'met' if r_store <= 1.5 else 'NOT met'} (store)")
    own = sum(b["size"] for b in child["blobs"] if b["action"] == "uploaded")
    print(f"dedup: the parent chain's archive pushed in {t_parent:.2f} s ({parent['uploaded']} blobs, "
          f"{parent['bytes_sent'] / MIB:.1f} MiB); then the head's in {t_child:.2f} s: {child['uploaded']} uploaded "
          f"({', '.join(b['member'] for b in child['blobs'] if b['action'] == 'uploaded')}), "
          f"{child['skipped']} skipped, {own / MIB:.2f} MiB sent")
    if not identical:
        sys.exit("the pulled archive is not the pushed one")


if __name__ == "__main__":
    main()
