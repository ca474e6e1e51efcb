"""Issue 13: `berth serve` with several workers (registry/workers.py) — connections spread
over the workers, a killed worker is replaced, SIGTERM drains every worker, SIGHUP
reaches every worker, jobs that run once per host run in one worker, metrics add up
over the workers, and a retag made through one worker is what every worker serves (at
once on disk; within `berth.cache.ttl` on S3)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from .conftest import MakeBerth, S3Endpoint
from .helpers import image, put_manifest
from .servers import BerthServer, free_port

WORKERS = 2
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def _workers(server: BerthServer) -> list[psutil.Process]:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).children()


def _started(server: BerthServer) -> BerthServer:
    """Once every worker serves (the server answers as soon as the first does)."""
    _until(lambda: len(_answered_by(f"{server.url}/v2/", 40)) == WORKERS)
    return server


def _answered_by(url: str, tries: int = 200) -> dict[str, int]:
    """Which processes answered `tries` requests, each on a new connection (the request
    id's first half is the answering process's)."""
    seen: dict[str, int] = {}
    for _ in range(tries):
        answer = requests.get(url, timeout=10, headers={"Connection": "close"})
        assert answer.status_code == 200
        process = answer.headers["X-Request-Id"][:16]
        seen[process] = seen.get(process, 0) + 1
    return seen


def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_connections_spread_over_the_workers(make_berth: MakeBerth) -> None:
    server = _started(make_berth({"http": {"workers": WORKERS}}))
    assert len(_workers(server)) == WORKERS
    seen = _answered_by(f"{server.url}/v2/")
    assert len(seen) == WORKERS, seen
    assert min(seen.values()) > 20, seen  # the kernel spreads them (SO_REUSEPORT)


def test_a_killed_worker_is_replaced(make_berth: MakeBerth) -> None:
    server = _started(make_berth({"http": {"workers": WORKERS}}))
    before = {p.pid for p in _workers(server)}
    victim = sorted(before)[0]
    psutil.Process(victim).kill()
    _until(lambda: len({p.pid for p in _workers(server)} - before) == 1)
    now = {p.pid for p in _workers(server)}
    assert victim not in now and len(now) == WORKERS
    _until(lambda: len(_answered_by(f"{server.url}/v2/", 40)) == WORKERS)
    log = server.log.read_text()
    assert f"(pid {victim}) exited with signal {int(signal.SIGKILL)}; starting it again" in log


def test_sigterm_drains_every_worker(make_berth: MakeBerth, repo: str) -> None:
    """Uploads in flight on both workers finish; then every process exits, status 0."""
    server = _started(make_berth({"http": {"workers": WORKERS, "draintimeout": "30s"}}))
    results: list[int] = []

    def slow_upload() -> None:
        start = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", timeout=10)
        location = server.url + start.headers["Location"]

        def body() -> Any:
            for _ in range(20):
                yield b"x" * 1024
                time.sleep(0.1)

        answer = requests.patch(location, data=body(), timeout=30,
                                headers={"Content-Type": "application/octet-stream"})
        results.append(answer.status_code)

    uploads = [threading.Thread(target=slow_upload) for _ in range(6)]
    for upload in uploads:
        upload.start()
    time.sleep(0.6)  # every upload is sending its body
    processes = [psutil.Process(server.proc.pid), *_workers(server)]  # type: ignore[union-attr]
    assert server.stop(signal.SIGTERM, timeout=60) == 0
    for upload in uploads:
        upload.join()
    assert results == [202] * 6
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    assert server.log.read_text().count("shutting down") == WORKERS


def test_sighup_reaches_every_worker(make_berth: MakeBerth, repo: str) -> None:
    server = _started(make_berth({"http": {"workers": WORKERS}}))
    config_file = server.workdir / "config.yml"
    config = yaml.safe_load(config_file.read_text())
    config["storage"]["maintenance"] = {"readonly": {"enabled": True}}
    config_file.write_text(yaml.safe_dump(config))
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    _until(lambda: server.log.read_text().count("read-only mode is on") == WORKERS)
    for _ in range(20):  # whichever worker answers
        refused = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", timeout=10,
                                headers={"Connection": "close"})
        assert refused.status_code == 405


def test_host_jobs_run_in_one_worker(make_berth: MakeBerth) -> None:
    """Scheduled GC and upload purging run in worker 0 alone; the metrics of any worker
    add up every worker's."""
    debug = free_port()
    server = make_berth({
        "http": {"workers": WORKERS, "debug": {"addr": f"127.0.0.1:{debug}",
                                               "prometheus": {"enabled": True}}},
        "berth": {"gc": {"enabled": True, "interval": "1s", "grace": "1h"}},
        "storage": {"maintenance": {"uploadpurging": {"interval": "1s", "age": "1h"}}},
    })
    seen = _answered_by(f"{server.url}/v2/", 100)
    assert len(seen) == WORKERS
    time.sleep(3.5)

    def metric(text: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name))

    for _ in range(10):  # any worker's /metrics: the same totals
        text = requests.get(f"http://127.0.0.1:{debug}/metrics", timeout=10,
                            headers={"Connection": "close"}).text
        served = metric(text, 'registry_http_requests_total{code="200",handler="base"')
        assert served >= 100
        assert metric(text, 'berth_gc_runs_total{outcome="skipped"}') == 0
        assert metric(text, 'berth_gc_runs_total{outcome="done"}') >= 2
    gc_lines = [line for line in server.log.read_text().splitlines()
                if "garbage collection:" in line]
    assert gc_lines and all("worker=0" in line for line in gc_lines), gc_lines[:5]


