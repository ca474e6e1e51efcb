#!/usr/bin/env python3
"""What `berth fsck` costs per GiB on disk.

Setup (untimed): a throw-away storage root with `--gib` GiB of random blobs of `--blob-mib`
MiB each, stored and linked by the registry's own stores over a `FilesystemDriver`
(`UploadStore.upload`, so the layout is exactly a pushed one), plus one image manifest in
`bench/fsck` naming them all. Each blob file is then flushed and dropped from the page
cache (`posix_fadvise(DONTNEED)`: no root needed), so the first run reads from the disk.

Then `berth fsck --root <tmp> --json` runs twice as a child process (the command as users
run it, interpreter start included): cold (after the cache was dropped) and warm (the
files now cached). The report: seconds, seconds per GiB, MiB/s; and, for scale, one
thread's SHA-256 over 256 MiB in memory (the CPU bound of one blob at a time).

Run:  .venv/bin/python bench/fsck_bench.py [--gib 2] [--blob-mib 64] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from client.oci.digest import Digest
from registry.config import load_config
from registry.storage import Registry, paths
from registry.storage.drivers.filesystem import FilesystemDriver

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
REPO = "bench/fsck"


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def populate(root: Path, count: int, size: int) -> list[Digest]:
    registry = Registry.assemble(FilesystemDriver(root, fsync=False), load_config(
        None, {}, environ={}))
    digests = []
    try:
        for _ in range(count):
            # the digest is known only after the bytes: hash once, then upload the same bytes
            seed = os.urandom(32)
            hasher = hashlib.sha256()
            for n in range(size // MiB):
                hasher.update(hashlib.shake_256(seed + n.to_bytes(4, "big")).digest(MiB))
            digest = Digest.parse("sha256:" + hasher.hexdigest())

            async def body(seed: bytes = seed) -> AsyncIterator[bytes]:
                for n in range(size // MiB):
                    yield hashlib.shake_256(seed + n.to_bytes(4, "big")).digest(MiB)

            await registry.uploads.upload(REPO, digest, body())
            digests.append(digest)
        config = b'{"architecture":"amd64","os":"linux"}'
        config_digest = Digest.parse("sha256:" + hashlib.sha256(config).hexdigest())
        await registry.uploads.upload(REPO, config_digest, _stream(config))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": str(config_digest), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": str(d), "size": size} for d in digests],
        }).encode()
        await registry.manifests.put(REPO, "latest", _stream(manifest),
                                     "application/vnd.oci.image.manifest.v1+json")
    finally:
        await registry.close()
    return digests


def drop_cache(root: Path, digests: list[Digest]) -> None:
    for digest in digests:
        fd = os.open(root / paths.blob_data(digest), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_fsck(root: Path) -> tuple[float, dict[str, object]]:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "from registry.commands import fsck; fsck()", "--root",
         str(root), "--json"], cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - began
    if result.returncode != 0:
        raise SystemExit(f"fsck exited {result.returncode}: {result.stderr}{result.stdout}")
    report: dict[str, object] = json.loads(result.stdout)
    return seconds, report


def hash_speed() -> float:
    data = os.urandom(256 * MiB)
    began = time.monotonic()
    hashlib.sha256(data).hexdigest()
    return 256 / (time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--blob-mib", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the storage root")
    args = parser.parse_args()
    size = args.blob_mib * MiB
    count = max(1, round(args.gib * 1024 / args.blob_mib))
    root = Path(tempfile.mkdtemp(prefix="berth-fsck-bench-"))
    try:
        print(f"writing {count} blobs of {args.blob_mib} MiB to {root}", file=sys.stderr)
        digests = asyncio.run(populate(root, count, size))
        drop_cache(root, digests)
        gib = count * size / (1 << 30)
        print(f"berth fsck over {gib:.2f} GiB in {count + 2} blobs (one repository)")
        print("run  | seconds | s/GiB | MiB/s")
        for label in ("cold", "warm"):
            seconds, report = run_fsck(root)
            assert report["problems"] == [], report["problems"]
            print(f"{label} | {seconds:7.2f} | {seconds / gib:5.2f} | "
                  f"{gib * 1024 / seconds:6.0f}")
        print(f"one thread's SHA-256 in memory: {hash_speed():.0f} MiB/s; "
              f"CPUs: {os.cpu_count()}")
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
