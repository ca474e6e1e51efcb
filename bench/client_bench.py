#!/usr/bin/env python3
"""The Berth client against skopeo and tar|gzip, side by side.

Rows:
  copy   `berth copy` vs `skopeo copy --preserve-digests` of one OCI layout (one 1 GiB
         layer plus 50 small layers) into a Berth registry, a fresh one for every sample
  pack   `berth pack` of a 1 GiB tree with zstd and with gzip, vs `tar -c | gzip`

Run:  .venv/bin/python bench/client_bench.py [--size-mib 1024] [--small 50] [--rounds 3]
The registry is started on a free loopback port and stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BERTH = [sys.executable, "-m", "client.cli"]
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def registry(root: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*BERTH, "serve", "--listen", f"127.0.0.1:{port}", "--root", str(root)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def write_blob(layout: Path, chunks: Iterator[bytes]) -> tuple[str, int]:
    tmp = layout / "blobs" / "sha256" / "incoming"
    h, size = hashlib.sha256(), 0
    with open(tmp, "wb") as out:
        for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
            out.write(chunk)
    tmp.rename(tmp.with_name(h.hexdigest()))
    return f"sha256:{h.hexdigest()}", size


def make_layout(path: Path, big_mib: int, small: int) -> None:
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    block = os.urandom(8 * MiB)
    layers = []
    big = write_blob(path, (block[i % 7:] + block[: i % 7] for i in range(big_mib // 8)))
    layers.append(big)
    for n in range(small):
        layers.append(write_blob(path, iter([gzip.compress(os.urandom(4096 + n), mtime=0)])))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = write_blob(path, iter([config]))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg[0], "size": cfg[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": d, "size": s} for d, s in layers],
    }).encode()
    man = write_blob(path, iter([manifest]))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man[0],
        "size": man[1], "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))


def make_tree(path: Path, size_mib: int) -> None:
    """Half incompressible, half text-like: a realistic mix for compressors."""
    random_block = os.urandom(4 * MiB)
    text_block = (b"".join(f"line {i}: the quick brown fox\n".encode() for i in range(150000))
                  [: 4 * MiB])
    for n in range(size_mib // 4):
        directory = path / f"d{n % 16:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{n:04d}").write_bytes(random_block if n % 2 else text_block)


def timed(fn: Callable[[], None], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        subprocess.run(["sync"], check=False)
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(argv: list[str], **kwargs: object) -> None:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}…: {result.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, float, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="berth-client-bench-") as scratch:
        base = Path(scratch)
        layout = base / "layout"
        make_layout(layout, args.size_mib, args.small)
        counter = iter(range(10_000))

        def fresh(copy: Callable[[str], None]) -> Callable[[], float]:
            """Time one copy into a registry of its own (nothing to skip or mount, and
            skopeo's blob-info cache, keyed by host:port, cannot help either side)."""
            def sample() -> float:
                with registry(base / f"registry-{next(counter)}") as host:
                    subprocess.run(["sync"], check=False)
                    started = time.perf_counter()
                    copy(host)
                    return time.perf_counter() - started
            return sample

        def berth_copy(host: str) -> None:
            run([*BERTH, "copy", f"oci:{layout}:v1", f"{host}/app:v1", "-q"])

        def skopeo_copy(host: str) -> None:
            run(["skopeo", "copy", "--quiet", "--insecure-policy", "--dest-tls-verify=false",
                 "--preserve-digests", f"oci:{layout}:v1", f"docker://{host}/app:v1"])

        if shutil.which("skopeo"):
            ours, theirs = fresh(berth_copy), fresh(skopeo_copy)
            berth_times, skopeo_times = [], []
            for _ in range(args.rounds):  # alternate, so slow phases hit both
                berth_times.append(ours())
                skopeo_times.append(theirs())
            rows.append(("copy layout → registry (s)", statistics.median(berth_times),
                         "skopeo copy", statistics.median(skopeo_times)))
        shutil.rmtree(layout)
        tree = base / "tree"
        make_tree(tree, args.size_mib)
        out = base / "out.tar.gz"

        def pack(compress: str) -> Callable[[], None]:
            def go() -> None:
                shutil.rmtree(base / "packed", ignore_errors=True)
                run([*BERTH, "pack", str(tree), "--compress", compress, "-q",
                     "-o", f"oci:{base / 'packed'}:v1"])
            return go

        def tar_gzip() -> None:
            subprocess.run(f"tar -C {tree} -cf - . | gzip > {out}", shell=True, check=True)

        reference = timed(tar_gzip, args.rounds)
        rows.append(("pack zstd (s)", timed(pack("zstd"), args.rounds), "tar | gzip", reference))
        rows.append(("pack gzip (s)", timed(pack("gzip"), args.rounds), "tar | gzip", reference))
    print(f"{'row':<30} {'berth':>9}  {'reference':<12} {'ref':>9} {'ratio':>7}")
    for name, berth_s, ref_name, ref_s in rows:
        print(f"{name:<30} {berth_s:>9.2f}  {ref_name:<12} {ref_s:>9.2f} {ref_s / berth_s:>7.2f}")
    print("ratio = reference time / Berth time (> 1.0: Berth is faster)")


if __name__ == "__main__":
    main()
