#!/usr/bin/env python3
"""Berth against the CNCF distribution registry (Debian's `docker-registry`), side by side.

Both servers run on free loopback ports with their own temporary storage and default
settings (Berth: `berth serve --listen ... --root ...`; distribution: filesystem storage,
deletes enabled, log level warn, `catalog.maxentries` raised from 1000 to 5000 so that
`?n=5000` is accepted). The same aiohttp client workload runs against each and one table
is printed:

    row | unit | Berth | reference | ratio (> 1.0 means Berth is better)

Run:  .venv/bin/python bench/registry_bench.py [--quick] [--size-mib N] [--rounds N]
      [--only berth|reference] [--markdown] [--keep]

Method: each step sets up its data on every server (untimed), then takes its timed
samples in rounds that alternate between the servers (Berth, reference, Berth, ...), so
that slow phases of a shared, noisy machine hit both; the median is reported. Pushes use
fresh content in each round. sync(2) runs, untimed, before every sample, so one server's
dirty pages are not written back during the other's measurement (distribution does not
fsync, Berth does by default: this is part of what is compared). distribution 2.8 does
not finish an upload on `POST ?digest=` (it opens a session, 202): for it, "monolithic"
pushes are POST then PUT ?digest=, as the spec's fallback prescribes.

S3 mode (`--s3`): one throw-away Ceph RADOS Gateway on loopback (deploy/rgw/rgw.py) with
one bucket; Berth stores under the key prefix `berth`, distribution under `distribution`,
both with their default blob redirects (a GET answers 307 to a presigned RGW URL, which the
client follows). Only the push, pull and small-blob rows run (200 small blobs by default;
`--rounds` defaults to 1 there: the RGW's OSD is a 10 GiB file). The gateway is stopped with
`rgw.py stop` on exit, on Ctrl-C and on SIGTERM.

Progress, each sample with the server's CPU seconds, and errors go to stderr; the table
goes to stdout. The servers are stopped by PID on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

import aiohttp
import psutil  # type: ignore[import-untyped, unused-ignore]
import yaml
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
MB = 1_000_000

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"
OCTET = "application/octet-stream"

BERTH = "berth"
REFERENCE = "reference"


class BenchError(Exception):
    """A server answered something the workload did not expect."""


# -- parameters ----------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    size: int  # bytes of each big blob
    chunk: int  # PATCH size for the chunked push
    small_count: int
    small_size: int
    small_concurrency: int
    head_seconds: float
    head_warmup: float
    head_concurrency: int
    tag_count: int
    tag_concurrency: int
    repo_count: int
    repo_concurrency: int
    rounds: int  # timed rounds of each push/pull row (median reported)
    gets: int  # timed GETs of tags/list and _catalog (median reported)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Params:
        quick, s3 = bool(args.quick), bool(args.s3)
        size_mib = args.size_mib if args.size_mib is not None else (64 if quick else 1024)
        return cls(
            size=size_mib * MiB,
            chunk=16 * MiB,
            small_count=100 if quick else (200 if s3 else 500),
            small_size=64 * 1024,
            small_concurrency=16,
            head_seconds=2.0 if quick else 10.0,
            head_warmup=0.5 if quick else 1.0,
            head_concurrency=64,
            tag_count=500 if quick else 10_000,
            tag_concurrency=16,
            repo_count=200 if quick else 2_000,
            repo_concurrency=16,
            rounds=args.rounds if args.rounds is not None else (1 if s3 else 3),
            gets=5,
        )


# -- deterministic data ----------------------------------------------------------------


class Pattern:
    """`size` pseudo-random bytes: a seeded buffer of `period` bytes, repeated. Streamed in
    slices of the buffer, never materialised; the digest is computed once."""

    def __init__(self, seed: int, size: int, period: int = 8 * MiB) -> None:
        self.size = size
        self.period = period
        self.buf = memoryview(random.Random(seed).randbytes(period))
        self._digest: str | None = None

    def pieces(self, offset: int, length: int, piece: int = MiB) -> Iterator[memoryview]:
        position, remaining = offset, length
        while remaining > 0:
            start = position % self.period
            n = min(piece, self.period - start, remaining)
            yield self.buf[start : start + n]
            position += n
            remaining -= n

    async def stream(self, offset: int, length: int) -> AsyncIterator[memoryview]:
        for piece in self.pieces(offset, length):
            yield piece

    @property
    def digest(self) -> str:
        if self._digest is None:
            hasher = hashlib.sha256()
            for piece in self.pieces(0, self.size, self.period):
                hasher.update(piece)
            self._digest = f"sha256:{hasher.hexdigest()}"
        return self._digest


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def small_blobs(count: int, size: int, seed: int) -> list[tuple[bytes, str]]:
    rng = random.Random(seed)
    blobs = [rng.randbytes(size) for _ in range(count)]
    return [(b, sha256(b)) for b in blobs]


# -- servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A registry process on loopback, started and stopped by PID."""

    def __init__(self, kind: str, title: str, argv: list[str], workdir: Path, port: int,
                 env: dict[str, str] | None = None) -> None:
        self.kind, self.title, self.argv = kind, title, argv
        self.workdir, self.port, self.env = workdir, port, env
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as out:
            # Own session: a Ctrl-C reaches only this script, which then stops the server.
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.workdir, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.kind} exited with {self.proc.returncode}:\n"
                                 f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise BenchError(f"{self.kind} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children so far."""
        try:
            proc = psutil.Process(self.pid)
            total = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
            return total
        except psutil.Error:
            return math.nan


def berth_server(workroot: Path, s3: S3Endpoint | None = None) -> Server:
    workdir = workroot / "berth"
    workdir.mkdir()
    port = free_port()
    exe = ROOT / ".venv" / "bin" / "berth"
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "client.cli"]
    argv = [*launcher, "serve", "--listen", f"127.0.0.1:{port}"]
    if s3 is None:
        argv += ["--root", str(workdir / "data")]
    else:
        config = {
            "storage": {
                "s3": {
                    "bucket": s3.bucket, "region": s3.region, "regionendpoint": s3.endpoint,
                    "accesskey": s3.access_key, "secretkey": s3.secret_key,
                    "forcepathstyle": True, "rootdirectory": "berth",
                },
                "redirect": {"disable": False},  # the default, spelt out
            },
        }
        config_file = workdir / "config.yml"
        config_file.write_text(yaml.safe_dump(config))
        argv += ["--config", str(config_file)]
    # Defaults only: no BERTH_* overrides from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return Server(BERTH, "Berth" if s3 is None else "Berth (S3)", argv, workdir, port, env)


