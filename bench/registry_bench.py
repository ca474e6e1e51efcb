#!/usr/bin/env python3
"""Berth against peer registries (distribution 2.8 and 3, zot, ...), side by side.

Every server runs on a free loopback port with its own fresh storage directory and the
same workload runs against each; one table is printed:

    row | unit | Berth | Berth (fsync off) | peer ... | Berth ÷ best peer | best peer

Servers:
- `berth`: `berth serve --listen ... --root ... --config ...` with default settings (so
  `berth.fsync: true`, access log on, one worker process per CPU). Berth runs from the
  checkout this script is in (PYTHONPATH is set to it, for the supervisor and its workers).
- `berth-nofsync`: the same with `berth.fsync: false` ("Berth (fsync off)"), the
  durability the peers have (`--no-fsync-off` leaves it out).
- `distribution-2.8`: Debian's `docker-registry` (distribution 2.8.2), filesystem
  storage, deletes enabled, log level warn, when it is installed (`--no-distribution`).
- `--peer NAME=COMMAND`, any number: COMMAND is split like a shell line and `{port}` and
  `{root}` in it are replaced by a free port and a fresh, empty storage directory. Two
  kinds of command work: one that stays in the foreground (the server; its PID is the
  process started), and a launcher that starts the server as a daemon, prints its PID (a
  line with only an integer) and exits 0, as `../shared/peers/start` does. Either way the
  server is stopped by that PID (SIGTERM, SIGKILL after 30 s; then its leftover children),
  and its RSS and CPU are those of that PID and its descendants.
- `--peers-shared`: adds `registry3` (CNCF distribution 3) and `zot` through
  `<peers-dir>/start NAME {port} {root}` (default peers dir: ../shared/peers next to the
  checkout; see its README.md for the builds and configs).

Run:  .venv/bin/python bench/registry_bench.py [--quick] [--peers-shared]
      [--peer 'NAME=COMMAND {port} {root}' ...] [--size-mib N] [--rounds N]
      [--only NAME ...] [--markdown] [--keep]

Method: each step sets up its data on every server (untimed), then takes its timed samples
in rounds that go through all servers in turn (the starting server rotates each round),
so that slow phases of a shared, noisy machine hit all; the median is reported. Pushes use
fresh content in each round. sync(2) runs, untimed, before every sample, so one server's
dirty pages are not written back during another's measurement.

Rows:
- push monolithic: POST, then one PUT ?digest= with the whole body (streamed, explicit
  Content-Length); chunked: POST, 16 MiB PATCHes with Content-Range, empty PUT ?digest=.
  Timed from the POST to the 201; a HEAD afterwards checks the size. MiB/s.
- pull: `curl -s -L -o /dev/null` of the monolithic blob (redirects followed), size
  checked; MiB/s = bytes / curl's time_total.
- small blobs: 500 distinct 64 KiB blobs at concurrency 16 (aiohttp), one POST ?digest=
  with the body where the server finishes an upload that way (probed once, untimed), else
  POST then PUT ?digest= (the spec's fallback; distribution 2.8 and 3 need it).
- manifest GET by tag / by digest: `wrk -t2 -c64 -d10s --latency` with
  `Accept: application/vnd.oci.image.manifest.v1+json` (distribution 3 answers 404 to an
  OCI manifest GET without it), after a 1 s wrk warm-up that is not counted; any non-2xx
  answer fails the row. One GET with aiohttp first checks status, digest and media type.
  req/s (the p99 latency goes to stderr).
- tags/list of 10,000 tags (one manifest PUT under each tag at concurrency 32, untimed)
  and _catalog of 2,000 repositories (a 2-blob image and a tag in each, concurrency 32,
  untimed): time to list them all on one already open connection, median of 11 samples,
  each checked for completeness. tags/list is asked without `n`; _catalog with `n=1000`
  (the largest page distribution accepts by default) and both follow `Link: rel="next"`,
  so every server serves the same two pages. These are latency rows (tens of ms per
  answer, one request at a time): the client is not the limit, and wrk could neither
  follow the pages nor check the listing, so they are timed with aiohttp.
- peak RSS: every 0.2 s the RSS of each server's process tree (the process and all its
  descendants: Berth's supervisor and workers together), peak over the whole run.
- CPU s/GiB pushed: user + system CPU of the server's process tree (including reaped
  children) over the samples of the three push rows, divided by the GiB they pushed.
  Kernel writeback threads are nobody's: a server that does not fsync leaves that work to
  them, one that fsyncs does part of it in its own system time.

Durability: Berth fsyncs blob data and links before it answers (`berth.fsync: true`, the
default); distribution and zot do not. Rows where this matters are marked † and show, in
parentheses, the ratio of the fsync-off Berth column as well.

Ratio: Berth ÷ the best peer (peers: every server that is not Berth) for rows where
higher is better; best peer ÷ Berth where lower is better (ms, MiB, s/GiB). Above 1.0
means Berth is better. A server that rejects a request gets "ERROR" in that row (the
reason and its log tail on stderr) and the run goes on; the script then exits 1.

S3 mode (`--s3`): one throw-away Ceph RADOS Gateway on loopback (deploy/rgw/rgw.py) with
one bucket; Berth stores under the key prefix `berth`, distribution 2.8 under
`distribution`, both with their default blob redirects (a GET answers 307 to a presigned
RGW URL, which curl follows). Only the push, pull, small-blob and CPU rows run (200 small
blobs by default; `--rounds` defaults to 1 there: the RGW's OSD is a 10 GiB file); no
other peers. The gateway is stopped with `rgw.py stop` on exit, on Ctrl-C and on SIGTERM.

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
import platform
import random
import re
import shlex
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
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import FrameType

import aiohttp
import psutil  # type: ignore[import-untyped, unused-ignore]
import yaml
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT.parent / "shared" / "peers"
MiB = 1024 * 1024
GiB = 1024 * MiB

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCTET = "application/octet-stream"

BERTH = "berth"
BERTH_NOFSYNC = "berth-nofsync"
DISTRIBUTION = "distribution-2.8"
SHARED_PEERS = ("registry3", "zot")
NO_FSYNC_PEERS = (DISTRIBUTION, *SHARED_PEERS)  # they answer before their data is on disk


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
    wrk_threads: int
    wrk_connections: int
    wrk_seconds: int
    tag_count: int
    repo_count: int
    setup_concurrency: int
    catalog_page: int
    rounds: int  # timed rounds of each push/pull row (median reported)
    gets: int  # timed listings of tags/list and _catalog (median reported)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Params:
        quick, s3 = bool(args.quick), bool(args.s3)
        size_mib = args.size_mib if args.size_mib is not None else (64 if quick else 512)
        return cls(
            size=size_mib * MiB,
            chunk=16 * MiB,
            small_count=100 if quick else (200 if s3 else 500),
            small_size=64 * 1024,
            small_concurrency=16,
            wrk_threads=2,
            wrk_connections=64,
            wrk_seconds=args.wrk_seconds if args.wrk_seconds is not None else (
                2 if quick else 10),
            tag_count=500 if quick else 10_000,
            repo_count=200 if quick else 2_000,
            setup_concurrency=32,
            catalog_page=100 if quick else 1000,
            rounds=args.rounds if args.rounds is not None else (1 if s3 or quick else 3),
            gets=3 if quick else 11,
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


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


class Server:
    """A registry process on loopback, started and stopped by PID.

    `argv` either runs the server in the foreground, or is a launcher that starts it as a
    daemon, prints its PID and exits 0; `pid` is the server's either way."""

    def __init__(self, kind: str, title: str, argv: list[str], workdir: Path, port: int,
                 env: dict[str, str] | None = None, *, berth: bool = False,
                 fsync: bool = False, extra_logs: tuple[Path, ...] = ()) -> None:
        self.kind, self.title, self.argv = kind, title, argv
        self.workdir, self.port, self.env = workdir, port, env
        self.berth = berth  # a Berth column (not a peer)
        self.fsync = fsync  # does it fsync blob data before answering?
        self.log = workdir / "server.log"  # the command's stderr
        self.out = workdir / "stdout.log"
        self.extra_logs = extra_logs  # where a daemon writes its log
        self.proc: subprocess.Popen[bytes] | None = None
        self.daemon_pid: int | None = None
        self._daemon: psutil.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.daemon_pid is not None:
            return self.daemon_pid
        assert self.proc is not None
        return self.proc.pid

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/v2/", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _printed_pid(self) -> int | None:
        try:
            lines = self.out.read_text(errors="replace").strip().splitlines()
        except OSError:
            return None
        return int(lines[-1].strip()) if lines and lines[-1].strip().isdigit() else None

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "ab") as err, open(self.out, "ab") as out:
            # Own session: a Ctrl-C reaches only this script, which then stops the server.
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.workdir, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        ready_since: float | None = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None and self.daemon_pid is None:
                pid = self._printed_pid()
                if code != 0 or pid is None:
                    raise BenchError(f"{self.kind}: {shlex.join(self.argv)} exited with "
                                     f"{code}" + ("" if code else " without printing a PID")
                                     + f":\n{self.log_tail()}")
                self.daemon_pid = pid
                try:
                    self._daemon = psutil.Process(pid)
                except psutil.NoSuchProcess as exc:
                    raise BenchError(f"{self.kind}: PID {pid} (printed by the launcher) "
                                     f"is not running:\n{self.log_tail()}") from exc
            if self._daemon is not None and not self._alive(self._daemon):
                gone, self.daemon_pid, self._daemon = self.daemon_pid, None, None
                raise BenchError(f"{self.kind}: the server (PID {gone}) exited:\n"
                                 f"{self.log_tail()}")
            if self._ready():
                if self.daemon_pid is not None:
                    return
                # A foreground server, or a launcher that has not exited yet.
                now = time.monotonic()
                if ready_since is None:
                    ready_since = now
                elif now - ready_since > 1.0:
                    return
            time.sleep(0.05)
        raise BenchError(f"{self.kind} not ready after {timeout}s:\n{self.log_tail()}")

    @staticmethod
    def _alive(proc: psutil.Process) -> bool:
        try:
            return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    def stop(self) -> None:
        """SIGTERM to the server (SIGKILL after 30 s), then to what is left of its tree."""
        proc, self.proc = self.proc, None
        daemon, self._daemon, self.daemon_pid = self._daemon, None, None
        if proc is None:
            return
        root = daemon if daemon is not None else None
        if root is None and proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(proc.pid)
        children: list[psutil.Process] = []
        if root is not None and self._alive(root):
            with contextlib.suppress(psutil.Error):
                children = root.children(recursive=True)
            if daemon is not None:
                with contextlib.suppress(psutil.Error):
                    daemon.terminate()
                    _, alive = psutil.wait_procs([daemon], timeout=30)
                    for p in alive:
                        log(None, f"{self.kind}: PID {p.pid} still running 30 s after "
                                  "SIGTERM: SIGKILL")
                        p.kill()
            else:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    log(None, f"{self.kind}: PID {proc.pid} still running 30 s after "
                              "SIGTERM: SIGKILL")
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)  # reap the foreground server or the launcher
        leftovers = [p for p in children if self._alive(p)]
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()

    def returncode(self) -> int | None:
        """None while the server runs; its exit code (or -1 for a daemon) once gone."""
        if self._daemon is not None:
            return None if self._alive(self._daemon) else -1
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for path in (self.log, self.out, *self.extra_logs):
            try:
                text = path.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                tail = "\n".join(text.splitlines()[-lines:])
                parts.append(f"--- {path.name}:\n{tail}")
        return "\n".join(parts) if parts else "(no log)"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its descendants so far (reaped ones too)."""
        try:
            total = 0.0
            for p in _tree(self.pid):
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
            return total
        except psutil.Error:
            return math.nan


def berth_server(workroot: Path, kind: str, fsync: bool = True,
                 s3: S3Endpoint | None = None) -> Server:
    workdir = workroot / kind
    workdir.mkdir()
    port = free_port()
    exe = ROOT / ".venv" / "bin" / "berth"
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "client.cli"]
    argv = [*launcher, "serve", "--listen", f"127.0.0.1:{port}"]
    config: dict[str, object] = {}
    if not fsync:
        config["berth"] = {"fsync": False}
    if s3 is None:
        argv += ["--root", str(workdir / "data")]
    else:
        config["storage"] = {
            "s3": {
                "bucket": s3.bucket, "region": s3.region, "regionendpoint": s3.endpoint,
                "accesskey": s3.access_key, "secretkey": s3.secret_key,
                "forcepathstyle": True, "rootdirectory": "berth",
            },
            "redirect": {"disable": False},  # the default, spelt out
        }
    config_file = workdir / "config.yml"
    config_file.write_text(yaml.safe_dump(config))
    argv += ["--config", str(config_file)]
    # Defaults only: no BERTH_* overrides from the caller's environment. This checkout's
    # code, in the supervisor and in its workers (an editable install may point elsewhere).
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    title = "Berth" if fsync else "Berth (fsync off)"
    if s3 is not None:
        title += " (S3)"
    return Server(kind, title, argv, workdir, port, env, berth=True, fsync=fsync)


def distribution_server(workroot: Path, s3: S3Endpoint | None = None) -> Server:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise BenchError("docker-registry is not installed (apt-get install docker-registry)")
    workdir = workroot / DISTRIBUTION
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
    }
    config_file = workdir / "config.yml"
    config_file.write_text(yaml.safe_dump(config))
    title = "distribution 2.8.2" if s3 is None else "distribution 2.8.2 (S3)"
    # aws-sdk-go panics at start ("LoadCustomCABundleError ... unsupported transport") if
    # AWS_CA_BUNDLE is set; the RGW is plain HTTP, so the bundle is not needed.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return Server(DISTRIBUTION, title, [binary, "serve", str(config_file)], workdir, port, env)


@dataclass(frozen=True)
class PeerSpec:
    name: str
    command: str  # with {port} and {root}


PEER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_peer(text: str) -> PeerSpec:
    name, sep, command = text.partition("=")
    name, command = name.strip(), command.strip()
    if not sep or not PEER_NAME.fullmatch(name) or not command:
        raise argparse.ArgumentTypeError(f"expected NAME=COMMAND, got {text!r}")
    if name in (BERTH, BERTH_NOFSYNC):
        raise argparse.ArgumentTypeError(f"{name!r} is the name of a Berth column")
    for placeholder in ("{port}", "{root}"):
        if placeholder not in command:
            raise argparse.ArgumentTypeError(f"peer {name}: COMMAND has no {placeholder}")
    try:
        shlex.split(command)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"peer {name}: {exc}") from exc
    return PeerSpec(name, command)


def peer_server(workroot: Path, spec: PeerSpec) -> Server:
    workdir = workroot / spec.name
    workdir.mkdir()
    root = workdir / "data"
    root.mkdir()
    port = free_port()
    argv = [arg.replace("{port}", str(port)).replace("{root}", str(root))
            for arg in shlex.split(spec.command)]
    # ../shared/peers/start logs to ROOT.log (next to the root, not in it).
    extra = (workdir / "data.log",)
    return Server(spec.name, spec.name, argv, workdir, port, dict(os.environ),
                  extra_logs=extra)


def shared_peers(peers_dir: Path) -> list[PeerSpec]:
    start = peers_dir / "start"
    if not os.access(start, os.X_OK):
        raise BenchError(f"--peers-shared: no executable {start}")
    return [PeerSpec(name, f"{shlex.quote(str(start))} {name} {{port}} {{root}}")
            for name in SHARED_PEERS]


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


LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def next_link(resp: aiohttp.ClientResponse) -> str | None:
    for value in resp.headers.getall("Link", []):
        match = LINK_NEXT.search(value)
        if match:
            return match.group(1)
    return None


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


# -- external clients: curl and wrk ------------------------------------------------------------


async def run_tool(argv: list[str], max_seconds: float) -> str:
    """Run a client tool; its stdout, or BenchError with its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), max_seconds)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {proc.returncode}: "
                         f"{err.decode(errors='replace').strip()[:600]}")
    return out.decode(errors="replace")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p99_ms: float | None
    non_2xx: int
    socket_errors: dict[str, int]


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(text: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if done is None or rps is None:
        raise BenchError(f"wrk: unexpected output:\n{text.strip()[:1000]}")
    seconds = float(done.group(2)) * _UNIT_MS[done.group(3)] / 1000
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    socket_errors = {}
    if errors is not None:
        socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                 map(int, errors.groups()), strict=True))
    return WrkResult(
        requests=int(done.group(1)), seconds=seconds, rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)] if p99 else None,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0, socket_errors=socket_errors,
    )


