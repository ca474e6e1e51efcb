#!/usr/bin/env python3
"""Does a large manifest push stall the registry? Berth, distribution 3 and zot, same run.

Workload (issue 9, item 2): 100 distinct small layers are pushed, then four manifests of
25,000 layers each (~4 MB, cycling over those layers) are PUT at once, while a separate
process asks `GET /v2/` every 10 ms. Printed per registry (medians over `--rounds`): the
time until all four PUTs are answered, and the latency of `GET /v2/` meanwhile (p50,
p99, max). Target: Berth's /v2/ p99 under 100 ms.

Registries: Berth (`berth serve`, disk, fsync on), and the peers from ../shared/peers
(`start registry3|zot PORT ROOT`; skipped with a note when absent). Each runs on a free
loopback port with its own temporary root and is stopped by PID.

Run:  .venv/bin/python bench/manifest_stall_bench.py [--rounds N] [--layers N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    name: str
    port: int
    pid: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    host, port = url.removeprefix("http://").split(":")
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=1)
            conn.request("GET", "/v2/")
            if conn.getresponse().status in (200, 401):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def start(name: str, workdir: Path) -> Registry | None:
    port = free_port()
    root = workdir / name
    if name == "berth":
        log = open(workdir / "berth.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "serve", "--listen", f"127.0.0.1:{port}",
             "--root", str(root)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "BERTH_LOG__ACCESSLOG__DISABLED": "true"})
        pid = proc.pid
    else:
        if not (PEERS / "start").exists():
            print(f"{name}: ../shared/peers/start not found, skipped", file=sys.stderr)
            return None
        out = subprocess.run([str(PEERS / "start"), name, str(port), str(root)],
                             capture_output=True, text=True, check=True)
        pid = int(out.stdout.strip().splitlines()[-1])
    registry = Registry(name, port, pid, root)
    try:
        wait_ready(registry.url)
    except BaseException:
        registry.stop()
        raise
    return registry


def poll(url: str, stop: Event, out: multiprocessing.Queue[list[float]]) -> None:
    """In its own process: GET /v2/ every 10 ms on one keep-alive connection."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    latencies: list[float] = []
    while not stop.is_set():
        began = time.perf_counter()
        conn.request("GET", "/v2/")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - began)
        time.sleep(0.01)
    out.put(latencies)


def descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


async def round_(registry: Registry, layers: int, seed: int) -> tuple[float, list[float]]:
    repo = f"stall/r{seed}"
    blobs = [os.urandom(64) for _ in range(100)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    async with aiohttp.ClientSession() as session:
        for blob in [config, *blobs]:  # POST, then PUT ?digest= (every registry does it)
            async with session.post(f"{registry.url}/v2/{repo}/blobs/uploads/") as r:
                assert r.status == 202, await r.text()
                location = r.headers["Location"]
            if location.startswith("/"):
                location = registry.url + location
            sep = "&" if "?" in location else "?"
            digest = descriptor("", blob)["digest"]
            async with session.put(f"{location}{sep}digest={digest}", data=blob) as r:
                assert r.status == 201, await r.text()
        manifests = [json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, blobs[i % 100]) for i in range(layers)],
            "annotations": {"copy": str(n)},
        }).encode() for n in range(4)]

        stop = multiprocessing.Event()
        queue: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        poller = multiprocessing.Process(target=poll, args=(registry.url, stop, queue))
        poller.start()
        await asyncio.sleep(0.3)

        async def put(n: int) -> None:
            async with session.put(f"{registry.url}/v2/{repo}/manifests/m{n}",
                                   data=manifests[n],
                                   headers={"Content-Type": OCI_MANIFEST}) as r:
                assert r.status == 201, f"{registry.name}: {r.status} {await r.text()}"

        began = time.perf_counter()
        await asyncio.gather(*(put(n) for n in range(4)))
        elapsed = time.perf_counter() - began
        stop.set()
        latencies = queue.get(timeout=60)
        poller.join()
    return elapsed, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=25_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="berth-stall-"))
    registries = [r for r in (start(n, workdir) for n in ("berth", "registry3", "zot")) if r]
    results: dict[str, list[tuple[float, float, float, float]]] = {r.name: [] for r in registries}
    try:
        for seed in range(args.rounds):
            for registry in registries:  # alternate, so noisy phases hit every registry
                elapsed, lat = asyncio.run(round_(registry, args.layers, seed))
                row = (elapsed, percentile(lat, 0.5), percentile(lat, 0.99), max(lat))
                results[registry.name].append(row)
                print(f"{registry.name} round {seed}: puts {elapsed:.2f} s, /v2/ p50 "
                      f"{row[1] * 1e3:.1f} p99 {row[2] * 1e3:.1f} max {row[3] * 1e3:.1f} ms "
                      f"({len(lat)} GETs)", file=sys.stderr)
    finally:
        for registry in registries:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"4 x {args.layers:,}-layer manifests pushed at once; medians of {args.rounds}")
    print("| registry | 4 PUTs answered, s | /v2/ p50, ms | /v2/ p99, ms | /v2/ max, ms |")
    print("|---|---:|---:|---:|---:|")
    for name, rows in results.items():
        cols = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"| {name} | {cols[0]:.2f} | {cols[1] * 1e3:.1f} | {cols[2] * 1e3:.1f} "
              f"| {cols[3] * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
