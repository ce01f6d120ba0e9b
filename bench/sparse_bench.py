#!/usr/bin/env python3
"""`export --sparse` against the default (dense, 0.6.2) export, and the import of both bundles,
on an 8 GiB sparse upper holding 256 MiB of data, all in one run.

    bench/sparse_bench.py [--scale 1.0] [--runs 3] [--dir /tmp/snapbundle-sparse-bench]

Two snapshots share the upper (a hard link): one records `msb-sparse-sha256-v1` integrity, the
other records none (`msb snapshot create` without `--integrity`). The recorded one is exported
twice: with `--rehash`, so export hashes all logical bytes as 0.6.2's export does, and after a
`snapbundle verify` of it, so export finds a verification record for the unchanged upper and
does not hash it again (what an upper that snapbundle imported or verified gets). A third, for reference, has an 8 GiB upper with only 4 MiB of data (the
shape of microsandbox's own measurement, 3 MB in 4 GiB) and no integrity. For each: export time,
peak RSS and bundle size with and without `--sparse`, then import time, peak RSS and allocated
bytes of each bundle; ratios dense/sparse. Median of `--runs`. `--scale` shrinks the sizes for a
quick look. Target: export with `--sparse` at least 20x faster than dense.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
from measure import allocated, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def median_run(cmd, runs, before=None):
    """Median seconds and largest peak RSS (MiB) of `runs` runs; `before` runs ahead of each."""
    times, rss = [], []
    for _ in range(runs):
        if before:
            before()
        t, r = run(cmd)
        times.append(t)
        rss.append(r)
    return statistics.median(times), max(rss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/snapbundle-sparse-bench")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "snapbundle"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "snapbundle")
    shutil.rmtree(a.dir, ignore_errors=True)
    home = os.path.join(a.dir, "src-home")
    snaps = os.path.join(home, "snapshots")
    os.makedirs(snaps)
    size = max(MIB, int(8192 * MIB * a.scale) // 4096 * 4096)
    data = max(MIB, int(256 * MIB * a.scale) // MIB * MIB)
    print(f"generating a {size / MIB:.0f} MiB upper with {data / MIB:.0f} MiB of data ...", flush=True)
    with_integrity = os.path.join(snaps, "recorded")
    bundlegen.make_snapshot(with_integrity, size, sparse_data=data)
    without = os.path.join(snaps, "none")
    os.makedirs(without)
    os.link(os.path.join(with_integrity, "upper.ext4"), os.path.join(without, "upper.ext4"))
    manifest, _ = bundlegen.manifest(size, None)
    with open(os.path.join(without, "manifest.json"), "wb") as f:
        f.write(manifest)
    stored = allocated(with_integrity)
    small = os.path.join(snaps, "small")
    bundlegen.make_snapshot(small, size, sparse_data=max(MIB, data // 64))
    with open(os.path.join(small, "manifest.json"), "wb") as f:
        f.write(bundlegen.manifest(size, None)[0])

    rows = []
    cases = (("integrity, --rehash", "recorded", ["--rehash"]),
             ("integrity, verified", "recorded", []),
             ("no integrity", "none", []),
             (f"{max(MIB, data // 64) // MIB} MiB data, none", "small", []))
    for label, name, extra in cases:
        row = {"label": label}
        if not extra and name == "recorded":
            # Verified once (as an import or `snapbundle verify` does): a record for the upper.
            subprocess.run([exe, "verify", name, "--home", home], check=True, capture_output=True)
        for mode, flags in (("dense", []), ("sparse", ["--sparse"])):
            out = os.path.join(a.dir, f"{name}-{mode}.tar.zst")
            cmd = [exe, "export", name, "-o", out, "-q", "--home", home] + flags + extra
            t, rss = median_run(cmd, a.runs)
            dst = os.path.join(a.dir, "dst-home")
            ti, rssi = median_run([exe, "import", out, "-q", "--home", dst], a.runs,
                                  before=lambda: shutil.rmtree(dst, ignore_errors=True))
            alloc = allocated(os.path.join(dst, "snapshots"))
            tar = int(subprocess.run(f"zstd -dc {out} | wc -c", shell=True, capture_output=True,
                                     text=True, check=True).stdout)
            row[mode] = dict(export_s=t, export_rss=rss, bundle=os.path.getsize(out), tar=tar,
                             import_s=ti, import_rss=rssi, alloc=alloc)
            shutil.rmtree(dst, ignore_errors=True)
        rows.append(row)

    print(f"\nupper: {size / MIB:.0f} MiB logical, {data / MIB:.0f} MiB of data ({stored / MIB:.1f} MiB allocated), "
          f"half random, half text; median of {a.runs}")
    head = (f"{'snapshot':<21} {'export':<7} {'seconds':>8} {'RSS MiB':>8} {'bundle MiB':>11} {'tar MiB':>9} | "
            f"{'import s':>9} {'RSS MiB':>8} {'alloc MiB':>10}")
    print(head)
    for r in rows:
        for mode in ("dense", "sparse"):
            m = r[mode]
            print(f"{r['label']:<21} {mode:<7} {m['export_s']:8.2f} {m['export_rss']:8.1f} {m['bundle'] / MIB:11.1f} "
                  f"{m['tar'] / MIB:9.1f} | {m['import_s']:9.2f} {m['import_rss']:8.1f} {m['alloc'] / MIB:10.1f}")
    print("\nratios (dense / sparse):")
    for r in rows:
        d, s = r["dense"], r["sparse"]
        print(f"  {r['label']:<21} export {d['export_s'] / s['export_s']:6.1f}x faster, "
              f"bundle {d['bundle'] / s['bundle']:5.2f}x smaller, tar {d['tar'] / s['tar']:6.1f}x smaller, "
              f"import {d['import_s'] / s['import_s']:5.2f}x faster")
    print("\ntargets:")
    for r in rows:
        ratio = r["dense"]["export_s"] / r["sparse"]["export_s"]
        print(f"  export --sparse >= 20x faster than dense ({r['label']}): {ratio:.1f}x "
              f"{'met' if ratio >= 20 else 'NOT met'}")
    worst = max(max(r[m]["export_rss"], r[m]["import_rss"]) for r in rows for m in ("dense", "sparse"))
    print(f"  peak RSS < 64 MiB: {worst:.1f} MiB {'met' if worst < 64 else 'NOT met'}")
    with open(os.path.join(a.dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