# -- the workload --------------------------------------------------------------------------


BIG_REPO = "bench/big"
SMALL_REPO = "bench/small"
MANIFEST_REPO = "bench/manifest"
TAGS_REPO = "bench/tags"
CATALOG_PREFIX = "bench-catalog/r"
Job = Callable[[], Awaitable[None]]


@dataclass
class Workload:
    """The data (built once, identical for every server) and the timed operations.

    Each method that takes a round index `i` is one timed sample; rounds go through the
    servers in turn and the table reports the median. Pushes use fresh content in every
    round. A sample's figures under keys starting with `_` are not tabled: `_pushed` is
    the bytes a push sample sent (for CPU s/GiB)."""

    params: Params
    mono: list[Pattern]
    chunked: list[Pattern]
    smalls: list[list[tuple[bytes, str]]]
    manifest_digest: dict[str, str] = field(default_factory=dict)
    pages_logged: set[tuple[str, str]] = field(default_factory=set)

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
        return cls(params, mono, chunked, smalls)

    async def prepare(self, t: Target) -> None:
        async with client(4) as s:
            await probe_single_post(s, t)
        if not t.single_post:
            log(t, "POST ?digest= does not finish an upload (202): small pushes and setup "
                   "use POST then PUT ?digest=")

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
        return {"push_mono": p.size / elapsed / MiB, "_pushed": p.size}

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
        return {"push_chunked": p.size / elapsed / MiB, "final_put_s": final_put,
                "_pushed": p.size}

    async def _check_size(self, s: aiohttp.ClientSession, t: Target, p: Pattern) -> None:
        async with s.head(_url(f"{t.base}/v2/{BIG_REPO}/blobs/{p.digest}"),
                          allow_redirects=True) as resp:
            await expect(resp, 200)
            if resp.content_length != p.size:
                raise BenchError(f"HEAD blob: size {resp.content_length}, pushed {p.size}")

    async def pull(self, t: Target, i: int) -> dict[str, float]:
        p = self.mono[0]  # pushed in the first round of the monolithic step
        url = f"{t.base}/v2/{BIG_REPO}/blobs/{p.digest}"
        out = await run_tool(
            ["curl", "-s", "-S", "-L", "-o", "/dev/null", "-w",
             "%{http_code} %{size_download} %{time_total} %{num_redirects}", url],
            max_seconds=600,
        )
        code, size, total, redirects = out.split()
        if code != "200":
            raise BenchError(f"GET blob (curl): HTTP {code}")
        if int(size) != p.size:
            raise BenchError(f"GET blob (curl): received {size} bytes, expected {p.size}")
        if i == 0 and int(redirects):
            log(t, f"pull: curl followed {redirects} redirect(s)")
        return {"pull": p.size / float(total) / MiB}

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
        return {"small": len(blobs) / elapsed, "_pushed": sum(len(b) for b, _ in blobs)}

    # -- manifest GET under load (wrk)

    async def manifest_setup(self, t: Target) -> None:
        if t.kind in self.manifest_digest:
            return  # the by-digest row reuses the by-tag row's image
        async with client(2) as s:
            body = await push_image(s, t, MANIFEST_REPO, seed=5)
            await put_manifest(s, t, MANIFEST_REPO, "latest", body)
        self.manifest_digest[t.kind] = sha256(body)

    async def _wrk(self, t: Target, reference: str) -> WrkResult:
        pr, digest = self.params, self.manifest_digest[t.kind]
        url = f"{t.base}/v2/{MANIFEST_REPO}/manifests/{reference}"
        async with client(1) as s, s.get(_url(url), headers={"Accept": OCI_MANIFEST}) as resp:
            await expect(resp, 200)
            if sha256(await resp.read()) != digest:
                raise BenchError(f"GET manifest {reference}: not the manifest pushed")
            if resp.headers.get("Docker-Content-Digest", digest) != digest:
                raise BenchError(f"GET manifest {reference}: wrong Docker-Content-Digest")
            if resp.content_type != OCI_MANIFEST:
                raise BenchError(f"GET manifest {reference}: Content-Type "
                                 f"{resp.content_type!r}, expected {OCI_MANIFEST}")
        argv = ["wrk", f"-t{pr.wrk_threads}", f"-c{pr.wrk_connections}", "--latency",
                "-H", f"Accept: {OCI_MANIFEST}", url]
        await run_tool([*argv[:1], "-d1s", *argv[1:]], max_seconds=60)  # warm-up, not counted
        text = await run_tool([*argv[:1], f"-d{pr.wrk_seconds}s", *argv[1:]],
                              max_seconds=pr.wrk_seconds + 60)
        result = parse_wrk(text)
        if result.non_2xx:
            raise BenchError(f"wrk GET manifest {reference}: {result.non_2xx} of "
                             f"{result.requests} answers were not 2xx or 3xx")
        errors = sum(result.socket_errors.values())
        if errors:
            shown = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items() if v)
            if errors > max(result.requests // 100, 10):
                raise BenchError(f"wrk GET manifest {reference}: socket errors ({shown}) "
                                 f"in {result.requests} requests")
            log(t, f"wrk: socket errors ({shown}) in {result.requests} requests")
        p99 = f"{result.p99_ms:.2f} ms" if result.p99_ms is not None else "?"
        log(t, f"wrk GET manifest {reference}: {result.requests:,} requests in "
               f"{result.seconds:.2f} s, p99 {p99}")
        return result

    async def manifest_by_tag(self, t: Target, i: int) -> dict[str, float]:
        return {"get_tag": (await self._wrk(t, "latest")).rps}

    async def manifest_by_digest(self, t: Target, i: int) -> dict[str, float]:
        return {"get_digest": (await self._wrk(t, self.manifest_digest[t.kind])).rps}

    # -- listings

    def tag_names(self) -> list[str]:
        return [f"v{i:05d}" for i in range(self.params.tag_count)]

    async def tags_setup(self, t: Target) -> None:
        pr = self.params
        async with client(pr.setup_concurrency) as s:
            body = await push_image(s, t, TAGS_REPO, seed=6)
            jobs: list[Job] = [
                partial(put_manifest, s, t, TAGS_REPO, tag, body) for tag in self.tag_names()
            ]
            started = time.perf_counter()
            await bounded(pr.setup_concurrency, jobs)
        elapsed = time.perf_counter() - started
        log(t, f"setup: {pr.tag_count} manifest PUTs by tag in {elapsed:.1f} s "
               f"({pr.tag_count / elapsed:.0f}/s)")

    async def tags_list(self, t: Target, i: int) -> dict[str, float]:
        pages, elapsed = await timed_listing(t, f"/v2/{TAGS_REPO}/tags/list")
        listed = [tag for page in pages for tag in page.get("tags") or []]
        if sorted(listed) != self.tag_names():
            raise BenchError(f"tags/list: {len(listed)} tags in {len(pages)} page(s), "
                             f"expected {self.params.tag_count}")
        self._log_pages(t, "tags/list", len(pages))
        return {"tags": elapsed * 1000}

    def repo_names(self) -> list[str]:
        return [f"{CATALOG_PREFIX}{i:05d}" for i in range(self.params.repo_count)]

    async def catalog_setup(self, t: Target) -> None:
        pr = self.params

        async def one(s: aiohttp.ClientSession, name: str) -> None:
            body = await push_image(s, t, name, seed=7)
            await put_manifest(s, t, name, "latest", body)

        async with client(pr.setup_concurrency) as s:
            jobs: list[Job] = [partial(one, s, name) for name in self.repo_names()]
            started = time.perf_counter()
            await bounded(pr.setup_concurrency, jobs)
        elapsed = time.perf_counter() - started
        log(t, f"setup: {pr.repo_count} repositories (2 blobs and a tag each) in "
               f"{elapsed:.1f} s")

    async def catalog(self, t: Target, i: int) -> dict[str, float]:
        pages, elapsed = await timed_listing(t, f"/v2/_catalog?n={self.params.catalog_page}")
        listed = {name for page in pages for name in page.get("repositories") or []}
        missing = [n for n in self.repo_names() if n not in listed]
        if missing:
            raise BenchError(f"_catalog: {len(missing)} of {len(self.repo_names())} "
                             f"repositories missing (e.g. {missing[0]}); listed {len(listed)} "
                             f"in {len(pages)} page(s)")
        self._log_pages(t, "_catalog", len(pages))
        return {"catalog": elapsed * 1000}

    def _log_pages(self, t: Target, what: str, pages: int) -> None:
        if (t.kind, what) not in self.pages_logged:
            self.pages_logged.add((t.kind, what))
            log(t, f"{what}: {pages} page(s)")


async def timed_listing(t: Target, path: str) -> tuple[list[dict[str, list[str]]], float]:
    """GET `path` and the pages its `Link: rel="next"` headers lead to, on an already open
    connection: (the parsed pages, seconds from the first request to the last byte)."""
    pages: list[dict[str, list[str]]] = []
    async with client(1) as s:
        async with s.get(_url(f"{t.base}/v2/")) as resp:
            await expect(resp, 200)
            await resp.read()
        raws: list[bytes] = []
        started = time.perf_counter()
        next_path: str | None = path
        while next_path is not None:
            async with s.get(_url(absolute(t.base, next_path))) as resp:
                await expect(resp, 200)
                raws.append(await resp.read())
                next_path = next_link(resp)
            if len(raws) > 1000:
                raise BenchError(f"GET {path}: more than 1000 pages")
        elapsed = time.perf_counter() - started
    for raw in raws:  # parsed after the clock stops
        pages.append(json.loads(raw))
    return pages, elapsed


# -- rows and the table ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    decimals: int = 1
    durability: bool = False  # fsync on or off changes the figure (marked †)


def rows_for(params: Params, s3: bool = False) -> list[Row]:
    size = (f"{params.size // MiB} MiB" if params.size % GiB else f"{params.size // GiB} GiB")
    med = f"median of {params.rounds}" if params.rounds > 1 else "1 round"
    wrk = (f"wrk -t{params.wrk_threads} -c{params.wrk_connections} "
           f"-d{params.wrk_seconds}s")
    gets = f"median of {params.gets}"
    pull = "curl GET" + (" + 307 to RGW" if s3 else "")
    rows = [
        Row("push_mono", f"push {size} blob, monolithic POST + PUT ({med})", "MiB/s", True,
            durability=True),
        Row("push_chunked", f"push {size} blob, {params.chunk // MiB} MiB PATCHes + PUT "
            f"({med})", "MiB/s", True, durability=True),
        Row("pull", f"pull {size} blob, {pull} ({med})", "MiB/s", True),
        Row("small", f"{params.small_count} pushes of {params.small_size // 1024} KiB blobs, "
            f"concurrency {params.small_concurrency} ({med})", "blobs/s", True,
            durability=True),
        Row("get_tag", f"manifest GET by tag, {wrk}", "req/s", True, 0),
        Row("get_digest", f"manifest GET by digest, {wrk}", "req/s", True, 0),
        Row("tags", f"tags/list of {params.tag_count:,} tags ({gets})", "ms", False, 2),
        Row("catalog", f"_catalog of {params.repo_count:,} repositories, "
            f"n={params.catalog_page} pages ({gets})", "ms", False, 2),
        Row("rss", "peak server RSS over the run (process tree)", "MiB", False),
        Row("cpu_gib", "server CPU per GiB pushed (user+sys, push rows)", "s/GiB", False, 2,
            durability=True),
    ]
    if s3:  # durability is the object store's, the same for both (no † rows)
        return [replace(row, durability=False) for row in rows if row.key in S3_ROWS]
    return rows


S3_ROWS = ("push_mono", "push_chunked", "pull", "small", "cpu_gib")


Cell = float | str  # a figure, or an error marker


def best_peer(row: Row, results: dict[str, dict[str, Cell]],
              peers: list[str]) -> tuple[str, float] | None:
    figures = [(kind, v) for kind in peers
               if isinstance(v := results.get(kind, {}).get(row.key), float) and v > 0]
    if not figures:
        return None
    pick = max if row.higher_is_better else min
    return pick(figures, key=lambda kv: kv[1])


def ratio(row: Row, berth: Cell | None, best: float) -> str:
    if not isinstance(berth, float) or berth <= 0:
        return "-"
    value = berth / best if row.higher_is_better else best / berth
    return f"{value:.2f}"


def fmt(row: Row, cell: Cell | None) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, str):
        return cell
    return f"{cell:,.{row.decimals}f}"