def _retag_seen_everywhere(server: BerthServer, repo: str, wait: float) -> None:
    first = image(server.url, repo, layers=[b"first " + repo.encode()])
    second = image(server.url, repo, layers=[b"second " + repo.encode()])
    assert put_manifest(server.url, repo, "t", first).status_code == 201
    time.sleep(1.2)  # past the disk driver's window for recent files: versions trusted
    url = f"{server.url}/v2/{repo}/manifests/t"
    seen = {requests.get(url, headers={**ACCEPT, "Connection": "close"}, timeout=10).content
            for _ in range(40)}  # every worker has it cached now
    assert seen == {first}
    assert put_manifest(server.url, repo, "t", second).status_code == 201
    time.sleep(wait)
    for _ in range(40):
        answer = requests.get(url, headers={**ACCEPT, "Connection": "close"}, timeout=10)
        assert answer.content == second, "a worker served the old manifest"


def test_retag_is_seen_by_every_worker_at_once_on_disk(make_berth: MakeBerth,
                                                       repo: str) -> None:
    server = _started(make_berth({"http": {"workers": WORKERS}}))
    _retag_seen_everywhere(server, repo, wait=0)


def test_retag_is_seen_by_every_worker_within_the_ttl_on_s3(
        make_berth: MakeBerth, moto_s3: S3Endpoint, repo: str) -> None:
    server = make_berth({
        "http": {"workers": WORKERS},
        "storage": {"s3": {"bucket": moto_s3.bucket, "regionendpoint": moto_s3.url,
                           "accesskey": moto_s3.access_key, "secretkey": moto_s3.secret_key,
                           "forcepathstyle": True, "rootdirectory": repo}},
        "berth": {"cache": {"ttl": "1s"}},
    })
    _retag_seen_everywhere(server, repo, wait=1.1)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "client.cli", "serve", "--workers", "2", "--listen",
             f"127.0.0.1:{port}", "--root", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == \
        f"berth: cannot serve on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("workers", ["0", "x"])
def test_bad_worker_counts_are_refused(tmp_path: Path, workers: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "client.cli", "serve", "--workers", workers,
                           "--root", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.parametrize(("files", "limit"), [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({}, None),
])
def test_cgroup_cpu_limits_are_read(tmp_path: Path, files: dict[str, str],
                                    limit: float | None) -> None:
    """The default worker count follows a container's CPU limit (cgroup v2 and v1)."""
    from registry.workers import cgroup_cpu_limit

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_workers_stop_when_the_supervisor_is_killed(make_berth: MakeBerth) -> None:
    server = _started(make_berth({"http": {"workers": WORKERS}}))
    workers = _workers(server)
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive
    assert server.log.read_text().count("is gone: stopping") == WORKERS
