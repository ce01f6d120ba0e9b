#!/usr/bin/env python3
"""Generates benchmark snapshots and bundles in the microsandbox 0.6.2 layout.

A snapshot directory gets an upper of the requested size made of 4 KiB blocks in a repeating
mix (random, zero, text), a canonical manifest with msb-sparse-sha256-v1 integrity, and the
bundle is a GNU tar (0.6.2 layout: sha256-<16 hex>/manifest.json, then the upper) compressed
with `zstd -3`. Used by the benchmark scripts only; the tests build their inputs in Rust.
"""
import hashlib
import json
import os
import subprocess
import sys
import tarfile

BLOCK = 4096
TEXT = (b"The quick brown fox jumps over the lazy dog. 0123456789 snapbundle bench\n" * 64)[:BLOCK]


def write_upper(path, size, mix=("random", "zero", "text"), sparse_data=None):
    """Writes `size` bytes. With `sparse_data`, only that many bytes of data are written
    (spread in 1 MiB runs) and the rest stays a hole."""
    h = hashlib.sha256()
    h.update(b"msb-sparse-sha256-v1\0" + size.to_bytes(8, "little"))
    with open(path, "wb") as f:
        if sparse_data is not None:
            f.truncate(size)
            run = 1 << 20
            runs = max(1, sparse_data // run)
            stride = size // runs
            chunks = []
            for i in range(runs):
                off = i * stride
                data = os.urandom(run // 2) + TEXT * (run // 2 // BLOCK)
                f.seek(off)
                f.write(data)
                chunks.append((off, data))
            pos = 0
            zeros = bytes(1 << 20)
            for off, data in chunks:
                while pos < off:
                    n = min(len(zeros), off - pos)
                    h.update(zeros[:n])
                    pos += n
                h.update(data)
                pos += len(data)
            while pos < size:
                n = min(len(zeros), size - pos)
                h.update(zeros[:n])
                pos += n
        else:
            written = 0
            i = 0
            zero = bytes(BLOCK)
            while written < size:
                kind = mix[i % len(mix)]
                buf = bytearray()
                for _ in range(256):  # 1 MiB of one kind at a time
                    buf += os.urandom(BLOCK) if kind == "random" else zero if kind == "zero" else TEXT
                buf = bytes(buf[: size - written])
                f.write(buf)
                h.update(buf)
                written += len(buf)
                i += 1
    return "sha256:" + h.hexdigest()


def data_bytes(size, mix=("random", "zero", "text"), sparse_data=None):
    """Bytes of non-zero data that `write_upper` with the same arguments writes: the 1 MiB runs
    with `sparse_data`, else every 1 MiB chunk of a kind other than "zero"."""
    run = 1 << 20
    if sparse_data is not None:
        return max(1, sparse_data // run) * run
    return sum(min(run, size - off) for i, off in enumerate(range(0, size, run)) if mix[i % len(mix)] != "zero")


def manifest(size, integrity, parent=None, upper="upper.ext4"):
    """Canonical manifest bytes and digest; `integrity` is the msb-sparse-sha256-v1 digest, or
    None for `"integrity": null`."""
    m = {
        "schema": 1,
        "format": "raw",
        "fstype": "ext4",
        "image": {"ref": "docker.io/library/alpine:3.20",
                  "manifest_digest": "sha256:" + "0" * 63 + "1"},
        "parent": parent,
        "created_at": "2026-05-01T12:00:00.123456789+00:00",
        "labels": {},
        "upper": {"file": upper, "size_bytes": size,
                  "integrity": {"algorithm": "msb-sparse-sha256-v1", "digest": integrity} if integrity else None},
        "source_sandbox": "bench",
    }
    data = json.dumps(m, separators=(",", ":"), ensure_ascii=False).encode()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def make_snapshot(snapdir, size, parent=None, sparse_data=None):
    """Creates a snapshot directory; returns its digest."""
    os.makedirs(snapdir, exist_ok=True)
    integ = write_upper(os.path.join(snapdir, "upper.ext4"), size, sparse_data=sparse_data)
    data, digest = manifest(size, integ, parent)
    with open(os.path.join(snapdir, "manifest.json"), "wb") as f:
        f.write(data)
    return digest


def make_bundle(snapdirs, out, level=3):
    """Writes snapdirs (parents first) as a 0.6.2-layout .tar.zst bundle."""
    tar_path = out + ".tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as t:
        for d in snapdirs:
            with open(os.path.join(d, "manifest.json"), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            prefix = "sha256-" + digest[:16]
            for name in ("manifest.json", "upper.ext4"):
                t.add(os.path.join(d, name), arcname=f"{prefix}/{name}", recursive=False)
    subprocess.run(["zstd", "-q", "-f", f"-{level}", "-T0", "--rm", tar_path, "-o", out], check=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: bundlegen.py <dir> <size-bytes> <out.tar.zst>")
    d, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    make_snapshot(d, size)
    make_bundle([d], out)