def table(rows: list[Row], results: dict[str, dict[str, Cell]], servers: list[Server],
          markdown: bool) -> str:
    berths = [s.kind for s in servers if s.berth]
    peers = [s.kind for s in servers if not s.berth]
    nofsync = BERTH_NOFSYNC in berths
    titles = {s.kind: s.title for s in servers}
    header = ["Row", "Unit", *titles.values(), "Berth ÷ best peer", "Best peer"]
    body = []
    for row in rows:
        label = f"{row.label} †" if row.durability and peers else row.label
        cells = [label, row.unit, *(fmt(row, results[s.kind].get(row.key)) for s in servers)]
        best = best_peer(row, results, peers)
        if best is None or BERTH not in berths:
            cells += ["-", "-"]
        else:
            text = ratio(row, results[BERTH].get(row.key), best[1])
            if nofsync and row.durability:
                off = ratio(row, results[BERTH_NOFSYNC].get(row.key), best[1])
                text += f" (fsync off: {off})"
            cells += [text, titles[best[0]]]
        body.append(cells)
    if markdown:
        align = ["---", "---", *(["---:"] * (len(header) - 3)), "---"]
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i < 2 or i == len(cells) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])


def notes(servers: list[Server], s3: bool) -> str:
    lines = ["Berth ÷ best peer: Berth ÷ the best peer where higher is better; best peer ÷ "
             "Berth where lower is better (ms, MiB, s/GiB). Above 1.0 means Berth is better."]
    peers = [s for s in servers if not s.berth]
    if peers and not s3:
        known = [s.title for s in peers if s.kind in NO_FSYNC_PEERS]
        other = [s.title for s in peers if s.kind not in NO_FSYNC_PEERS]
        text = ("† durability differs: Berth fsyncs blob data and links before it answers "
                "(berth.fsync: true, the default)")
        if known:
            text += f"; {', '.join(known)} do not"
        if other:
            text += f"; {', '.join(other)}: not known to this script"
        text += "."
        if any(s.kind == BERTH_NOFSYNC for s in servers):
            text += (" In parentheses: the ratio of Berth with berth.fsync: false (the "
                     "peers' durability).")
        lines.append(text)
    return "\n".join(lines)


