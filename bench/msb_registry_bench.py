#!/usr/bin/env python3
"""`push FILE.msb` and `pull -o FILE.msb` through a registry on loopback, next to `export
--format msb` + `import` of the same chain, all in one run.

    bench/msb_registry_bench.py [--scale 1.0] [--runs 3] [--dir /tmp/snapbundle-msb-registry-bench]

Makes a 0.6.2 home with a chain of 3 snapshots (128 MiB mixed uppers as bundlegen.py makes
them: 384 MiB; `--scale` multiplies), writes it as a `.msb` archive (`export --with-parents
--format msb`: timed, that is the file route's first half) and imports that archive into a
fresh home (the second half). Then, on Debian's `docker-registry` (127.0.0.1, plain HTTP,
storage in --dir): `push chain.msb` (the archive as it is), `pull -o` of it into a new file
(checked byte for byte against the pushed archive), and `pull` of it into a fresh store. Prints
the table (medians of --runs rounds; each round pushes into a new repository, so every push
uploads) and the ratios (push + pull -o) / (export + import) and (push + pull into the store) /
(export + import); the target is 1.5x. Last, the dedup check: the head's archive without its
parents' layers cannot be made by export, so the parent chain's archive (c1 with parents) is
pushed first and then the head's (c2 with parents) into the same repository: the second sends
only the head's own members.
"""
import argparse
import json
import resource
import os
import shutil
import statistics
import subprocess
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


def proc_cpu(pid):
    """CPU seconds (user + system) a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


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
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exe", help="a snapbundle binary to measure instead of building the release one")
    ap.add_argument("--dir", default="/tmp/snapbundle-msb-registry-bench")
    a = ap.parse_args()
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry is not installed (scripts/install-deps.sh installs it)")
    exe = a.exe or measure.build_release(ROOT)
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
    times = {k: [] for k in ("export", "import", "push", "pull", "store")}
    cpu = {k: [] for k in times}
    registry_cpu = {k: [] for k in times}

    def step(key, cmd):
        c0, r0 = children_cpu(), proc_cpu(proc.pid)
        t, out = timed(cmd)
        times[key].append(t)
        cpu[key].append(children_cpu() - c0)
        registry_cpu[key].append(proc_cpu(proc.pid) - r0)
        return out

    pulled = os.path.join(a.dir, "pulled.msb")
    fresh = ["imp", "push-home", "pull-o-home", "pull-home"]
    try:
        for r in range(a.runs):
            for d in fresh:
                shutil.rmtree(os.path.join(a.dir, d), ignore_errors=True)
            for f in (archive, pulled):
                if os.path.exists(f):
                    os.remove(f)
            subprocess.run(["sync"], check=True)
            step("export", [exe, "export", "c2", "--with-parents", "--format", "msb", "-o", archive,
                            "--home", src, "--quiet"])
            step("import", [exe, "import", archive, "--home", os.path.join(a.dir, "imp"), "--quiet"])
            ref = f"{registry}/bench/chain{r}:v1"
            push = step("push", [exe, "push", archive, ref, "--quiet"] + scratch + reg)["push"]
            pout = step("pull", [exe, "pull", ref, "-o", pulled, "--quiet",
                                 "--home", os.path.join(a.dir, "pull-o-home")] + reg)
            identical = same(archive, pulled)
            step("store", [exe, "pull", ref, "--quiet", "--home", os.path.join(a.dir, "pull-home")] + reg)
            if not identical:
                break
        t_exp, t_imp, t_push, t_pull, t_store = (statistics.median(times[k]) for k in
                                                 ("export", "import", "push", "pull", "store"))
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
    print(f"\nloopback registry (docker-registry {registry}); median of {len(times['push'])} rounds; "
          f"chain of 3 x {size // MIB} MiB, "
          f".msb archive {msb_size / MIB:.1f} MiB")
    med = {k: (statistics.median(cpu[k]), statistics.median(registry_cpu[k])) for k in times}

    def row(label, key, t, note=""):
        print(f"{label:<24}{t:>8.2f} s {med[key][0]:>8.2f} s {med[key][1]:>9.2f} s   {note}")

    print(f"{'':<24}{'wall':>10} {'our CPU':>10} {'registry CPU':>11}")
    row("export --format msb", "export", t_exp)
    row("import chain.msb", "import", t_imp)
    row("push chain.msb", "push", t_push, f"{push['uploaded']} uploaded, {push['bytes_sent'] / MIB:.1f} MiB sent")
    row("pull -o pulled.msb", "pull", t_pull, f"{pout['pull']['bytes_downloaded'] / MIB:.1f} MiB received; "
        f"byte-identical to the pushed archive: {identical}")
    row("pull into a store", "store", t_store)
    print("every round (wall): " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in v) for k, v in times.items()))
    ours = (med["push"][0] + med["pull"][0]) / (med["export"][0] + med["import"][0])
    print(f"CPU of snapbundle alone: (push + pull -o) / (export + import) = {ours:.2f}x; the registry "
          f"used {med['push'][1] + med['pull'][1]:.2f} s of CPU for the push and the pull -o "
          f"(same {os.cpu_count()} cores)")
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