def reference_server(workroot: Path, s3: S3Endpoint | None = None) -> Server:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise BenchError("docker-registry is not installed (apt-get install docker-registry)")
    workdir = workroot / "reference"
    workdir.mkdir()
    port = free_port()
    storage: dict[str, object] = {
        "filesystem": {"rootdirectory": str(workdir / "data")},
        "delete": {"enabled": True},
    }
    if s3 is not None:
        # 2.8 has no `forcepathstyle`: a `regionendpoint` implies path-style addressing.
        # `storage.redirect` is left at its default (enabled): GETs answer 307 to RGW.
        storage["s3"] = {
            "bucket": s3.bucket, "region": s3.region, "regionendpoint": s3.endpoint,
            "accesskey": s3.access_key, "secretkey": s3.secret_key,
            "secure": False, "v4auth": True, "rootdirectory": "/distribution",
        }
        del storage["filesystem"]
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": storage,
        "http": {"addr": f"127.0.0.1:{port}"},
        # 2.8.2 refuses n > 1000 (CVE-2023-2253 fix); allow one page of every repository.
        "catalog": {"maxentries": 5000},
    }
    config_file = workdir / "config.yml"
    config_file.write_text(yaml.safe_dump(config))
    title = "distribution 2.8.2" if s3 is None else "distribution 2.8.2, S3"
    # aws-sdk-go panics at start ("LoadCustomCABundleError ... unsupported transport") if
    # AWS_CA_BUNDLE is set; the RGW is plain HTTP, so the bundle is not needed.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return Server(REFERENCE, title, [binary, "serve", str(config_file)], workdir, port, env)


@dataclass(frozen=True)
class S3Endpoint:
    endpoint: str
    bucket: str
    region: str
    access_key: str
    secret_key: str


