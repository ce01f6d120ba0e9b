#!/usr/bin/env python3
"""Import (and verify) throughput against one pass of the work they cannot avoid, in one run.

    bench/import_bench.py [--scale 1.0] [--runs 3] [--dir /tmp/snapbundle-import-bench]
                          [--exe path/to/snapbundle] [--baseline-exe path/to/snapbundle]
                          [--only sparse1g,dense64m,sparse8g,verify1g] [--keep]

Cases (`--only` takes their names or numbers, comma separated):
  1 sparse1g  a 1 GiB logical upper holding 16 MiB of data (1 MiB runs, half random, half text),
              `msb-sparse-sha256-v1` recorded, exported as a dense 0.6.2 bundle (plain `export`:
              the zeros are in the tar). Rows: `snapbundle import`, `snapbundle verify` of the
              bundle, and the baseline `openssl dgst -sha256` of the upper (one SHA-256 pass over
              the 1 GiB logical stream). Target: import <= 1.3x the baseline.
  2 dense64m  a 64 MiB mixed upper (random, zero, text), dense bundle. Rows: import, and the
              baseline `zstd -dc BUNDLE > FILE && sync FILE` (a fresh FILE every run, removed
              outside the timing). Target: import <= 1.3x the baseline.
  3 sparse8g  an 8 GiB logical upper with 256 MiB of data, `export --sparse`. Rows: import, and
              `openssl dgst -sha256` of the 8 GiB logical upper. Target: import <= 1.2x.
  4 verify1g  a 1 GiB mixed upper bundle (as verify_bench.py). Rows: `snapbundle verify` with
              --exe and with --baseline-exe (default /work/bench-baseline/snapbundle when it
              exists, else the row is skipped). Target: --exe >= 1.5x faster than the baseline.
Every import goes into a fresh --home (the previous one removed outside the timing); its peak
RSS and the allocated bytes of the imported upper, next to the upper's data, are printed (holes
kept: allocated ~ data). Target: peak RSS <= 32 MiB for every import. The rows of a case
alternate run after run (so a job sharing the machine weighs on all alike); median of --runs,
largest peak RSS. The page cache is warm (inputs were just written, then `sync`; no
drop_caches). `--scale` shrinks every size for a quick look. Generated inputs and imported
homes are removed at the end (unless --keep); results.json stays in --dir.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
import measure  # noqa: E402
from measure import run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
CASES = ("sparse1g", "dense64m", "sparse8g", "verify1g")
TITLES = {"sparse1g": "(1) sparse 1 GiB", "dense64m": "(2) dense 64 MiB mixed",
          "sparse8g": "(3) sparse 8 GiB", "verify1g": "(4) verify 1 GiB mixed"}
DEFAULT_BASELINE = "/work/bench-baseline/snapbundle"
INTEGRITY = "msb-sparse-sha256-v1"
WARM_BUF = bytearray(MIB)


def fresh(path):
    """A hook that removes `path` (file or directory), so each timed run writes anew."""
    def hook():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    return hook


def interleaved(rows, runs):
    """rows: name -> (cmd, before hook or None, after hook or None). Runs every row once per
    round, `runs` rounds; the hooks run outside the timing. Returns name -> (median seconds,
    largest peak RSS in MiB, all seconds)."""
    times = {k: [] for k in rows}
    rss = {k: [] for k in rows}
    for _ in range(runs):
        for k, (cmd, before, after) in rows.items():
            if before:
                before()
            t, r = run(cmd, shell=isinstance(cmd, str))
            times[k].append(t)
            rss[k].append(r)
            if after:
                after()
    return {k: (statistics.median(times[k]), max(rss[k]), times[k]) for k in rows}


def imported_upper_alloc(home):
    """Allocated bytes of the uppers imported into `home` (every upper.ext4 under snapshots/)."""
    total, found = 0, 0
    for dp, _, files in os.walk(os.path.join(home, "snapshots")):
        for f in files:
            if f == "upper.ext4":
                total += os.lstat(os.path.join(dp, f)).st_blocks * 512
                found += 1
    if not found:
        sys.exit(f"no imported upper.ext4 under {home}/snapshots")
    return total


def tar_bytes(bundle):
    out = subprocess.run(f"zstd -dc {bundle} | wc -c", shell=True, capture_output=True, text=True, check=True)
    return int(out.stdout)


def make_input(cdir, name, size, sparse_data=None, export_flags=(), exe=None, bundlegen_bundle=False):
    """Generates snapshot `name` in cdir/src-home and its bundle (by `snapbundle export` with
    `export_flags`, or by bundlegen); returns a dict describing them."""
    snaps = os.path.join(cdir, "src-home", "snapshots")
    snap = os.path.join(snaps, name)
    bundlegen.make_snapshot(snap, size, sparse_data=sparse_data)
    with open(os.path.join(snap, "manifest.json")) as f:
        algo = ((json.load(f).get("upper") or {}).get("integrity") or {}).get("algorithm")
    if algo != INTEGRITY:
        sys.exit(f"{snap}: the upper's integrity is {algo!r}, not {INTEGRITY}")
    bundle = os.path.join(cdir, f"{name}.tar.zst")
    if bundlegen_bundle:
        bundlegen.make_bundle([snap], bundle)
    else:
        p = subprocess.run([exe, "export", name, "-o", bundle, "-q", "--home", os.path.join(cdir, "src-home")]
                           + list(export_flags), capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"export of {name} failed ({p.returncode}):\n{p.stderr}")
    upper = os.path.join(snap, "upper.ext4")
    return dict(upper=upper, logical=size, data=bundlegen.data_bytes(size, sparse_data=sparse_data),
                src_alloc=os.lstat(upper).st_blocks * 512,
                bundle=bundle, bundle_bytes=os.path.getsize(bundle), tar=tar_bytes(bundle), algo=algo)


def warm(path):
    """Reads `path` once (untimed), so that the timed runs find it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.readinto(WARM_BUF):
            pass


