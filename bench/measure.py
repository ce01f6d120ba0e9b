"""Measuring helpers shared by the benchmark scripts."""
import json
import os
import subprocess
import sys
import time


def build_release(root):
    """Builds the release binary with its default features; returns its path, wherever cargo put
    it (CARGO_TARGET_DIR, a cargo config's target-dir, or ./target)."""
    out = subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "snapbundle",
                          "--bin", "snapbundle", "--message-format=json"],
                         cwd=root, check=True, capture_output=True, text=True).stdout
    exes = [m["executable"] for m in map(json.loads, out.splitlines())
            if m.get("reason") == "compiler-artifact" and m.get("executable")]
    if not exes:
        sys.exit("cargo built no snapbundle executable")
    return exes[-1]


def case_arguments(ap, cases, default_dir):
    """Adds the arguments of a benchmark made of named cases: --scale, --runs, --dir, --exe,
    --only (names or 1-based numbers, comma separated) and --keep."""
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size (quick look: 0.05)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=default_dir)
    ap.add_argument("--exe", help="the snapbundle binary to measure instead of building the release binary")
    ap.add_argument("--only", help="comma-separated cases to run: " + ", ".join(
        f"{i + 1}|{c}" for i, c in enumerate(cases)))
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs in --dir")


def selected_cases(a, cases):
    """The cases `--only` names (every case without it), in their declared order; exits on an
    unknown name or on --runs below 1."""
    if a.runs < 1:
        sys.exit("--runs must be at least 1")
    if not a.only:
        return list(cases)
    chosen = []
    for c in a.only.split(","):
        c = c.strip()
        c = cases[int(c) - 1] if c.isdigit() and 1 <= int(c) <= len(cases) else c
        if c not in cases:
            sys.exit(f"unknown case {c!r}; cases: {', '.join(cases)} (or 1-{len(cases)})")
        if c not in chosen:
            chosen.append(c)
    return sorted(chosen, key=cases.index)


def run(cmd, shell=False, env=None):
    """Runs a command; returns (seconds, peak RSS in MiB). The peak comes from GNU time, which
    forks the command from its own small process: measuring from Python would report Python's
    own high-water mark, which Linux carries into a vforked child across exec."""
    if not os.path.exists("/usr/bin/time"):
        sys.exit("GNU time is needed for peak RSS: apt-get install time (scripts/install-deps.sh does)")
    argv = ["sh", "-c", cmd] if shell else list(cmd)
    rss_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"snapbundle-bench-rss-{os.getpid()}")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv, stdout=subprocess.DEVNULL, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {cmd}")
    with open(rss_file) as f:
        peak_kib = int(f.read().strip().splitlines()[-1])
    os.remove(rss_file)
    return dt, peak_kib / 1024


def allocated(path):
    """Bytes allocated on disk by the regular files under `path`."""
    total = 0
    for dp, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dp, f)).st_blocks * 512
    return total


def cpu_times():
    """The machine's CPU time counters from /proc/stat (all CPUs): (total, steal) in clock ticks,
    or None where there is no /proc/stat. Steal is time a virtual machine's CPUs were runnable
    but the hypervisor ran something else: it slows every timed command alike, but a two-thread
    command more than a one-thread baseline, so benchmark ratios state it."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields), (fields[7] if len(fields) > 7 else 0)


def steal_since(start):
    """Percent of CPU time stolen by the hypervisor since `start` (a `cpu_times()`), as text."""
    end = cpu_times()
    if start is None or end is None or end[0] <= start[0]:
        return "unknown"
    return f"{100.0 * (end[1] - start[1]) / (end[0] - start[0]):.1f}%"
