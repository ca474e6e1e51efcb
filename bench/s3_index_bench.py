#!/usr/bin/env python3
"""What `tags/list` and `_catalog` cost on S3: wall time and S3 requests, at scale.

One throw-away Ceph RADOS Gateway on loopback (deploy/rgw/rgw.py, through
bench/registry_bench.py's `Rgw`) and one `berth serve` on it with default settings
(`rootdirectory: berth`). Between the two sits a counting proxy in this process: Berth's
`regionendpoint` is the proxy, which forwards every byte to RGW and counts the HTTP
requests it sees, by S3 operation (read off the method, the query and the headers). Nothing
else talks to the proxy, so what it counts during an operation is what the operation cost.

Setup (untimed):
  1. a small image (config + 1 KiB layer) is pushed through Berth over HTTP into
     `bench/tags` (tag `latest`) and `bench/one` (tag `v1`);
  2. `--tags` more tags of that manifest in `bench/tags` and `--repos` repositories
     `bench/repos/rNNNNN`, each with the layer linked (what a cross-repository mount
     writes), are written straight to RGW by the registry's own storage classes
     (`TagStore.set`, `BlobStore.link` -> `RepositoryStore.register`) over an `S3Driver`,
     many at a time (asyncio.gather, a semaphore).

Then, over HTTP against the running server (each GET on a connection opened beforehand):
an idle window (the control: no S3 requests), `tags/list` of a one-tag repository, of
`bench/tags` whole, its first page with n=100 and all of it paginated with n=1000 (Link
headers followed to the end), `_catalog` the first time (it indexes the root once), whole,
its first page with n=100 and paginated with n=1000; every listing is checked against what
was written. The table:

    operation | HTTP requests | items | wall ms | S3 requests | by S3 operation

Berth's upload purging makes its first pass 60 s after start (and then daily): the
measurements wait for it and for the proxy to be idle, and say what it cost.

Run:  .venv/bin/python bench/s3_index_bench.py [--tags N] [--repos N] [--concurrency N]
      [--keep]
Progress goes to stderr, the table to stdout. Berth is stopped by PID, the RGW with
`rgw.py stop` (unless --keep), on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import yaml

if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.registry_bench import (
    BenchError,
    Rgw,
    S3Endpoint,
    Server,
    Target,
    _interrupt,
    _url,
    berth_server,
    client,
    expect,
    log,
    push_image,
    put_manifest,
    sha256,
)
from client.oci.digest import Digest
from registry.storage.blobs import BlobStore
from registry.storage.drivers.s3 import S3Driver
from registry.storage.repositories import RepositoryStore
from registry.storage.tags import TagStore

TAGS_REPO = "bench/tags"
ONE_REPO = "bench/one"
REPO_PREFIX = "bench/repos/r"
PAGE = 1000
PURGE_FIRST_PASS = 60.0  # registry/app.py: the first upload purging, seconds after start


# -- the counting proxy ------------------------------------------------------------------


def s3_operation(method: str, target: str, headers: dict[str, str]) -> str:
    """The S3 operation of a path-style request, from its method, query and headers."""
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True)
    on_bucket = split.path.strip("/").count("/") == 0
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if on_bucket:
            if "uploads" in query:
                return "ListMultipartUploads"
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        return "GetObject"
    if method == "HEAD":
        return "HeadBucket" if on_bucket else "HeadObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if on_bucket:
            return "CreateBucket"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return f"{method} (other)"


class CountingProxy:
    """A TCP proxy on loopback that forwards bytes both ways and counts the HTTP requests
    going upstream (it parses request heads and skips bodies by Content-Length or chunked
    framing; responses are copied unparsed). Runs its own event loop in a thread."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise BenchError(f"the proxy forwards plain http://host:port only, not {upstream}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.port = 0
        self._counts: Counter[str] = Counter()
        self._last_request = time.monotonic()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="s3-proxy",
                                        daemon=True)
        self._errors: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop)
        self._server = future.result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def idle_for(self) -> float:
        with self._lock:
            return time.monotonic() - self._last_request

    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def _count(self, operation: str) -> None:
        with self._lock:
            self._counts[operation] += 1
            self._last_request = time.monotonic()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host,
                                                                 self.upstream_port)
        except OSError:
            writer.close()
            return
        requests = asyncio.ensure_future(self._requests(reader, up_writer))
        responses = asyncio.ensure_future(self._copy(up_reader, writer))
        try:
            await asyncio.wait([requests, responses], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (requests, responses):
                task.cancel()
            await asyncio.gather(requests, responses, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
            if requests.done() and not requests.cancelled() and requests.exception():
                with self._lock:
                    self._errors.append(repr(requests.exception()))

    async def _requests(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed its connection between requests
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
            self._count(s3_operation(method, target, headers))
            writer.write(head)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                await self._chunked(reader, writer)
            else:
                await self._exactly(reader, writer, int(headers.get("content-length", "0")))
            await writer.drain()

    @staticmethod
    async def _exactly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       n: int) -> None:
        while n > 0:
            data = await reader.read(min(n, 1 << 20))
            if not data:
                raise ConnectionError("the client closed its connection inside a body")
            writer.write(data)
            n -= len(data)
            await writer.drain()

    async def _chunked(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    writer.write(line)
                    if line == b"\r\n":
                        return
            await self._exactly(reader, writer, size + 2)

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()


# -- populating through the storage layer --------------------------------------------------


def tag_names(count: int) -> list[str]:
    return [f"t{i:06d}" for i in range(count)]


def repo_names(count: int) -> list[str]:
    return [f"{REPO_PREFIX}{i:05d}" for i in range(count)]


async def gather_bounded(concurrency: int, jobs: list[Callable[[], Awaitable[None]]],
                         what: str) -> float:
    """Run the jobs, at most `concurrency` at once; progress on stderr; seconds taken."""
    semaphore = asyncio.Semaphore(concurrency)
    done = 0
    started = time.perf_counter()

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        nonlocal done
        async with semaphore:
            await job()
        done += 1
        if done % 20_000 == 0:
            rate = done / (time.perf_counter() - started)
            log(None, f"  {what}: {done:,}/{len(jobs):,} ({rate:,.0f}/s)")

    await asyncio.gather(*(one(job) for job in jobs))
    return time.perf_counter() - started


async def populate(endpoint: S3Endpoint, prefix: str, manifest: Digest, layer: Digest,
                   tags: int, repos: int, concurrency: int) -> None:
    """Write the tags and repositories with Berth's own storage classes, straight to RGW."""
    driver = S3Driver(endpoint.bucket,
                      region=endpoint.region, endpoint=endpoint.endpoint,
                      access_key=endpoint.access_key, secret_key=endpoint.secret_key,
                      prefix=prefix, path_style=True, max_threads=concurrency)
    try:
        tag_store = TagStore(driver)
        blob_store = BlobStore(driver, RepositoryStore(driver))
        tag_jobs: list[Callable[[], Awaitable[None]]] = [
            partial(tag_store.set, TAGS_REPO, t, manifest) for t in tag_names(tags)
        ]
        seconds = await gather_bounded(concurrency, tag_jobs, "tags")
        log(None, f"{tags:,} tags written by TagStore.set in {seconds:.1f} s "
                  f"({tags / seconds:,.0f}/s, one PUT each)")
        repo_jobs: list[Callable[[], Awaitable[None]]] = [
            partial(blob_store.link, n, layer) for n in repo_names(repos)
        ]
        seconds = await gather_bounded(concurrency, repo_jobs, "repositories")
        log(None, f"{repos:,} repositories written by BlobStore.link in {seconds:.1f} s "
                  f"({repos / seconds:,.0f}/s, two PUTs each: catalog marker, layer link)")
    finally:
        await driver.close()


# -- measuring over HTTP ------------------------------------------------------------------


@dataclass
class Measured:
    operation: str
    http: int  # HTTP requests to Berth
    items: int | None
    wall_ms: float
    s3: Counter[str]


NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


async def listing(proxy: CountingProxy, base: str, operation: str, path: str, key: str,
                  expected: list[str], follow: bool = False) -> Measured:
    """GET `path` (and, with `follow`, every next page its Link headers name) on one
    connection opened beforehand; check the items are `expected`; count the S3 requests
    it cost. No read timeout: at scale, one response may take many minutes."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
    )
    async with session as s:
        async with s.get(_url(f"{base}/v2/")) as resp:  # open the connection, untimed
            await expect(resp, 200)
            await resp.read()
        bodies: list[bytes] = []
        before = proxy.counts()
        started = time.perf_counter()
        url: str | None = path
        while url is not None:
            async with s.get(_url(base + url)) as resp:
                await expect(resp, 200)
                bodies.append(await resp.read())
                link = NEXT.search(resp.headers.get("Link", ""))
            url = link.group(1) if follow and link else None
        wall = time.perf_counter() - started
        cost = proxy.counts() - before
    items = [item for body in bodies for item in json.loads(body)[key]]
    if items != expected:
        differ = next((i for i, (a, b) in enumerate(zip(items, expected, strict=False))
                       if a != b), min(len(items), len(expected)))
        raise BenchError(f"{operation}: {len(items):,} items, {len(expected):,} expected; "
                         f"they differ at index {differ:,}")
    return Measured(operation, len(bodies), len(items), wall * 1000, cost)


async def idle(proxy: CountingProxy, seconds: float) -> Measured:
    before = proxy.counts()
    await asyncio.sleep(seconds)
    return Measured(f"idle server, {seconds:g} s (control)", 0, None, seconds * 1000,
                    proxy.counts() - before)


async def wait_quiet(proxy: CountingProxy, not_before: float, quiet: float = 2.0) -> None:
    """Until `not_before` (monotonic) has passed and the proxy saw nothing for `quiet` s."""
    while True:
        wait = max(not_before - time.monotonic(), quiet - proxy.idle_for())
        if wait <= 0:
            return
        await asyncio.sleep(wait)


async def run(args: argparse.Namespace, endpoint: S3Endpoint, prefix: str,
              proxy: CountingProxy, server: Server, started_at: float) -> list[Measured]:
    t = Target(server)
    base = server.base
    async with client(4) as s:
        body = await push_image(s, t, TAGS_REPO, seed=1)
        await put_manifest(s, t, TAGS_REPO, "latest", body)
        if await push_image(s, t, ONE_REPO, seed=1) != body:
            raise BenchError("push_image is not deterministic")
        await put_manifest(s, t, ONE_REPO, "v1", body)
    manifest = Digest.parse(sha256(body))
    layer = Digest.parse(json.loads(body)["layers"][0]["digest"])
    log(None, f"pushed one image through Berth ({manifest}) into {TAGS_REPO} and {ONE_REPO}")
    pushed = proxy.counts()

    log(None, f"writing {args.tags:,} tags and {args.repos:,} repositories through the "
              f"storage layer (S3Driver straight to RGW, concurrency {args.concurrency})")
    await populate(endpoint, prefix, manifest, layer, args.tags, args.repos, args.concurrency)
    if time.monotonic() < started_at + PURGE_FIRST_PASS:
        log(None, "waiting for Berth's first upload-purging pass (60 s after start)")
    await wait_quiet(proxy, started_at + PURGE_FIRST_PASS + 1.0)
    background = proxy.counts() - pushed
    log(None, f"S3 requests Berth made on its own since the push (upload purging's first "
              f"pass): {sum(background.values()):,} {dict(background)}")

    tags = sorted(["latest", *tag_names(args.tags)])
    repos = sorted([TAGS_REPO, ONE_REPO, *repo_names(args.repos)])
    first_n = 100
    steps: list[tuple[str, Callable[[], Awaitable[Measured]]]] = [
        ("idle", partial(idle, proxy, 2.0)),
        ("one-tag", partial(listing, proxy, base, "tags/list, a repository of 1 tag",
                            f"/v2/{ONE_REPO}/tags/list", "tags", ["v1"])),
        ("tags", partial(listing, proxy, base, f"tags/list, {len(tags):,} tags, whole",
                         f"/v2/{TAGS_REPO}/tags/list", "tags", tags)),
        ("tags-first", partial(listing, proxy, base, f"tags/list?n={first_n}, first page only",
                               f"/v2/{TAGS_REPO}/tags/list?n={first_n}", "tags",
                               tags[:first_n])),
        ("tags-pages", partial(listing, proxy, base, f"tags/list?n={PAGE}, every page",
                               f"/v2/{TAGS_REPO}/tags/list?n={PAGE}", "tags", tags, True)),
        ("catalog-first", partial(listing, proxy, base,
                                  "_catalog, first ever (indexes the root once)",
                                  "/v2/_catalog", "repositories", repos)),
        ("catalog", partial(listing, proxy, base, f"_catalog, {len(repos):,} repositories, "
                            "whole", "/v2/_catalog", "repositories", repos)),
        ("catalog-first-page", partial(listing, proxy, base,
                                       f"_catalog?n={first_n}, first page only",
                                       f"/v2/_catalog?n={first_n}", "repositories",
                                       repos[:first_n])),
        ("catalog-pages", partial(listing, proxy, base, f"_catalog?n={PAGE}, every page",
                                  f"/v2/_catalog?n={PAGE}", "repositories", repos, True)),
    ]
    results = []
    for _, step in steps:
        measured = await step()
        log(None, f"{measured.operation}: {measured.http} HTTP, {measured.wall_ms:,.1f} ms, "
                  f"{sum(measured.s3.values()):,} S3 requests {dict(measured.s3)}")
        results.append(measured)
    return results


# -- the table ----------------------------------------------------------------------------


def table(results: list[Measured]) -> str:
    header = ["operation", "HTTP requests", "items", "wall ms", "S3 requests",
              "by S3 operation"]
    body = [
        [m.operation, f"{m.http:,}", "-" if m.items is None else f"{m.items:,}",
         f"{m.wall_ms:,.1f}", f"{sum(m.s3.values()):,}",
         ", ".join(f"{op} {n:,}" for op, n in sorted(m.s3.items())) or "-"]
        for m in results
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths),
                      *(line(cells) for cells in body)])


# -- driver -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tags", type=int, default=100_000,
                        help="tags written in one repository (default 100000)")
    parser.add_argument("--repos", type=int, default=10_000,
                        help="repositories written (default 10000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="storage writes in flight while populating (default 64)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the RGW running (and its directory) for a look at the "
                             "bucket; how to stop it is printed")
    args = parser.parse_args(argv)
    if args.tags < 0 or args.repos < 0 or args.concurrency < 1:
        parser.error("--tags and --repos must be >= 0, --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    begun = time.perf_counter()
    workroot = Path(tempfile.mkdtemp(prefix="berth-s3-index-"))
    rgw = Rgw(workroot)
    proxy: CountingProxy | None = None
    server: Server | None = None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    results: list[Measured] = []
    prefix = "?"
    try:
        log(None, "starting a throw-away RGW (deploy/rgw/rgw.py)")
        endpoint = rgw.start()
        proxy = CountingProxy(endpoint.endpoint)
        proxy.start()
        log(None, f"RGW on {endpoint.endpoint}, bucket {endpoint.bucket}; counting proxy on "
                  f"{proxy.url}")
        server = berth_server(workroot, replace(endpoint, endpoint=proxy.url))
        server.start()
        started_at = time.monotonic()
        config = yaml.safe_load((server.workdir / "config.yml").read_text())
        prefix = str(config["storage"]["s3"]["rootdirectory"])
        log(None, f"berth: pid {server.pid} on {server.base}, key prefix {prefix!r}")
        results = asyncio.run(run(args, endpoint, prefix, proxy, server, started_at))
        if proxy.errors():
            raise BenchError(f"the proxy failed to forward: {proxy.errors()[:3]}")
    except KeyboardInterrupt:
        log(None, "interrupted: stopping")
        return 130
    except (BenchError, aiohttp.ClientError, OSError) as exc:
        log(None, f"error: {type(exc).__name__}: {exc}")
        if server is not None:
            log(None, f"berth log tail:\n{server.log_tail()}")
        return 1
    finally:
        if server is not None:
            server.stop()
        if proxy is not None:
            proxy.stop()
        if args.keep and rgw.endpoint is not None:
            e = rgw.endpoint
            log(None, f"RGW kept running: {e.endpoint} bucket {e.bucket} (Berth's keys under "
                      f"{prefix!r}), access key {e.access_key}, secret key {e.secret_key}; "
                      f"stop it with: python3 {Rgw.script} stop {rgw.dir}")
        else:
            rgw.stop()
            shutil.rmtree(workroot, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    print(table(results))
    print(f"\ntotal run time {time.perf_counter() - begun:,.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