def import_row(exe, bundle, home):
    return ([exe, "import", bundle, "-q", "--home", home], fresh(home), None)


def main():
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    measure.case_arguments(ap, CASES, "/tmp/snapbundle-import-bench")
    ap.add_argument("--baseline-exe", help=f"the binary to compare verify against (default {DEFAULT_BASELINE} "
                                           "when it exists)")
    a = ap.parse_args()
    cases = measure.selected_cases(a, CASES)
    exe = os.path.abspath(a.exe) if a.exe else measure.build_release(ROOT)
    base_exe = a.baseline_exe or (DEFAULT_BASELINE if os.path.exists(DEFAULT_BASELINE) else None)
    if a.baseline_exe and not os.path.exists(a.baseline_exe):
        sys.exit(f"--baseline-exe {a.baseline_exe} does not exist")
    base_exe = os.path.abspath(base_exe) if base_exe else None
    load_start = os.getloadavg()
    cpu_start = measure.cpu_times()
    s = lambda n: max(MIB, int(n * a.scale) // 4096 * 4096)  # noqa: E731
    d = lambda n: max(MIB, int(n * a.scale) // MIB * MIB)  # noqa: E731

    os.makedirs(a.dir, exist_ok=True)
    results = {}
    notes = []
    try:
        for case in cases:
            cdir = os.path.join(a.dir, case)
            shutil.rmtree(cdir, ignore_errors=True)
            os.makedirs(cdir)
            home = os.path.join(cdir, "dst-home")
            print(f"{TITLES[case]}: generating input ...", flush=True)
            if case == "sparse1g":
                inp = make_input(cdir, "sparse1g", s(1024 * MIB), sparse_data=d(16 * MIB), exe=exe)
                rows = {"snapbundle import": import_row(exe, inp["bundle"], home),
                        "snapbundle verify": ([exe, "verify", "--bundle", "-q", inp["bundle"]], None, None),
                        "openssl dgst -sha256 upper": (["openssl", "dgst", "-sha256", inp["upper"]], None, None)}
                base, target = "openssl dgst -sha256 upper", ("import", 1.3)
                inp["kind"] = "dense bundle"
            elif case == "dense64m":
                inp = make_input(cdir, "dense64m", s(64 * MIB), exe=exe)
                out = os.path.join(cdir, "zstd-out.tar")
                rows = {"snapbundle import": import_row(exe, inp["bundle"], home),
                        "zstd -dc > FILE && sync FILE": (
                            f"zstd -dc -q {inp['bundle']} > {out} && sync {out}", fresh(out), fresh(out))}
                base, target = "zstd -dc > FILE && sync FILE", ("import", 1.3)
                inp["kind"] = "dense bundle"
            elif case == "sparse8g":
                inp = make_input(cdir, "sparse8g", s(8192 * MIB), sparse_data=d(256 * MIB),
                                 export_flags=["--sparse"], exe=exe)
                rows = {"snapbundle import": import_row(exe, inp["bundle"], home),
                        "openssl dgst -sha256 upper": (["openssl", "dgst", "-sha256", inp["upper"]], None, None)}
                base, target = "openssl dgst -sha256 upper", ("import", 1.2)
                inp["kind"] = "sparse bundle (export --sparse)"
            else:
                inp = make_input(cdir, "verify1g", s(1024 * MIB), bundlegen_bundle=True)
                rows = {"snapbundle verify": ([exe, "verify", "--bundle", "-q", inp["bundle"]], None, None)}
                if base_exe:
                    rows["snapbundle verify (baseline exe)"] = ([base_exe, "verify", "--bundle", "-q", inp["bundle"]], None, None)
                    base, target = "snapbundle verify (baseline exe)", ("verify", 1.5)
                else:
                    base, target = None, ("verify", 1.5)
                    notes.append(f"{TITLES[case]}: baseline row skipped: no --baseline-exe and no {DEFAULT_BASELINE}")
                inp["kind"] = "dense bundle (bundlegen: tar + zstd -3)"
            os.sync()  # settle the setup's dirty pages before timing
            # Warm the page cache: the bundle, and the upper where a row reads it (the first read
            # of a hole fills the cache with zero pages, ~2x slower than a warm read here).
            warm(inp["bundle"])
            if any(isinstance(c, list) and inp["upper"] in c for c, _, _ in rows.values()):
                warm(inp["upper"])
            print(f"{TITLES[case]}: measuring ({a.runs} run{'s' if a.runs > 1 else ''} of {len(rows)} rows) ...",
                  flush=True)
            timed = interleaved(rows, a.runs)
            res = {"input": inp, "rows": {}, "base": base, "target": target}
            for k, (t, r, all_t) in timed.items():
                res["rows"][k] = dict(s=t, rss=r, runs=all_t)
            if "snapbundle import" in rows:
                # The home of the last import run is still there.
                res["rows"]["snapbundle import"]["alloc"] = imported_upper_alloc(home)
                shutil.rmtree(home, ignore_errors=True)
            results[case] = res
            if not a.keep:
                shutil.rmtree(cdir, ignore_errors=True)
    finally:
        if not a.keep:
            for case in cases:
                shutil.rmtree(os.path.join(a.dir, case), ignore_errors=True)

    print(f"\nexe: {exe}\nbaseline exe: {base_exe or '(none)'}\n"
          f"median of {a.runs}; page cache warm (inputs just written, then sync; no drop_caches); "
          f"rows alternate run after run; every import into a fresh --home")
    for case, res in results.items():
        i = res["input"]
        print(f"{TITLES[case]}: upper {i['logical'] / MIB:.1f} MiB logical, {i['data'] / MIB:.1f} MiB data "
              f"({i['src_alloc'] / MIB:.1f} MiB allocated), integrity {i['algo']}; {i['kind']} "
              f"{i['bundle_bytes'] / MIB:.1f} MiB ({i['tar'] / MIB:.1f} MiB tar)")
    print(f"\n{'case':<24} {'row':<33} {'seconds':>8} {'RSS MiB':>8} {'vs base':>8} {'alloc MiB':>10} "
          f"{'data MiB':>9} {'logical MiB':>12}")
    for case, res in results.items():
        base_t = res["rows"][res["base"]]["s"] if res["base"] else None
        for k, r in res["rows"].items():
            ratio = f"{r['s'] / base_t:7.2f}x" if base_t else f"{'-':>8}"
            if "alloc" in r:
                extra = (f"{r['alloc'] / MIB:10.1f} {res['input']['data'] / MIB:9.1f} "
                         f"{res['input']['logical'] / MIB:12.1f}")
            else:
                extra = f"{'-':>10} {'-':>9} {'-':>12}"
            print(f"{TITLES[case]:<24} {k:<33} {r['s']:8.2f} {r['rss']:8.1f} {ratio} {extra}")
    for n in notes:
        print(f"note: {n}")

    print("\ntargets:")
    for case, res in results.items():
        what, lim = res["target"]
        rows = res["rows"]
        if what == "import":
            ratio = rows["snapbundle import"]["s"] / rows[res["base"]]["s"]
            ok = ratio <= lim
            print(f"  {TITLES[case]}: import <= {lim}x {res['base']}: {ratio:.2f}x {'met' if ok else 'NOT met'} "
                  f"({rows['snapbundle import']['s']:.2f} s against {rows[res['base']]['s']:.2f} s)")
        elif res["base"]:
            speed = rows[res["base"]]["s"] / rows["snapbundle verify"]["s"]
            ok = speed >= lim
            print(f"  {TITLES[case]}: verify >= {lim}x faster than the baseline exe: {speed:.2f}x "
                  f"{'met' if ok else 'NOT met'} ({rows['snapbundle verify']['s']:.2f} s against "
                  f"{rows[res['base']]['s']:.2f} s)")
        else:
            print(f"  {TITLES[case]}: verify >= {lim}x faster than the baseline exe: not measured (no baseline exe)")
    imports = [(TITLES[c], r["rows"]["snapbundle import"]) for c, r in results.items()
               if "snapbundle import" in r["rows"]]
    if imports:
        label, worst = max(imports, key=lambda x: x[1]["rss"])
        print(f"  peak RSS <= 32 MiB for every import: {worst['rss']:.1f} MiB ({label}) "
              f"{'met' if worst['rss'] <= 32 else 'NOT met'}")
    verifies = [r["rows"]["snapbundle verify"]["rss"] for r in results.values() if "snapbundle verify" in r["rows"]]
    if verifies:
        print(f"  (for reference, not a target: snapbundle verify peak RSS up to {max(verifies):.1f} MiB)")
    load_end = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in load_end)} at the end (2 cores; above ~1 another job shared them)")
    print(f"CPU time stolen by the hypervisor during the run: {measure.steal_since(cpu_start)}")
    print(f"total wall time: {time.monotonic() - t_start:.1f} s (input generation included)")
    with open(os.path.join(a.dir, "results.json"), "w") as f:
        json.dump({"exe": exe, "baseline_exe": base_exe, "runs": a.runs, "scale": a.scale,
                   "load": [load_start, load_end], "cases": results}, f, indent=1)


if __name__ == "__main__":
    main()
