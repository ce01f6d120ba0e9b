#!/usr/bin/env python3
"""Validation throughput and peak memory of `snapbundle verify` on a 1 GiB mixed bundle,
next to `zstd -dc | sha256sum` (decompress and hash, checking nothing) in the same run.

    bench/verify_bench.py [--size-mib 1024] [--runs 3] [--dir /tmp/snapbundle-bench]

Prints a table (median of the runs) and the ratios. Targets: peak RSS < 64 MiB; throughput
at least 0.8x the baseline pipeline.
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
import measure  # noqa: E402
from measure import run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/snapbundle-bench")
    a = ap.parse_args()
    exe = measure.build_release(ROOT)
    os.makedirs(a.dir, exist_ok=True)
    bundle = os.path.join(a.dir, f"mixed-{a.size_mib}m.tar.zst")
    size = a.size_mib << 20
    if not os.path.exists(bundle):
        print(f"generating {a.size_mib} MiB mixed snapshot and bundle in {a.dir} ...", flush=True)
        snap = os.path.join(a.dir, f"mixed-{a.size_mib}m")
        bundlegen.make_snapshot(snap, size)
        bundlegen.make_bundle([snap], bundle)
    tar_bytes = int(subprocess.run(f"zstd -dc {bundle} | wc -c", shell=True, capture_output=True, text=True).stdout)
    cases = {
        "zstd -dc | sha256sum": (f"zstd -dc {bundle} | sha256sum", True),
        "snapbundle verify": ([exe, "verify", "-q", bundle], False),
    }
    results = {}
    for name, (cmd, shell) in cases.items():
        times, rss = [], []
        for _ in range(a.runs):
            dt, peak = run(cmd, shell)
            times.append(dt)
            rss.append(peak)
        results[name] = (statistics.median(times), max(rss))
    base_t = results["zstd -dc | sha256sum"][0]
    print(f"\nbundle: {os.path.getsize(bundle) / 2**20:.1f} MiB compressed, {tar_bytes / 2**20:.1f} MiB tar; median of {a.runs}")
    print(f"{'case':<24} {'seconds':>8} {'MB/s (tar)':>11} {'peak RSS':>10} {'speed vs baseline':>18}")
    for name, (t, peak) in results.items():
        note = "" if "sha256sum" not in name else " (pipeline: largest stage)"
        print(f"{name:<24} {t:8.2f} {tar_bytes / t / 1e6:11.0f} {peak:8.1f} MiB {base_t / t:17.2f}x{note}")
    v_t, v_rss = results["snapbundle verify"]
    print(f"\ntargets: throughput >= 0.8x baseline: {'met' if base_t / v_t >= 0.8 else 'NOT met'} ({base_t / v_t:.2f}x); "
          f"peak RSS < 64 MiB: {'met' if v_rss < 64 else 'NOT met'} ({v_rss:.1f} MiB)")


if __name__ == "__main__":
    main()
