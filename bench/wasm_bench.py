#!/usr/bin/env python3
"""Validation throughput of the same 1 GiB bundle on every front end, in one run: native
(`snapbundle verify`), wasmtime (`snapbundle verify --sandbox`), node (the wasm-bindgen package)
and headless Chromium (the validation page, File.stream() through the real file input).

    bench/wasm_bench.py [--size-mib 1024] [--runs 3] [--dir /tmp/snapbundle-bench] [--no-chromium]
                        [--exe PATH]

Needs scripts/build-wasm.sh (target/npm, wasm/www/pkg) and, for Chromium, wasm/js-tests's npm
packages. Prints MB/s of tar stream and the ratio to native (median of the runs); every front
end validates the whole bundle and must report the same head. Targets: wasmtime >= 0.66x native, node and Chromium >= 0.5x.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JS = os.path.join(ROOT, "wasm", "js-tests")

NODE = r"""
const { Validator } = require(process.argv[1]);
const fs = require("fs");
const t = process.hrtime.bigint();
const v = new Validator();
const fd = fs.openSync(process.argv[2], "r");
const buf = Buffer.alloc(1 << 20);
for (;;) { const n = fs.readSync(fd, buf, 0, buf.length, null); if (n === 0) break; v.push(buf.subarray(0, n)); }
const r = v.finish();
console.log(JSON.stringify({ head: r.head, seconds: Number(process.hrtime.bigint() - t) / 1e9 }));
"""

CHROMIUM = r"""
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";
const bundle = process.argv[2];
const server = await serve();
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox",
  "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"] });
const page = await browser.newPage();
await page.goto(server.url);
await page.waitForSelector("body[data-ready=true]");
await page.setInputFiles("#file", bundle);
await page.waitForSelector("body[data-state=valid], body[data-state=invalid]", { timeout: 600000 });
const out = { head: await page.textContent("#head-digest"), seconds: Number(await page.getAttribute("body", "data-ms")) / 1000 };
await browser.close(); server.close();
console.log(JSON.stringify(out));
"""


def timed(cmd, cwd=None):
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/snapbundle-bench")
    ap.add_argument("--no-chromium", action="store_true")
    ap.add_argument("--exe", help="measure this release snapbundle (with the sandbox feature) instead of building one")
    a = ap.parse_args()
    cpu_start = measure.cpu_times()
    os.makedirs(a.dir, exist_ok=True)
    # A private copy of the binary: other scripts build target/release without the sandbox
    # feature, and a build finishing mid-run must not swap the binary under the measurement.
    exe = os.path.join(a.dir, "snapbundle-wasm-bench")
    for _ in range(3):
        shutil.copy2(a.exe or measure.build_release(ROOT), exe)
        if "--sandbox" in subprocess.run([exe, "verify", "--help"], capture_output=True, text=True).stdout:
            break
    else:
        sys.exit("the release snapbundle keeps being built without the sandbox feature")
    pkg = os.path.join(ROOT, "target", "npm", "snapbundle-wasm")
    bundle = os.path.join(a.dir, f"mixed-{a.size_mib}m.tar.zst")
    if not os.path.exists(bundle):
        print(f"generating {a.size_mib} MiB mixed snapshot and bundle in {a.dir} ...", flush=True)
        snap = os.path.join(a.dir, f"mixed-{a.size_mib}m")
        bundlegen.make_snapshot(snap, a.size_mib << 20)
        bundlegen.make_bundle([snap], bundle)
    report = json.loads(subprocess.run([exe, "verify", "--json", "-q", bundle], check=True, capture_output=True,
                                       text=True).stdout)["report"]
    tar_bytes, head = report["decompressed_bytes"], report["head"]

    def cli(*extra):
        dt, _ = timed([exe, "verify", "-q", *extra, bundle])
        return dt

    def node():
        _, out = timed(["node", "-e", NODE, pkg, bundle])
        r = json.loads(out)
        assert r["head"] == head, r
        return r["seconds"]

    def browser():
        script = os.path.join(JS, ".bench-chromium.mjs")
        with open(script, "w") as f:
            f.write(CHROMIUM)
        try:
            _, out = timed(["node", script, bundle], cwd=JS)
        finally:
            os.unlink(script)
        r = json.loads(out)
        assert r["head"] == head, r
        return r["seconds"]

    cases = {"native (snapbundle verify)": cli, "wasmtime (verify --sandbox)": lambda: cli("--sandbox"),
             "node (snapbundle-wasm)": node}
    if not a.no_chromium:
        cases["chromium (validation page)"] = browser
    results = {}
    for name, f in cases.items():
        results[name] = statistics.median(f() for _ in range(a.runs))
        print(f"  {name}: {results[name]:.2f} s", flush=True)
    native = results["native (snapbundle verify)"]
    print(f"\nbundle: {os.path.getsize(bundle) / 2**20:.1f} MiB compressed, {tar_bytes / 2**20:.1f} MiB tar; "
          f"median of {a.runs}; head {head[:19]}... on every front end")
    print(f"{'front end':<30} {'seconds':>8} {'MB/s (tar)':>11} {'vs native':>10}")
    for name, t in results.items():
        print(f"{name:<30} {t:8.2f} {tar_bytes / t / 1e6:11.0f} {native / t:9.2f}x")
    w = native / results["wasmtime (verify --sandbox)"]
    print(f"\ntargets:\n  wasmtime >= 0.66x native: {'met' if w >= 0.66 else 'NOT met'} ({w:.2f}x)")
    for name in ("node (snapbundle-wasm)", "chromium (validation page)"):
        if name in results:
            r = native / results[name]
            print(f"  {name.split()[0]} >= 0.5x native: {'met' if r >= 0.5 else 'NOT met'} ({r:.2f}x)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"CPU time stolen by the hypervisor during the run: {measure.steal_since(cpu_start)}")


if __name__ == "__main__":
    main()