def run_info(servers: list[Server]) -> str:
    """Date, machine and commit, for the record."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else "?"

    cpu = "?"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    dirty = " (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return "\n".join([
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"commit: {git('rev-parse', '--short', 'HEAD')}{dirty}",
        f"machine: {os.cpu_count()} CPUs ({cpu}), "
        f"{psutil.virtual_memory().total / GiB:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "servers: " + "; ".join(f"{s.title}: {shlex.join(s.argv)}" for s in servers),
    ])


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


PUSH_KEYS = ("push_mono", "push_chunked", "small")


def steps(params: Params, s3: bool = False) -> list[Step]:
    r, g = params.rounds, params.gets
    every = [
        Step("push monolithic", ("push_mono",), Workload.push_monolithic, r),
        Step("push chunked", ("push_chunked",), Workload.push_chunked, r),
        Step("pull", ("pull",), Workload.pull, r, needs=("push_mono",)),
        Step("small blobs", ("small",), Workload.small_pushes, r),
        Step("manifest GET by tag", ("get_tag",), Workload.manifest_by_tag, 1,
             Workload.manifest_setup),
        Step("manifest GET by digest", ("get_digest",), Workload.manifest_by_digest, 1,
             Workload.manifest_setup),
        Step("tags/list", ("tags",), Workload.tags_list, g, Workload.tags_setup),
        Step("_catalog", ("catalog",), Workload.catalog, g, Workload.catalog_setup),
    ]
    return [step for step in every if set(step.keys) <= set(S3_ROWS)] if s3 else every


Failure = (BenchError, aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError)


async def run_all(params: Params, targets: list[Target],
                  s3: bool = False) -> dict[str, dict[str, Cell]]:
    results: dict[str, dict[str, Cell]] = {t.kind: {} for t in targets}
    failed: set[tuple[str, str]] = set()  # (server, step)
    pushed: dict[str, list[float]] = {t.kind: [0.0, 0.0] for t in targets}  # bytes, CPU s

    def fail(t: Target, step: Step, exc: BaseException) -> None:
        log(t, f"{step.name}: FAILED: {type(exc).__name__}: {exc}")
        code = t.server.returncode()
        if code is not None:
            log(t, f"the server has exited (code {code})")
        if not any(kind == t.kind for kind, _ in failed):  # the log tail once per server
            log(t, f"server log tail:\n{t.server.log_tail()}")
        failed.add((t.kind, step.name))
        for key in step.keys:
            results[t.kind][key] = "ERROR"

    log(None, f"generating data ({params.rounds} x 2 blobs of {params.size // MiB} MiB: "
              f"digests; small blobs)")
    workload = await asyncio.get_running_loop().run_in_executor(None, Workload.build, params)
    for t in targets:
        try:
            await workload.prepare(t)
        except Failure as exc:
            log(t, f"probe of POST ?digest= FAILED: {type(exc).__name__}: {exc}")
    for step in steps(params, s3):
        active = []
        for t in targets:
            if t.server.returncode() is not None:
                fail(t, step, BenchError("the server is not running"))
                continue
            if any(not isinstance(results[t.kind].get(k), float) for k in step.needs):
                log(t, f"{step.name}: skipped (an earlier step failed)")
                results[t.kind].update(dict.fromkeys(step.keys, "ERROR"))
                continue
            if step.setup is not None:
                try:
                    await step.setup(workload, t)
                except Failure as exc:
                    fail(t, step, exc)
                    continue
            active.append(t)
        samples: dict[str, list[dict[str, float]]] = {t.kind: [] for t in active}
        for i in range(step.rounds):  # all servers in turn, the first one rotating
            shift = i % len(active) if active else 0
            for t in active[shift:] + active[:shift]:
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
                if "_pushed" in figures:
                    pushed[t.kind][0] += figures["_pushed"]
                    pushed[t.kind][1] += cpu
                shown = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()
                                  if not k.startswith("_"))
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
    for t in targets:
        nbytes, cpu = pushed[t.kind]
        if any(not isinstance(results[t.kind].get(k), float) for k in PUSH_KEYS):
            results[t.kind]["cpu_gib"] = "ERROR"  # not the same bytes as the others
        elif nbytes > 0 and not math.isnan(cpu):
            results[t.kind]["cpu_gib"] = cpu / (nbytes / GiB)
            log(t, f"server CPU over the push rows: {cpu:.1f} s for "
                   f"{nbytes / GiB:.2f} GiB")
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--peer", type=parse_peer, action="append", default=[],
                        metavar="NAME=COMMAND",
                        help="a peer registry: COMMAND with {port} and {root}, in the "
                             "foreground or a launcher printing the daemon's PID (repeat)")
    parser.add_argument("--peers-shared", action="store_true",
                        help=f"add {' and '.join(SHARED_PEERS)} via PEERS_DIR/start")
    parser.add_argument("--peers-dir", type=Path, default=PEERS_DIR,
                        help=f"where --peers-shared finds `start` (default {PEERS_DIR})")
    parser.add_argument("--no-distribution", action="store_true",
                        help="leave out distribution 2.8 (docker-registry)")
    parser.add_argument("--no-fsync-off", action="store_true",
                        help="leave out the second Berth with berth.fsync: false")
    parser.add_argument("--only", action="append", default=None, metavar="NAME",
                        help="run only these servers (berth, berth-nofsync, "
                             "distribution-2.8, peer names; repeat)")
    parser.add_argument("--size-mib", type=int, default=None,
                        help="size of each big blob in MiB (default 512; 64 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 64 MiB, 1 round, 100 blobs, wrk 2 s, 500 tags, "
                             "200 repositories, 3 listings")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds of each push/pull row, servers in turn; "
                             "the median is reported (default 3; 1 with --quick or --s3)")
    parser.add_argument("--wrk-seconds", type=int, default=None,
                        help="duration of each wrk row (default 10; 2 with --quick)")
    parser.add_argument("--s3", action="store_true",
                        help="Berth and distribution 2.8 on S3 storage (one throw-away Ceph "
                             "RGW, one bucket); push, pull, small-blob and CPU rows only")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' storage and logs (path printed at the end)")
    args = parser.parse_args(argv)
    if args.size_mib is not None and args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.wrk_seconds is not None and args.wrk_seconds < 1:
        parser.error("--wrk-seconds must be at least 1")
    if args.s3 and (args.peer or args.peers_shared):
        parser.error("--s3 runs Berth and distribution 2.8 only (no --peer, --peers-shared)")
    return args


def plan(args: argparse.Namespace, workroot: Path,
         endpoint: S3Endpoint | None) -> list[Callable[[], Server]]:
    """The servers to start, in column order (factories: each makes its directory)."""
    peers: list[PeerSpec] = list(args.peer)
    if args.peers_shared:
        peers += shared_peers(args.peers_dir)
    names = [p.name for p in peers] + ([] if args.no_distribution else [DISTRIBUTION])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchError(f"peer names used twice: {', '.join(duplicates)}")
    wanted: list[tuple[str, Callable[[], Server]]] = [
        (BERTH, partial(berth_server, workroot, BERTH, True, endpoint))]
    if not args.no_fsync_off and endpoint is None:
        wanted.append((BERTH_NOFSYNC, partial(berth_server, workroot, BERTH_NOFSYNC, False)))
    if not args.no_distribution:
        if shutil.which("docker-registry") is not None:
            wanted.append((DISTRIBUTION, partial(distribution_server, workroot, endpoint)))
        elif args.only is None or DISTRIBUTION in args.only:
            log(None, "docker-registry is not installed: no distribution 2.8 column "
                      "(apt-get install docker-registry)")
    wanted += [(p.name, partial(peer_server, workroot, p)) for p in peers]
    if args.only is not None:
        unknown = set(args.only) - {name for name, _ in wanted}
        if unknown:
            raise BenchError(f"--only: no server named {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(name for name, _ in wanted)})")
        wanted = [(name, make) for name, make in wanted if name in args.only]
    return [make for _, make in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = Params.from_args(args)
    for tool, package in (("curl", "curl"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            log(None, f"error: {tool} is not installed (apt-get install {package})")
            return 1
    workroot = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    servers: list[Server] = []
    rgw = Rgw(workroot) if args.s3 else None
    sampler = RssSampler()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, dict[str, Cell]] = {}
    try:
        endpoint: S3Endpoint | None = None
        if rgw is not None:
            # Each big push stores the blob about twice before deletes (Berth: upload or
            # chunk objects, then the blob; distribution: the upload, then its copy), and
            # RGW frees deleted data only after its GC (60 s or more).
            count = 2 if args.only is None else len(args.only)
            written = params.size * params.rounds * 2 * 2 * count
            if written > 8.5 * GiB:
                raise BenchError(f"about {written / GiB:.1f} GiB would be written "
                                 "to the RGW's 10 GiB OSD: lower --size-mib or --rounds")
            log(None, "starting a throw-away RGW (deploy/rgw/rgw.py)")
            endpoint = rgw.start()
            log(None, f"RGW on {endpoint.endpoint}, bucket {endpoint.bucket}")
        running: list[Server] = []
        for make in plan(args, workroot, endpoint):
            server = make()
            servers.append(server)
            try:
                server.start()
            except BenchError as exc:  # that column shows ERROR; the others run
                log(None, f"{server.kind}: did not start: {exc}")
                server.stop()
                continue
            running.append(server)
            sampler.add(server.kind, server.pid)
            how = "daemon" if server.daemon_pid is not None else "foreground"
            log(None, f"{server.kind}: pid {server.pid} ({how}) on {server.base}")
        sampler.start()
        if running:
            results = asyncio.run(run_all(params, [Target(s) for s in running], args.s3))
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
            log(None, f"removing {workroot}")
            shutil.rmtree(workroot, ignore_errors=True)
    rows = rows_for(params, args.s3)
    for server in servers:
        if server.kind not in results:  # did not start
            results[server.kind] = dict.fromkeys((row.key for row in rows), "ERROR")
        elif not args.s3:
            results[server.kind]["rss"] = sampler.peak.get(server.kind, 0) / MiB
    failed = any(cell == "ERROR" for r in results.values() for cell in r.values())
    print(run_info(servers))
    print()
    print(table(rows, results, servers, markdown=False))
    print()
    print(notes(servers, args.s3))
    if args.markdown:
        print()
        print(table(rows, results, servers, markdown=True))
        print()
        print(notes(servers, args.s3))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
