#!/usr/bin/env python3
"""`push` and `pull` through a registry on loopback, next to `export` + `import` of the same
snapshots, all in one run.

    bench/registry_bench.py [--scale 1.0] [--dir /tmp/snapbundle-registry-bench]

Starts Debian's `docker-registry` on 127.0.0.1 (plain HTTP, no auth, storage in --dir) and
measures, for

1. one snapshot with a 2 GiB mixed upper (random, zero and text blocks, as bundlegen.py makes
   them), and
2. a chain of 3 snapshots (256 MiB mixed uppers) booting from one image (metadata, fsmeta,
   VMDK and two 64 MiB EROFS layers in the image cache), pushed with --with-parents
   --with-image,

the wall time and the bytes sent of: `export` (bytes = the bundle), `import` of that bundle,
`push` (bytes = blobs uploaded) and `pull` into a fresh home; ratios push/export,
pull/import and (push+pull)/(export+import). Then the dedup check: the chain's parent is pushed
(with its parent and the image) to a fresh repository and then the head; the head's push must
send at most the head's own data (its manifest, its compressed upper and the config blob),
skipping the parents' and the image's blobs; then the head to a third repository, where every
blob is mounted from the second. `--scale` shrinks the sizes for a quick look.
"""
import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundlegen  # noqa: E402
import measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_image(cache_dir, reference, layer_size):
    """An image cache as `export --with-image` wants it; returns the pinned manifest digest."""
    diff_ids = [sha(f"bench-diff-{i}".encode()) for i in range(2)]
    blobs = [sha(f"bench-blob-{i}".encode()) for i in range(2)]
    raw_config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}, separators=(",", ":"))
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": b, "size": 4096} for b in blobs]
    raw_manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": sha(raw_config.encode()), "size": len(raw_config)},
                               "layers": layers}, separators=(",", ":"))
    mdigest = sha(raw_manifest.encode())
    meta = {"manifest_digest": mdigest, "config_digest": sha(raw_config.encode()),
            "raw_manifest_json": raw_manifest, "raw_config_json": raw_config,
            "config": {"env": [], "cmd": None, "entrypoint": None, "working_dir": None, "user": None,
                       "exposed_ports": [], "volumes": [], "labels": {}, "stop_signal": None},
            "layers": [{"digest": b, "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "size_bytes": 4096, "diff_id": d} for b, d in zip(blobs, diff_ids)]}
    for kind in ("manifests", "fsmeta", "vmdk", "layers"):
        os.makedirs(os.path.join(cache_dir, kind), exist_ok=True)
    key = hashlib.sha256(reference.encode()).hexdigest()
    with open(os.path.join(cache_dir, "manifests", f"{key}.json"), "w") as f:
        f.write(json.dumps(meta, separators=(",", ":")))
    stem = mdigest.replace(":", "_", 1)
    with open(os.path.join(cache_dir, "fsmeta", f"{stem}.erofs"), "wb") as f:
        f.write(os.urandom(4096) * 256)
    with open(os.path.join(cache_dir, "vmdk", f"{stem}.vmdk"), "wb") as f:
        f.write(b"# Disk DescriptorFile\nversion=1\n")
    for d in diff_ids:
        bundlegen.write_upper(os.path.join(cache_dir, "layers", d.replace(":", "_", 1) + ".erofs"), layer_size)
    return mdigest


def make_chain(snaps, n, size, reference, mdigest):
    """n snapshots, each the parent of the next, pinned to the image; returns their digests."""
    digests, parent = [], None
    for i in range(n):
        d = os.path.join(snaps, f"c{i}")
        os.makedirs(d)
        integ = bundlegen.write_upper(os.path.join(d, "upper.ext4"), size)
        data, digest = bundlegen.manifest(size, integ, parent)
        m = json.loads(data)
        m["image"] = {"ref": reference, "manifest_digest": mdigest}
        data = json.dumps(m, separators=(",", ":"), ensure_ascii=False).encode()
        digest = sha(data)
        with open(os.path.join(d, "manifest.json"), "wb") as f:
            f.write(data)
        digests.append(digest)
        parent = digest
    return digests


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.decode()}")
    return dt, json.loads(p.stdout) if "--json" in cmd else None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_registry(d):
    port = free_port()
    cfg = os.path.join(d, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                f"  filesystem:\n    rootdirectory: {d}/registry\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start (scripts/install-deps.sh installs it)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--dir", default="/tmp/snapbundle-registry-bench")
    a = ap.parse_args()
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry is not installed (scripts/install-deps.sh installs it)")
    # The default features, as the other benchmarks build it: target/release/snapbundle is shared.
    exe = measure.build_release(ROOT)
    shutil.rmtree(a.dir, ignore_errors=True)
    src = os.path.join(a.dir, "src-home")
    snaps = os.path.join(src, "snapshots")
    os.makedirs(snaps)
    big = max(MIB, int(2048 * MIB * a.scale) // 4096 * 4096)
    small = max(MIB, int(256 * MIB * a.scale) // 4096 * 4096)
    layer = max(MIB, int(64 * MIB * a.scale) // 4096 * 4096)
    print(f"generating: one {big // MIB} MiB snapshot; a chain of 3 x {small // MIB} MiB on one image "
          f"(2 x {layer // MIB} MiB layers) ...", flush=True)
    bundlegen.make_snapshot(os.path.join(snaps, "big"), big)
    reference = "docker.io/library/alpine:3.20"
    mdigest = make_image(os.path.join(src, "cache"), reference, layer)
    chain = make_chain(snaps, 3, small, reference, mdigest)
    proc, registry = start_registry(a.dir)
    common = ["--home", src, "--quiet"]
    reg = ["--plain-http", "--json"]
    rows = []
    try:
        for label, name, flags in (("2 GiB mixed snapshot" if a.scale == 1.0 else f"{big // MIB} MiB mixed snapshot",
                                    "big", []),
                                   ("chain of 3 + image", "c2", ["--with-parents", "--with-image"])):
            bundle = os.path.join(a.dir, f"{name}.tar.zst")
            t_exp, _ = timed([exe, "export", name, "-o", bundle] + flags + common)
            size = os.path.getsize(bundle)
            t_imp, _ = timed([exe, "import", bundle, "--home", os.path.join(a.dir, f"imp-{name}"), "--quiet"])
            t_push, out = timed([exe, "push", name, f"{registry}/bench/{name}:v1"] + flags + common + reg)
            p = out["push"]
            t_pull, pout = timed([exe, "pull", f"{registry}/bench/{name}:v1", "--home",
                                  os.path.join(a.dir, f"pull-{name}"), "--quiet"] + reg)
            rows.append((label, t_exp, size, t_imp, t_push, p["bytes_uploaded"], p["uploaded"], p["skipped"],
                         t_pull, pout["pull"]["bytes_downloaded"]))
            os.remove(bundle)
        # Dedup: parent (with its parent and the image) first, then the head, into a new repository,
        # without this home's record of where it pushed blobs (else push mounts them from bench/).
        shutil.rmtree(os.path.join(src, "cache", "snapbundle", "seen"), ignore_errors=True)
        t_parent, out = timed([exe, "push", "c1", f"{registry}/dedup/chain:parent", "--with-parents",
                               "--with-image"] + common + reg)
        parent = out["push"]
        t_child, out = timed([exe, "push", "c2", f"{registry}/dedup/chain:child", "--with-parents",
                              "--with-image"] + common + reg)
        child = out["push"]
        # Baseline for the head's push: the same two pushes into another repository, the head's
        # without this home's records of what it pushed (so it reads and compresses the parents'
        # uppers and the image files again to learn their digests) and without mounts.
        seen = os.path.join(src, "cache", "snapbundle", "seen")
        pushed = os.path.join(src, "cache", "snapbundle", "pushed")
        shutil.rmtree(seen, ignore_errors=True)
        timed([exe, "push", "c1", f"{registry}/dedup-base/chain:parent", "--with-parents", "--with-image"]
              + common + reg)
        shutil.rmtree(seen, ignore_errors=True)
        shutil.rmtree(pushed, ignore_errors=True)
        t_base, out = timed([exe, "push", "c2", f"{registry}/dedup-base/chain:child", "--with-parents",
                             "--with-image"] + common + reg)
        base = out["push"]
        # Mount: the head pushed to another repository of the registry mounts every blob it pushed
        # to dedup/ (found in this home's record) instead of sending it.
        t_mount, out = timed([exe, "push", "c2", f"{registry}/elsewhere/chain:child", "--with-parents",
                              "--with-image"] + common + reg)
        mounted = out["push"]
        prefix = "sha256-" + chain[2].split(":")[1][:16] + "/"
        own = sum(b["size"] for b in child["blobs"] if b["member"].startswith(prefix) or b["member"] == "config")
    finally:
        proc.kill()
        proc.wait()

    print(f"\nloopback registry (docker-registry {registry}); one run each; bytes sent = bundle for export, "
          "blobs uploaded for push, blobs received for pull")
    print(f"{'snapshots':<24}{'export s':>9}{'import s':>9}{'bundle MiB':>11}{'push s':>8}{'pushed MiB':>11}"
          f"{'up/skip':>9}{'pull s':>8}{'pulled MiB':>11}{'push/exp':>9}{'pull/imp':>9}{'round trip':>11}")
    for (label, te, size, ti, tp, bp, up, sk, tl, bl) in rows:
        print(f"{label:<24}{te:>9.2f}{ti:>9.2f}{size / MIB:>11.1f}{tp:>8.2f}{bp / MIB:>11.1f}{f'{up}/{sk}':>9}"
              f"{tl:>8.2f}{bl / MIB:>11.1f}{tp / te:>8.2f}x{tl / ti:>8.2f}x{(tp + tl) / (te + ti):>10.2f}x")
    print(f"\ndedup: parent chain + image pushed in {t_parent:.2f} s ({parent['uploaded']} blobs, "
          f"{parent['bytes_uploaded'] / MIB:.1f} MiB); then the head in {t_child:.2f} s: "
          f"{child['uploaded']} uploaded, {child['skipped']} skipped, {child['bytes_sent'] / MIB:.2f} MiB sent; "
          f"the head's own blobs (manifest, upper, config): {own / MIB:.2f} MiB; "
          f"read {child['bytes_read'] / MIB:.1f} of {child['member_bytes'] / MIB:.1f} MiB")
    print(f"baseline: the head's push without the records of earlier pushes in {t_base:.2f} s: "
          f"{base['uploaded']} uploaded, {base['skipped']} skipped, "
          f"read {base['bytes_read'] / MIB:.1f} of {base['member_bytes'] / MIB:.1f} MiB; "
          f"with records {t_child / t_base:.2f}x the time")
    print(f"mount: the same head pushed to another repository in {t_mount:.2f} s: {mounted['mounted']} mounted, "
          f"{mounted['uploaded']} uploaded, {mounted['bytes_sent'] / MIB:.2f} MiB sent")
    ok = child["bytes_sent"] <= own
    print(f"target: a child whose parent is in the registry sends at most its own data: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