class Rgw:
    """A throw-away Ceph RADOS Gateway (deploy/rgw/rgw.py) with one bucket."""

    script = ROOT / "deploy" / "rgw" / "rgw.py"
    bucket = "bench"

    def __init__(self, workroot: Path) -> None:
        self.dir = workroot / "rgw"
        self.endpoint: S3Endpoint | None = None

    def start(self) -> S3Endpoint:
        if shutil.which("radosgw") is None or shutil.which("ceph-osd") is None:
            raise BenchError("Ceph is not installed (see deploy/rgw/README.md)")
        self.dir.mkdir()  # from here on, stop() runs `rgw.py stop`
        started = subprocess.run(
            [sys.executable, str(self.script), "start", str(self.dir)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if started.returncode != 0:
            raise BenchError(f"rgw.py start failed:\n{started.stderr.strip()}")
        info = json.loads(started.stdout.strip().splitlines()[-1])
        endpoint = S3Endpoint(info["endpoint"], self.bucket, info["region"],
                              info["access_key"], info["secret_key"])
        import boto3

        boto3.client(
            "s3", endpoint_url=endpoint.endpoint, region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret_key,
        ).create_bucket(Bucket=endpoint.bucket)
        self.endpoint = endpoint
        return endpoint

    def stop(self) -> None:
        if not self.dir.exists():
            return
        stopped = subprocess.run(
            [sys.executable, str(self.script), "stop", str(self.dir)],
            capture_output=True, text=True, timeout=180, check=False,
        )
        if stopped.returncode != 0:
            log(None, f"rgw.py stop failed: {stopped.stderr.strip()}")
        else:
            log(None, "RGW stopped")


class RssSampler(threading.Thread):
    """Peak RSS of each server process tree, sampled every `interval` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.procs: dict[str, psutil.Process] = {}
        self.peak: dict[str, int] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def add(self, kind: str, pid: int) -> None:
        with self._lock:
            self.procs[kind] = psutil.Process(pid)
            self.peak.setdefault(kind, 0)

    def sample(self) -> None:
        with self._lock:
            for kind, proc in self.procs.items():
                try:
                    tree = [proc, *proc.children(recursive=True)]
                    rss = 0
                    for p in tree:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            rss += p.memory_info().rss
                except psutil.Error:
                    continue
                self.peak[kind] = max(self.peak[kind], rss)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self.sample()
        self._stop_event.set()
        if self.is_alive():
            self.join(5)


# -- HTTP helpers ------------------------------------------------------------------------


def client(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600),
        auto_decompress=False,
    )


async def expect(resp: aiohttp.ClientResponse, *statuses: int) -> None:
    if resp.status not in statuses:
        body = await resp.text(errors="replace")
        raise BenchError(
            f"{resp.method} {resp.url.path}: HTTP {resp.status}, expected "
            f"{' or '.join(map(str, statuses))}: {body[:600]}"
        )


def _url(text: str) -> URL:
    return URL(text, encoded=True)  # keep the server's own encoding of Location


def absolute(base: str, location: str) -> str:
    return location if location.startswith(("http://", "https://")) else base + location


def with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


@dataclass
class Target:
    server: Server
    single_post: bool = True  # does POST ?digest= with a body finish the upload (201)?

    @property
    def kind(self) -> str:
        return self.server.kind

    @property
    def base(self) -> str:
        return self.server.base


async def start_upload(s: aiohttp.ClientSession, t: Target, repo: str) -> str:
    async with s.post(_url(f"{t.base}/v2/{repo}/blobs/uploads/")) as resp:
        await expect(resp, 202)
        return absolute(t.base, resp.headers["Location"])


async def push_blob(s: aiohttp.ClientSession, t: Target, repo: str, data: bytes,
                    digest: str) -> None:
    """Monolithic push: one POST ?digest= where supported, else POST then PUT ?digest=."""
    headers = {"Content-Type": OCTET}
    if t.single_post:
        url = _url(f"{t.base}/v2/{repo}/blobs/uploads/?digest={digest}")
        async with s.post(url, data=data, headers=headers) as resp:
            await expect(resp, 201)
        return
    location = await start_upload(s, t, repo)
    async with s.put(_url(with_digest(location, digest)), data=data, headers=headers) as resp:
        await expect(resp, 201)


async def probe_single_post(s: aiohttp.ClientSession, t: Target) -> None:
    """Find out whether the server finishes an upload on POST ?digest= (untimed)."""
    data = b"berth-bench single-POST probe"
    digest = sha256(data)
    url = _url(f"{t.base}/v2/bench/probe/blobs/uploads/?digest={digest}")
    async with s.post(url, data=data, headers={"Content-Type": OCTET}) as resp:
        await expect(resp, 201, 202)
        t.single_post = resp.status == 201
        location = absolute(t.base, resp.headers.get("Location", ""))
    if not t.single_post:  # the spec's fallback: finish the session it opened
        async with s.put(_url(with_digest(location, digest)), data=data,
                         headers={"Content-Type": OCTET}) as resp:
            await expect(resp, 201)


async def push_image(s: aiohttp.ClientSession, t: Target, repo: str, seed: int) -> bytes:
    """Push a config and a 1 KiB layer into `repo`; return a manifest referencing them."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = random.Random(seed).randbytes(1024)
    for blob in (config, layer):
        await push_blob(s, t, repo, blob, sha256(blob))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }
    return json.dumps(manifest, indent=2).encode()


async def put_manifest(s: aiohttp.ClientSession, t: Target, repo: str, reference: str,
                       body: bytes) -> None:
    url = _url(f"{t.base}/v2/{repo}/manifests/{reference}")
    async with s.put(url, data=body, headers={"Content-Type": OCI_MANIFEST}) as resp:
        await expect(resp, 201)


async def bounded(concurrency: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run the jobs with at most `concurrency` in flight; the first failure stops all."""
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            await job()

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(jobs)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the workload --------------------------------------------------------------------------


BIG_REPO = "bench/big"
SMALL_REPO = "bench/small"
HEAD_REPO = "bench/head"
TAGS_REPO = "bench/tags"
CATALOG_PREFIX = "bench-catalog/r"
Job = Callable[[], Awaitable[None]]


@dataclass
class Workload:
    """The data (built once, identical for both servers) and the timed operations.

    Each method that takes a round index `i` is one timed sample; rounds alternate between
    the servers and the table reports the median. Pushes use fresh content in every round."""

    params: Params
    mono: list[Pattern]
    chunked: list[Pattern]
    smalls: list[list[tuple[bytes, str]]]
    catalog_blobs: list[tuple[bytes, str]]
    head_digest: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, params: Params) -> Workload:
        rounds = params.rounds
        mono = [Pattern(100 + i, params.size) for i in range(rounds)]
        chunked = [Pattern(200 + i, params.size) for i in range(rounds)]
        for pattern in (*mono, *chunked):
            _ = pattern.digest
        smalls = [
            small_blobs(params.small_count, params.small_size, seed=300 + i)
            for i in range(rounds)
        ]
        return cls(params, mono, chunked, smalls, small_blobs(params.repo_count, 1024, seed=4))

    async def prepare(self, t: Target) -> None:
        async with client(4) as s:
            await probe_single_post(s, t)
        if not t.single_post:
            log(t, "POST ?digest= is not supported: monolithic pushes use POST then PUT")

    # -- big blobs

    async def push_monolithic(self, t: Target, i: int) -> dict[str, float]:
        p = self.mono[i]
        async with client(2) as s:
            started = time.perf_counter()
            location = await start_upload(s, t, BIG_REPO)
            headers = {"Content-Type": OCTET, "Content-Length": str(p.size)}
            async with s.put(_url(with_digest(location, p.digest)),
                             data=p.stream(0, p.size), headers=headers) as resp:
                await expect(resp, 201)
            elapsed = time.perf_counter() - started
            await self._check_size(s, t, p)
        return {"push_mono": p.size / elapsed / MB}

    async def push_chunked(self, t: Target, i: int) -> dict[str, float]:
        p, chunk = self.chunked[i], self.params.chunk
        async with client(2) as s:
            started = time.perf_counter()
            location = await start_upload(s, t, BIG_REPO)
            for offset in range(0, p.size, chunk):
                n = min(chunk, p.size - offset)
                headers = {
                    "Content-Type": OCTET, "Content-Length": str(n),
                    "Content-Range": f"{offset}-{offset + n - 1}",
                }
                async with s.patch(_url(location), data=p.stream(offset, n),
                                   headers=headers) as resp:
                    await expect(resp, 202)
                    location = absolute(t.base, resp.headers["Location"])
            put_started = time.perf_counter()
            async with s.put(_url(with_digest(location, p.digest)),
                             headers={"Content-Length": "0"}) as resp:
                await expect(resp, 201)
            elapsed = time.perf_counter() - started
            final_put = time.perf_counter() - put_started
            await self._check_size(s, t, p)
        # final_put_s (the closing PUT alone) is logged, not tabled
        return {"push_chunked": p.size / elapsed / MB, "final_put_s": final_put}

    async def _check_size(self, s: aiohttp.ClientSession, t: Target, p: Pattern) -> None:
        async with s.head(_url(f"{t.base}/v2/{BIG_REPO}/blobs/{p.digest}"),
                          allow_redirects=True) as resp:
            await expect(resp, 200)
            if resp.content_length != p.size:
                raise BenchError(f"HEAD blob: size {resp.content_length}, pushed {p.size}")

    async def pull(self, t: Target, i: int) -> dict[str, float]:
        p = self.mono[0]  # pushed in the first round of the monolithic step
        async with client(2) as s:
            started = time.perf_counter()
            received = 0
            async with s.get(_url(f"{t.base}/v2/{BIG_REPO}/blobs/{p.digest}"),
                             allow_redirects=True) as resp:
                await expect(resp, 200)
                async for data in resp.content.iter_any():
                    received += len(data)
                hops = [f"{r.status} to {r.headers.get('Location', '?')[:60]}..."
                        for r in resp.history]
            elapsed = time.perf_counter() - started
        if i == 0 and hops:
            log(t, f"pull: followed {', '.join(hops)}")
        if received != p.size:
            raise BenchError(f"GET blob: received {received} bytes, expected {p.size}")
        return {"pull": p.size / elapsed / MB}

    # -- many small blobs

    async def small_pushes(self, t: Target, i: int) -> dict[str, float]:
        pr, blobs = self.params, self.smalls[i]
        async with client(pr.small_concurrency) as s:
            jobs: list[Job] = [
                partial(push_blob, s, t, SMALL_REPO, blob, digest) for blob, digest in blobs
            ]
            started = time.perf_counter()
            await bounded(pr.small_concurrency, jobs)
            elapsed = time.perf_counter() - started
        return {"small": len(blobs) / elapsed}

    # -- manifest HEAD under load

    async def head_setup(self, t: Target) -> None:
        async with client(2) as s:
            body = await push_image(s, t, HEAD_REPO, seed=5)
            await put_manifest(s, t, HEAD_REPO, "latest", body)
        self.head_digest[t.kind] = sha256(body)

    async def manifest_heads(self, t: Target, i: int) -> dict[str, float]:
        pr, digest = self.params, self.head_digest[t.kind]
        url = _url(f"{t.base}/v2/{HEAD_REPO}/manifests/latest")
        headers = {"Accept": MANIFEST_ACCEPT}
        async with client(pr.head_concurrency) as s:

            async def load(seconds: float, latencies: list[float]) -> float:
                deadline = time.perf_counter() + seconds

                async def worker() -> None:
                    while time.perf_counter() < deadline:
                        begun = time.perf_counter()
                        async with s.head(url, headers=headers) as resp:
                            if resp.status != 200:
                                await expect(resp, 200)
                            if resp.headers.get("Docker-Content-Digest") != digest:
                                raise BenchError("HEAD manifest: wrong Docker-Content-Digest")
                        latencies.append(time.perf_counter() - begun)

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(pr.head_concurrency)))
                return time.perf_counter() - started

            await load(pr.head_warmup, [])  # connections open, caches warm (not counted)
            latencies: list[float] = []
            elapsed = await load(pr.head_seconds, latencies)
        latencies.sort()
        p99 = latencies[max(math.ceil(0.99 * len(latencies)) - 1, 0)]
        return {"head_rps": len(latencies) / elapsed, "head_p99": p99 * 1000}

    # -- listings

    def tag_names(self) -> list[str]:
        return [f"v{i:05d}" for i in range(self.params.tag_count)]

    async def tags_setup(self, t: Target) -> None:
        pr = self.params
        async with client(pr.tag_concurrency) as s:
            body = await push_image(s, t, TAGS_REPO, seed=6)
            jobs: list[Job] = [
                partial(put_manifest, s, t, TAGS_REPO, tag, body) for tag in self.tag_names()
            ]
            started = time.perf_counter()
            await bounded(pr.tag_concurrency, jobs)
        elapsed = time.perf_counter() - started
        log(t, f"setup: {pr.tag_count} manifest PUTs by tag in {elapsed:.1f} s "
               f"({pr.tag_count / elapsed:.0f}/s)")

    async def tags_list(self, t: Target, i: int) -> dict[str, float]:
        raw, elapsed = await timed_get(t, f"/v2/{TAGS_REPO}/tags/list")
        listed = json.loads(raw)["tags"]
        if sorted(listed) != self.tag_names():
            raise BenchError(f"tags/list: {len(listed)} tags, expected {self.params.tag_count}")
        return {"tags": elapsed * 1000}

    def repo_names(self) -> list[str]:
        return [f"{CATALOG_PREFIX}{i:05d}" for i in range(self.params.repo_count)]

    async def catalog_setup(self, t: Target) -> None:
        pr = self.params
        async with client(pr.repo_concurrency) as s:
            jobs: list[Job] = [
                partial(push_blob, s, t, name, blob, digest)
                for name, (blob, digest) in zip(self.repo_names(), self.catalog_blobs,
                                                strict=True)
            ]
            started = time.perf_counter()
            await bounded(pr.repo_concurrency, jobs)
        elapsed = time.perf_counter() - started
        log(t, f"setup: {pr.repo_count} repositories (one blob each) in {elapsed:.1f} s")

    async def catalog(self, t: Target, i: int) -> dict[str, float]:
        raw, elapsed = await timed_get(t, "/v2/_catalog?n=5000")
        listed = set(json.loads(raw)["repositories"])
        missing = [n for n in self.repo_names() if n not in listed]
        if missing:
            raise BenchError(f"_catalog: {len(missing)} of {len(self.repo_names())} "
                             f"repositories missing (e.g. {missing[0]}); listed {len(listed)}")
        return {"catalog": elapsed * 1000}


async def timed_get(t: Target, path: str) -> tuple[bytes, float]:
    """One GET on an already open connection: (body, seconds to the last byte)."""
    async with client(1) as s:
        async with s.get(_url(f"{t.base}/v2/")) as resp:
            await expect(resp, 200)
            await resp.read()
        started = time.perf_counter()
        async with s.get(_url(f"{t.base}{path}")) as resp:
            await expect(resp, 200)
            raw = await resp.read()
        return raw, time.perf_counter() - started


# -- rows and the table ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    decimals: int = 1


def rows_for(params: Params, s3: bool = False) -> list[Row]:
    size = (f"{params.size // MiB} MiB" if params.size % (1024 * MiB)
            else f"{params.size // (1024 * MiB)} GiB")
    med = f"median of {params.rounds}" if params.rounds > 1 else "1 round"
    rows = [
        Row("push_mono", f"push {size} blob, monolithic POST + PUT ({med})", "MB/s", True),
        Row("push_chunked", f"push {size} blob, {params.chunk // MiB} MiB PATCHes + PUT ({med})",
            "MB/s", True),
        Row("pull", f"pull {size} blob, GET ({med})", "MB/s", True),
        Row("small", f"{params.small_count} pushes of {params.small_size // 1024} KiB blobs, "
            f"concurrency {params.small_concurrency} ({med})", "blobs/s", True),
        Row("head_rps", f"manifest HEAD by tag, concurrency {params.head_concurrency}, "
            f"{params.head_seconds:g} s", "req/s", True, 0),
        Row("head_p99", "manifest HEAD by tag, p99 latency", "ms", False, 2),
        Row("tags", f"tags/list of {params.tag_count:,} tags (median of {params.gets} GETs)",
            "ms", False, 2),
        Row("catalog", f"_catalog of {params.repo_count:,} repositories, n=5000 "
            f"(median of {params.gets} GETs)", "ms", False, 2),
        Row("rss", "peak server RSS over the run (incl. children)", "MiB", False),
    ]
    if s3:
        rows = [row for row in rows if row.key in S3_ROWS]
        rows[2] = Row("pull", f"pull {size} blob, GET + 307 to RGW ({med})", "MB/s", True)
    return rows


S3_ROWS = ("push_mono", "push_chunked", "pull", "small")


Cell = float | str  # a figure, or an error marker


def ratio(row: Row, berth: Cell | None, reference: Cell | None) -> str:
    if not isinstance(berth, float) or not isinstance(reference, float):
        return "-"
    if berth == 0 or reference == 0:
        return "-"
    value = berth / reference if row.higher_is_better else reference / berth
    return f"{value:.2f}"


def fmt(row: Row, cell: Cell | None) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, str):
        return cell
    return f"{cell:,.{row.decimals}f}"


def table(rows: list[Row], results: dict[str, dict[str, Cell]], titles: dict[str, str],
          markdown: bool) -> str:
    header = ["Row", "Unit", "Berth", f"Reference ({titles.get(REFERENCE, 'distribution')})",
              "Ratio (>1 = Berth better)"]
    body = [
        [row.label, row.unit, fmt(row, results[BERTH].get(row.key)),
         fmt(row, results[REFERENCE].get(row.key)),
         ratio(row, results[BERTH].get(row.key), results[REFERENCE].get(row.key))]
        for row in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "| " + " | ".join(["---", "---", "---:", "---:", "---:"]) + " |"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])


# -- driver ----------------------------------------------------------------------------------


def log(t: Target | None, message: str) -> None:
    prefix = f"[{t.kind}] " if t is not None else ""
    print(f"{time.strftime('%H:%M:%S')} {prefix}{message}", file=sys.stderr, flush=True)


async def sync_disks() -> None:
    """Flush dirty pages (untimed) so writeback does not leak into the next measurement."""
    await asyncio.get_running_loop().run_in_executor(None, os.sync)


Sample = Callable[[Workload, Target, int], Awaitable[dict[str, float]]]
Setup = Callable[[Workload, Target], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str
    keys: tuple[str, ...]  # the rows it fills
    sample: Sample  # one timed measurement
    rounds: int
    setup: Setup | None = None  # untimed, once per server
    needs: tuple[str, ...] = ()  # rows of earlier steps it depends on


def steps(params: Params, s3: bool = False) -> list[Step]:
    r, g = params.rounds, params.gets
    every = [
        Step("push monolithic", ("push_mono",), Workload.push_monolithic, r),
        Step("push chunked", ("push_chunked",), Workload.push_chunked, r),
        Step("pull", ("pull",), Workload.pull, r, needs=("push_mono",)),
        Step("small blobs", ("small",), Workload.small_pushes, r),
        Step("manifest HEAD", ("head_rps", "head_p99"), Workload.manifest_heads, 1,
             Workload.head_setup),
        Step("tags/list", ("tags",), Workload.tags_list, g, Workload.tags_setup),
        Step("_catalog", ("catalog",), Workload.catalog, g, Workload.catalog_setup),
    ]
    return [step for step in every if set(step.keys) <= set(S3_ROWS)] if s3 else every


Failure = (BenchError, aiohttp.ClientError, TimeoutError, OSError)


async def run_all(params: Params, targets: list[Target],
                  s3: bool = False) -> dict[str, dict[str, Cell]]:
    results: dict[str, dict[str, Cell]] = {t.kind: {} for t in targets}
    failed: set[tuple[str, str]] = set()  # (server, step)

    def fail(t: Target, step: Step, exc: BaseException) -> None:
        log(t, f"{step.name}: FAILED: {type(exc).__name__}: {exc}")
        code = t.server.returncode()
        if code is not None:
            log(t, f"the server has exited (code {code})")
        if not any(kind == t.kind for kind, _ in failed):  # the log tail once per server
            log(t, f"server log tail:\n{t.server.log_tail()}")
        failed.add((t.kind, step.name))
        results[t.kind]["__failed__"] = "yes"
        for key in step.keys:
            results[t.kind][key] = "ERROR"

    log(None, f"generating data ({params.rounds} x 2 blobs of {params.size // MiB} MiB: "
              f"digests; small blobs)")
    workload = await asyncio.get_running_loop().run_in_executor(None, Workload.build, params)
    for t in targets:
        await workload.prepare(t)
    for step in steps(params, s3):
        active = []
        for t in targets:
            if any(not isinstance(results[t.kind].get(k), float) for k in step.needs):
                log(t, f"{step.name}: skipped (an earlier step failed)")
                continue
            if step.setup is not None:
                try:
                    await step.setup(workload, t)
                except Failure as exc:
                    fail(t, step, exc)
                    continue
            active.append(t)
        samples: dict[str, list[dict[str, float]]] = {t.kind: [] for t in active}
        for i in range(step.rounds):  # alternate servers, round by round
            for t in active:
                if (t.kind, step.name) in failed:
                    continue
                await sync_disks()
                cpu_before = t.server.cpu_seconds()
                started = time.perf_counter()
                try:
                    figures = await step.sample(workload, t, i)
                except Failure as exc:
                    fail(t, step, exc)
                    continue
                wall = time.perf_counter() - started
                cpu = t.server.cpu_seconds() - cpu_before
                samples[t.kind].append(figures)
                shown = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
                log(t, f"{step.name} #{i + 1}: {shown}  "
                       f"({wall:.2f} s wall, server CPU {cpu:.2f} s)")
        for t in active:
            if (t.kind, step.name) in failed:
                continue
            for key in step.keys:
                values = [f[key] for f in samples[t.kind]]
                results[t.kind][key] = statistics.median(values)
                if len(values) > 1:
                    log(t, f"{step.name}: {key} median {statistics.median(values):,.2f} "
                           f"(min {min(values):,.2f}, max {max(values):,.2f})")
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=None,
                        help="size of each big blob in MiB (default 1024; 64 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 64 MiB, 100 blobs, 2 s, 500 tags, 200 repositories")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds of each push/pull row, servers alternating; "
                             "the median is reported (default 3; 1 with --s3)")
    parser.add_argument("--s3", action="store_true",
                        help="both servers on S3 storage (one throw-away Ceph RGW, one "
                             "bucket); push, pull and small-blob rows only")
    parser.add_argument("--only", choices=[BERTH, REFERENCE], help="run one server only")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' storage and logs (path printed at the end)")
    args = parser.parse_args(argv)
    if args.size_mib is not None and args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = Params.from_args(args)
    kinds = [args.only] if args.only else [BERTH, REFERENCE]
    workroot = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    servers: list[Server] = []
    rgw = Rgw(workroot) if args.s3 else None
    sampler = RssSampler()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, dict[str, Cell]] = {}
    titles: dict[str, str] = {}
    try:
        endpoint: S3Endpoint | None = None
        if rgw is not None:
            # Each big push stores the blob about twice before deletes (Berth: upload or
            # chunk objects, then the blob; distribution: the upload, then its copy), and
            # RGW frees deleted data only after its GC (60 s or more).
            written = params.size * params.rounds * 2 * 2 * len(kinds)
            if written > 8.5 * 1024 * MiB:
                raise BenchError(f"about {written / (1024 * MiB):.1f} GiB would be written "
                                 "to the RGW's 10 GiB OSD: lower --size-mib or --rounds")
            log(None, "starting a throw-away RGW (deploy/rgw/rgw.py)")
            endpoint = rgw.start()
            log(None, f"RGW on {endpoint.endpoint}, bucket {endpoint.bucket}")
        for kind in kinds:
            server = (berth_server(workroot, endpoint) if kind == BERTH
                      else reference_server(workroot, endpoint))
            servers.append(server)
            server.start()
            titles[kind] = server.title
            sampler.add(kind, server.pid)
            log(None, f"{kind}: pid {server.pid} on {server.base}")
        sampler.start()
        results = asyncio.run(run_all(params, [Target(s) for s in servers], args.s3))
    except KeyboardInterrupt:
        log(None, "interrupted: stopping the servers")
        return 130
    except BenchError as exc:
        log(None, f"error: {exc}")
        return 1
    finally:
        sampler.stop()
        for server in servers:
            server.stop()
        if rgw is not None:
            rgw.stop()
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            log(None, f"kept {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    for kind in kinds:
        if not args.s3:
            results[kind]["rss"] = sampler.peak.get(kind, 0) / MiB
    for kind in (BERTH, REFERENCE):
        results.setdefault(kind, {})
    failed = any(r.pop("__failed__", None) for r in results.values())
    rows = rows_for(params, args.s3)
    print(table(rows, results, titles, markdown=False))
    if args.markdown:
        print()
        print(table(rows, results, titles, markdown=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
