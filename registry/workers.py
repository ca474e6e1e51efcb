"""`berth serve` on every core: a supervisor and N worker processes (`http.workers`).

The supervisor binds the listening sockets itself — one per worker, with SO_REUSEPORT,
so the kernel spreads connections over the workers — and starts each worker as a fresh
interpreter (`berth serve … --worker I/N:FD,FD`) that inherits its sockets. It holds the
sockets for the whole run: a worker that dies is started again on the same socket, and
connections waiting in its queue meanwhile are not lost. SIGTERM/SIGINT go to every
worker, which drains as a single process does (`http.shutdowndelay`, then
`http.draintimeout`); SIGHUP goes to every worker, which reloads its config.

Workers share nothing but storage, exactly as replicas do; jobs that need to run once
per host (catalog indexing, upload purging, scheduled GC, the scrub) run in worker 0
only, and are started again with it. Prometheus metrics are kept in
prometheus_client's multiprocess mode (a directory the supervisor makes and removes),
so any worker's `/metrics` reports the whole host.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .config import Config, split_address
from .logs import configure_logging

log = logging.getLogger("registry")

RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)  # seconds before a crashed worker restarts
STABLE_AFTER = 30.0  # a worker up this long is healthy again: its backoff resets
POLL = 0.2


@dataclass
class WorkerSpec:
    """What `--worker` tells a worker process: who it is and which sockets it serves."""

    index: int
    count: int
    fds: tuple[int, ...]  # the main listener's socket, then the debug listener's (if any)
    parent: int  # the supervisor's pid
    ready: int  # a pipe to write one byte to once serving

    def __str__(self) -> str:
        return (f"{self.index}/{self.count}:{','.join(map(str, self.fds))}"
                f"@{self.parent}+{self.ready}")

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        text, _, ready = text.partition("+")
        text, _, parent = text.partition("@")
        who, _, fds = text.partition(":")
        index, _, count = who.partition("/")
        return cls(int(index), int(count), tuple(int(fd) for fd in fds.split(",") if fd),
                   int(parent), int(ready))

    def sockets(self) -> list[socket.socket]:
        return [socket.socket(fileno=fd) for fd in self.fds]


def worker_count(config: Config) -> int:
    """`http.workers`, or one per CPU this process may use: those it may run on, fewer
    when its cgroup's CPU quota (a container's CPU limit) allows fewer."""
    if config.http.workers is not None:
        return config.http.workers
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # (not Linux)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    return max(1, min(cpus, math.ceil(quota) if quota is not None else cpus))


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time this process's cgroup may use (cgroup v2 `cpu.max`, or v1's
    CFS quota and period), None when unlimited or unknown."""
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
        if quota.strip() != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _vacant(host: str, port: int) -> tuple[str, int]:
    """The address, once a bind without SO_REUSEPORT showed nobody holds it: sockets
    with it would quietly share the port with another Berth started by the same user."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return host, probe.getsockname()[1]


@dataclass
class _Worker:
    index: int
    fds: tuple[int, ...]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0  # in a row
    due: float = 0.0  # when to start it again


class Supervisor:
    def __init__(self, config: Config, argv: list[str], count: int) -> None:
        self.config, self.argv, self.count = config, argv, count
        self.stopping = False
        self.hangups = 0
        self._sockets: list[socket.socket] = []
        self._metrics_dir = ""

    def bind(self) -> list[_Worker]:
        """Every worker's sockets, on the same ports (a port 0 is what the first got)."""
        addresses = [_vacant(*split_address(a)) for a in (self.config.http.addr,
                                                           self.config.http.debug.addr) if a]
        workers = []
        for index in range(self.count):
            sockets = [listening_socket(host, port) for host, port in addresses]
            addresses = [(host, sock.getsockname()[1])
                         for (host, _), sock in zip(addresses, sockets, strict=True)]
            self._sockets += sockets
            workers.append(_Worker(index, tuple(sock.fileno() for sock in sockets)))
        return workers

    def _spawn(self, worker: _Worker) -> int:
        """Start a worker; returns the pipe that says when it serves (one byte; none if
        it failed to start)."""
        ready, ready_w = os.pipe()
        spec = WorkerSpec(worker.index, self.count, worker.fds, os.getpid(), ready_w)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir}
        try:
            # SIGHUP ignored until the worker's loop handles it (an ignored signal stays
            # ignored across exec): else one sent while it starts would end it
            worker.proc = subprocess.Popen([*self.argv, "--worker", str(spec)], env=env,
                                           pass_fds=(*worker.fds, ready_w),
                                           preexec_fn=_ignore_hangups)
        finally:
            os.close(ready_w)
        worker.started = time.monotonic()
        return ready

    def _start(self, worker: _Worker) -> bool:
        """Start a worker and wait until it serves; False if it exited first."""
        with os.fdopen(self._spawn(worker), "rb") as ready:
            return ready.read(1) == b"."

    def _signal(self, workers: list[_Worker], sig: int) -> None:
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(sig)

    def run(self) -> int:
        workers = self.bind()  # (first: a port in use is an error before anything else)
        self._metrics_dir = tempfile.mkdtemp(prefix="berth-metrics-")
        stop_signal: list[int] = [signal.SIGTERM]

        def stop(sig: int, _: FrameType | None) -> None:
            self.stopping = True
            stop_signal[0] = sig

        def hangup(_sig: int, _frame: FrameType | None) -> None:
            self.hangups += 1

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hangup)
        try:
            # One at a time, each serving before the next starts: a worker that cannot
            # start (a bad auth file, storage a newer Berth wrote) has said why, once;
            # its status is the supervisor's
            for worker in workers:
                if self.stopping:
                    break  # (_supervise stops the ones started)
                if not self._start(worker):
                    assert worker.proc is not None
                    code = worker.proc.wait()
                    self._signal(workers, signal.SIGTERM)
                    for other in workers:
                        if other.proc is not None:
                            other.proc.wait()
                    return code if code > 0 else 1
            log.info("berth: %d workers (pids %s)", self.count,
                     " ".join(str(w.proc.pid) for w in workers if w.proc))
            return self._supervise(workers, stop_signal)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self._sockets:
                sock.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _supervise(self, workers: list[_Worker], stop_signal: list[int]) -> int:
        hangups = 0
        while not self.stopping:
            if self.hangups != hangups:
                hangups = self.hangups
                self._signal(workers, signal.SIGHUP)
            now = time.monotonic()
            for worker in workers:
                if worker.proc is None:
                    if now >= worker.due:
                        os.close(self._spawn(worker))
                        log.info("worker %d started again (pid %d)", worker.index,
                                 worker.proc.pid if worker.proc else 0)
                    continue
                code = worker.proc.poll()
                if code is None:
                    if worker.crashes and now - worker.started > STABLE_AFTER:
                        worker.crashes = 0
                    continue
                self._gone(worker, code, now)
            time.sleep(POLL)
        log.info("berth: stopping %d workers", self.count)
        self._signal(workers, stop_signal[0])
        deadline = time.monotonic() + self._stop_timeout()
        status = 0
        for worker in workers:
            if worker.proc is None:
                continue
            try:
                code = worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time: killed", worker.index)
                worker.proc.kill()
                code = worker.proc.wait()
            self._mark_dead(worker.proc.pid)
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                status = 1
        return status

    def _stop_timeout(self) -> float:
        http = self.config.http
        return http.shutdowndelay + http.draintimeout + 15.0  # and the cleanup after

    def _gone(self, worker: _Worker, code: int, now: float) -> None:
        assert worker.proc is not None
        self._mark_dead(worker.proc.pid)
        delay = RESTART_BACKOFF[min(worker.crashes, len(RESTART_BACKOFF) - 1)]
        log.error("worker %d (pid %d) exited with %s; starting it again in %.1fs",
                  worker.index, worker.proc.pid,
                  f"signal {-code}" if code < 0 else f"status {code}", delay)
        worker.crashes += 1
        worker.proc = None
        worker.due = now + delay

    def _mark_dead(self, pid: int) -> None:
        """Its live gauges (requests in flight) leave the host's totals."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]


def _ignore_hangups() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def supervise(config: Config, argv: list[str], count: int) -> int:
    """Run `count` workers until SIGTERM/SIGINT; the exit status for `berth serve`."""
    configure_logging(config)
    return Supervisor(config, argv, count).run()
