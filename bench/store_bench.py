#!/usr/bin/env python3
"""Import and export: wall time, peak RSS and bytes allocated on disk, next to plain
`zstd -dc | tar -x` + `sha256sum` of the extracted files (which checks nothing) and
`tar -c | zstd -3`, on the same inputs in the same run.

    bench/store_bench.py [--scale 1.0] [--dir /tmp/snapbundle-store-bench]

Inputs: (1) a 2 GiB upper of mixed data (random, zero, text blocks); (2) an 8 GiB sparse upper
with 256 MiB of data; (3) a chain of 3 snapshots (256 MiB mixed each). `--scale` shrinks every
size for a quick look. Targets: import <= 1.0x the extract-then-hash baseline on (1); on (2)
allocated bytes <= 1.1x the data; peak RSS < 64 MiB everywhere.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
import measure  # noqa: E402
from measure import allocated, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--dir", default="/tmp/snapbundle-store-bench")
    a = ap.parse_args()
    exe = measure.build_release(ROOT)
    shutil.rmtree(a.dir, ignore_errors=True)
    src_home = os.path.join(a.dir, "src-home")
    snaps = os.path.join(src_home, "snapshots")
    os.makedirs(snaps)
    s = lambda n: max(MIB, int(n * a.scale) // 4096 * 4096)  # noqa: E731
    print("generating inputs ...", flush=True)
    inputs = {}
    bundlegen.make_snapshot(os.path.join(snaps, "mixed"), s(2048 * MIB))
    inputs["(1) 2 GiB mixed"] = ("mixed", [], s(2048 * MIB))
    data = s(256 * MIB)
    bundlegen.make_snapshot(os.path.join(snaps, "sparse"), s(8192 * MIB), sparse_data=data)
    inputs["(2) 8 GiB sparse"] = ("sparse", [], data)
    parent = None
    chain = []
    for i in range(3):
        parent = bundlegen.make_snapshot(os.path.join(snaps, f"chain{i}"), s(256 * MIB), parent=parent)
        chain.append(f"chain{i}")
    inputs["(3) chain of 3"] = ("chain2", ["--with-parents"], 3 * s(256 * MIB))

    rows = []
    for label, (name, flags, data_bytes) in inputs.items():
        out = os.path.join(a.dir, f"{name}.tar.zst")
        t_exp, rss_exp = run([exe, "export", name, "-o", out, "-q", "--home", src_home] + flags)
        dirs = " ".join(chain if name == "chain2" else [name])
        t_tar, _ = run(f"tar -C {snaps} -c {dirs} | zstd -q -3 -T0 > {a.dir}/baseline.tar.zst", shell=True)
        home = os.path.join(a.dir, "dst-home")
        shutil.rmtree(home, ignore_errors=True)
        t_imp, rss_imp = run([exe, "import", out, "-q", "--home", home])
        alloc_imp = allocated(home)
        x = os.path.join(a.dir, "extract")
        shutil.rmtree(x, ignore_errors=True)
        os.makedirs(x)
        t_x, _ = run(f"zstd -dc {out} | tar -x -C {x} && find {x} -type f -exec sha256sum {{}} + > /dev/null", shell=True)
        alloc_x = allocated(x)
        rows.append((label, t_exp, t_tar, rss_exp, t_imp, t_x, rss_imp, alloc_imp, alloc_x, data_bytes,
                     os.path.getsize(out)))
        shutil.rmtree(x, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)

    print(f"\n{'input':<18} {'export s':>9} {'tar|zstd s':>10} {'ratio':>6} {'RSS MiB':>8} | "
          f"{'import s':>9} {'x+hash s':>9} {'ratio':>6} {'RSS MiB':>8} {'alloc MiB':>10} {'baseline':>9} {'data MiB':>9}")
    for (label, te, tt, re, ti, tx, ri, ai, ax, d, size) in rows:
        print(f"{label:<18} {te:9.2f} {tt:10.2f} {te / tt:5.2f}x {re:8.1f} | "
              f"{ti:9.2f} {tx:9.2f} {ti / tx:5.2f}x {ri:8.1f} {ai / MIB:10.1f} {ax / MIB:9.1f} {d / MIB:9.1f}")
    r1 = rows[0]
    r2 = rows[1]
    print("\ntargets:")
    print(f"  import on (1) <= 1.0x extract-then-hash: {r1[4] / r1[5]:.2f}x "
          f"{'met' if r1[4] <= r1[5] else 'NOT met'}")
    print(f"  allocated on (2) <= 1.1x data: {r2[7] / r2[9]:.2f}x {'met' if r2[7] <= 1.1 * r2[9] else 'NOT met'}")
    worst = max(max(r[3], r[6]) for r in rows)
    print(f"  peak RSS < 64 MiB: {worst:.1f} MiB {'met' if worst < 64 else 'NOT met'}")


if __name__ == "__main__":
    main()
