#!/usr/bin/env python3
"""microsandbox 0.7 `.msb` archives: validation and conversion against the work they cannot
avoid, in one run.

    bench/msb_bench.py [--scale 1.0] [--runs 3] [--dir /tmp/snapbundle-msb-bench]
                       [--exe path/to/snapbundle] [--baseline-exe path/to/snapbundle]
                       [--only dense1g,sparse8g,convert1g,convertback1g] [--keep]

Cases (`--only` takes their names or numbers, comma separated):
  1 dense1g   a 1 GiB dense layer (1 MiB chunks of random, zero and text bytes, every block
              allocated: a regular member), zstd level 3, written by the `make_msb` example
              twice: with `msb-file-merkle-blake3-v1` (what 0.7 records) and with
              `msb-sparse-sha256-v1` (what `convert --to 0.7` carries over from 0.6.2). Rows:
              `snapbundle verify` of each, and the baseline `zstd -dc ARCHIVE | b3sum` (Debian
              b3sum: one BLAKE3 pass over the decompressed stream). Target: verify of the Merkle
              archive at >= 0.8x the baseline's throughput.
  2 sparse8g  an 8 GiB logical layer holding 256 MiB of data (1 MiB runs), Merkle integrity, an
              old-GNU sparse member. Rows: verify, and the baseline `b3sum` of a file of the
              256 MiB of data alone. Target: verify <= 1.5x the baseline (it costs what its data
              costs, not its logical size).
  3 convert1g the 1 GiB sparse workload of import_bench.py (1 GiB logical, 16 MiB of data,
              `msb-sparse-sha256-v1`) as a dense 0.6.2 bundle. Rows: `snapbundle convert --to 0.7`
              to a file, and the baseline: `snapbundle verify` of the bundle plus `zstd -3` of the
              converted archive's tar stream to a file and `sync` (what a conversion cannot
              avoid: validating its input and writing its output). Target: convert <= 1.3x the
              baseline.
  4 convertback1g the other way: the `.msb` archive case 3 converts to, converted back with
              `convert --to 0.6.2`, against `verify` of the archive plus `zstd -3` of the
              bundle's tar stream to a file and `sync`. Target: convert <= 1.3x the baseline.
With --baseline-exe, cases 1 and 2 get a row for `verify` of the Merkle archive by that binary
too (another build, measured in the same run; not a target).
Rows of a case alternate run after run; median of --runs; largest peak RSS (target: <= 32 MiB
for every snapbundle row). The page cache is warm. `--scale` shrinks every size.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
import measure  # noqa: E402
from import_bench import fresh, interleaved, make_input, warm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
CASES = ("dense1g", "sparse8g", "convert1g", "convertback1g")
TITLES = {"dense1g": "(1) verify dense 1 GiB", "sparse8g": "(2) verify sparse 8 GiB",
          "convert1g": "(3) convert sparse 1 GiB", "convertback1g": "(4) convert back 1 GiB"}


def build_make_msb():
    """Builds the `make_msb` example (release); returns its path."""
    out = subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "snapbundle", "--example",
                          "make_msb", "--message-format=json"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    exes = [m["executable"] for m in map(json.loads, out.splitlines())
            if m.get("reason") == "compiler-artifact" and m.get("executable")]
    if not exes:
        sys.exit("cargo built no make_msb executable")
    return exes[-1]


def data_only(upper, out):
    """Writes the data segments of the sparse file `upper` (SEEK_DATA/SEEK_HOLE), concatenated."""
    size = os.path.getsize(upper)
    with open(upper, "rb") as src, open(out, "wb") as dst:
        fd, pos = src.fileno(), 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            src.seek(start)
            left = end - start
            while left:
                chunk = src.read(min(left, 8 * MIB))
                dst.write(chunk)
                left -= len(chunk)
            pos = end


def make_msb(tool, upper, out, integrity):
    subprocess.run([tool, upper, out, integrity], check=True, stdout=subprocess.DEVNULL)
    warm(out)


def main():
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    measure.case_arguments(ap, CASES, "/tmp/snapbundle-msb-bench")
    ap.add_argument("--baseline-exe", help="another snapbundle binary whose verify gets a row in cases 1 and 2")
    a = ap.parse_args()
    for tool in ("b3sum", "zstd"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install {tool} (scripts/install-deps.sh installs it)")
    cases = measure.selected_cases(a, CASES)
    exe = os.path.abspath(a.exe) if a.exe else measure.build_release(ROOT)
    base_exe = os.path.abspath(a.baseline_exe) if a.baseline_exe else None
    if base_exe and not os.path.exists(base_exe):
        sys.exit(f"--baseline-exe {base_exe} does not exist")
    tool = build_make_msb() if {"dense1g", "sparse8g"} & set(cases) else None
    load_start = os.getloadavg()
    cpu_start = measure.cpu_times()
    s = lambda n: max(MIB, int(n * a.scale) // 4096 * 4096)  # noqa: E731
    d = lambda n: max(MIB, int(n * a.scale) // MIB * MIB)  # noqa: E731
    os.makedirs(a.dir, exist_ok=True)
    results = {}
    try:
        for case in cases:
            cdir = os.path.join(a.dir, case)
            shutil.rmtree(cdir, ignore_errors=True)
            os.makedirs(cdir)
            print(f"{TITLES[case]}: generating input ...", flush=True)
            verify = lambda path: ([exe, "verify", "--bundle", "-q", path], None, None)  # noqa: E731
            if case == "dense1g":
                upper = os.path.join(cdir, "upper.img")
                size = s(1024 * MIB)
                bundlegen.write_upper(upper, size)
                merkle, sha = os.path.join(cdir, "merkle.msb"), os.path.join(cdir, "sha.msb")
                make_msb(tool, upper, merkle, "merkle")
                make_msb(tool, upper, sha, "sparse-sha256")
                rows = {"snapbundle verify (Merkle-BLAKE3)": verify(merkle),
                        "snapbundle verify (sparse SHA-256)": verify(sha),
                        "zstd -dc | b3sum": (f"zstd -dc -q {merkle} | b3sum", None, None)}
                if base_exe:
                    rows["snapbundle verify (Merkle, baseline exe)"] = ([base_exe, "verify", "--bundle", "-q", merkle],
                                                                        None, None)
                base, target = "zstd -dc | b3sum", ("throughput", "snapbundle verify (Merkle-BLAKE3)", 0.8)
                info = f"layer {size / MIB:.0f} MiB dense; archives {os.path.getsize(merkle) / MIB:.1f} MiB (zstd -3)"
            elif case == "sparse8g":
                upper = os.path.join(cdir, "upper.img")
                size, data = s(8192 * MIB), d(256 * MIB)
                bundlegen.write_upper(upper, size, sparse_data=data)
                merkle = os.path.join(cdir, "merkle.msb")
                make_msb(tool, upper, merkle, "merkle")
                only_data = os.path.join(cdir, "data.bin")
                data_only(upper, only_data)
                # The filesystem's data extents (what the archive stores), a little over `data`.
                if not data <= os.path.getsize(only_data) <= data * 1.05:
                    sys.exit(f"{only_data}: {os.path.getsize(only_data)} bytes, expected about {data}")
                warm(only_data)
                rows = {"snapbundle verify (Merkle-BLAKE3)": verify(merkle),
                        "b3sum of the data alone": (["b3sum", only_data], None, None),
                        # One core's worth of one BLAKE3 pass: the format needs two (transport
                        # digest and Merkle leaves), so this row shows the per-core cost.
                        "b3sum --num-threads 1 of the data": (["b3sum", "--num-threads", "1", only_data],
                                                              None, None)}
                if base_exe:
                    rows["snapbundle verify (Merkle, baseline exe)"] = ([base_exe, "verify", "--bundle", "-q", merkle],
                                                                        None, None)
                base, target = "b3sum of the data alone", ("time", "snapbundle verify (Merkle-BLAKE3)", 1.5)
                info = (f"layer {size / MIB:.0f} MiB logical, {os.path.getsize(only_data) / MIB:.1f} MiB data "
                        f"(extents); archive "
                        f"{os.path.getsize(merkle) / MIB:.1f} MiB")
            else:
                inp = make_input(cdir, "sparse1g", s(1024 * MIB), sparse_data=d(16 * MIB), exe=exe)
                msb = os.path.join(cdir, "converted.msb")
                subprocess.run([exe, "convert", inp["bundle"], "-o", msb, "-q"], check=True)
                # Case 3 converts the bundle to 0.7; case 4 converts that archive back to 0.6.2.
                src, to = (inp["bundle"], "0.7") if case == "convert1g" else (msb, "0.6.2")
                out = os.path.join(cdir, "out.msb" if to == "0.7" else "out.tar.zst")
                convert = [exe, "convert", src, "--to", to, "-o", out, "-q"]
                subprocess.run(convert, check=True)
                out_tar = os.path.join(cdir, "out.tar")
                subprocess.run(f"zstd -dc -q {out} > {out_tar}", shell=True, check=True)
                warm(src)
                warm(out_tar)
                zout = os.path.join(cdir, "zstd-out.tar.zst")
                row = f"snapbundle convert --to {to}"
                rows = {row: (convert, fresh(out), None),
                        "verify input + zstd -3 output + sync": (
                            f"{exe} verify --bundle -q {src} && zstd -3 -q -c {out_tar} > {zout} "
                            f"&& sync {zout}", fresh(zout), fresh(zout))}
                base, target = "verify input + zstd -3 output + sync", ("time", row, 1.3)
                info = (f"input {os.path.getsize(src) / MIB:.1f} MiB, output tar "
                        f"{os.path.getsize(out_tar) / MIB:.1f} MiB")
            subprocess.run(["sync"], check=True)
            measured = interleaved(rows, a.runs)
            results[case] = {"info": info, "base": base, "target": target,
                             "rows": {k: {"s": v[0], "rss": v[1], "all": v[2]} for k, v in measured.items()}}
            print(f"{TITLES[case]}: done", flush=True)
    finally:
        if not a.keep:
            for case in cases:
                shutil.rmtree(os.path.join(a.dir, case), ignore_errors=True)

    if base_exe:
        print(f"\nbaseline exe: {base_exe}", end="")
    print(f"\nsnapbundle {exe}; median of {a.runs}; page cache warm; rows alternate run after run")
    for case, res in results.items():
        print(f"{TITLES[case]}: {res['info']}")
    print(f"\n{'case':<28} {'row':<40} {'seconds':>8} {'RSS MiB':>8} {'vs base':>8}")
    for case, res in results.items():
        base_t = res["rows"][res["base"]]["s"]
        for k, r in res["rows"].items():
            print(f"{TITLES[case]:<28} {k:<40} {r['s']:8.2f} {r['rss']:8.1f} {r['s'] / base_t:7.2f}x")
    print("\ntargets:")
    for case, res in results.items():
        how, row, lim = res["target"]
        t, b = res["rows"][row]["s"], res["rows"][res["base"]]["s"]
        if how == "throughput":
            ratio = b / t
            ok = ratio >= lim
            print(f"  {TITLES[case]}: {row} >= {lim}x the throughput of {res['base']}: {ratio:.2f}x "
                  f"{'met' if ok else 'NOT met'} ({t:.2f} s against {b:.2f} s)")
        else:
            ratio = t / b
            ok = ratio <= lim
            print(f"  {TITLES[case]}: {row} <= {lim}x {res['base']}: {ratio:.2f}x {'met' if ok else 'NOT met'} "
                  f"({t:.2f} s against {b:.2f} s)")
    worst = max((r["rss"], k) for res in results.values() for k, r in res["rows"].items() if k.startswith("snapbundle"))
    print(f"  peak RSS <= 32 MiB for every snapbundle row: {worst[0]:.1f} MiB ({worst[1]}) "
          f"{'met' if worst[0] <= 32 else 'NOT met'}")
    load_end = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in load_end)} at the end (2 cores; above ~1 another job shared them)")
    print(f"CPU time stolen by the hypervisor during the run: {measure.steal_since(cpu_start)}")
    print(f"total wall time: {time.monotonic() - t_start:.1f} s (input generation included)")
    with open(os.path.join(a.dir, "results.json"), "w") as f:
        json.dump({"exe": exe, "runs": a.runs, "scale": a.scale, "load": [load_start, load_end], "cases": results},
                  f, indent=1)


if __name__ == "__main__":
    main()
