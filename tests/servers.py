"""Real servers for the tests: `berth serve` and Debian's `docker-registry`, as processes on
loopback with their own storage, started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import requests
import urllib3
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20,
               log_line: str | None = None) -> None:
    """Until the server answers `url` (or, for servers no anonymous client can reach, such
    as those that want client certificates, until its log says `log_line`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        if log_line is not None:
            if log_line in log.read_text():
                return
            time.sleep(0.05)
            continue
        try:  # (a TLS server's certificate is the test's own: readiness only)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                if requests.get(url, timeout=1, verify=False).status_code in (200, 401):
                    return
        except (requests.ConnectionError, requests.Timeout):  # (Timeout: a supervisor's
            pass  # socket takes connections before its workers serve them)
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()}")


class ServerProcess:
    """A server child process on a free loopback port, stopped by PID."""

    def __init__(self, workdir: Path, log_name: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / log_name
        self.scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None,
               scheme: str = "http", log_line: str | None = None) -> None:
        self.scheme = scheme
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env=env)
        try:
            wait_ready(f"{scheme}://{self.host}/v2/", self.proc, self.log, log_line=log_line)
        except BaseException:
            self.stop()  # a server that never became ready is not left running
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


class BerthServer(ServerProcess):
    """`berth serve` in a child process, configured by a YAML file the test writes."""

    def __init__(self, workdir: Path, config: dict[str, Any] | None = None) -> None:
        super().__init__(workdir, "berth.log")
        self.root = workdir / "data"
        self.config = config or {}

    def start(self) -> BerthServer:
        config_file = self.workdir / "config.yml"
        config = {
            "http": {"addr": self.host, "workers": 1},  # (a test asks for more)
            "storage": {"filesystem": {"rootdirectory": str(self.root)}},
            "log": {"level": "info"},
        }
        _merge(config, self.config)
        if {"inmemory", "s3"} & set(config["storage"]):  # type: ignore[arg-type]
            del config["storage"]["filesystem"]  # type: ignore[attr-defined]
        config_file.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        tls = config["http"].get("tls") or {}  # type: ignore[attr-defined]
        self._spawn(
            [sys.executable, "-m", "client.cli", "serve", "--config", str(config_file)], env,
            scheme="https" if tls else "http",
            log_line="berth registry listening on" if tls.get("clientcas") else None,
        )
        return self

    def restart(self) -> None:
        self.stop()
        self.start()


class DistributionServer(ServerProcess):
    """Debian's `docker-registry` (the CNCF distribution build) with filesystem storage."""

    binary = shutil.which("docker-registry")

    def __init__(self, workdir: Path, config: dict[str, Any] | None = None) -> None:
        """`config` is merged into the default one (e.g. an `auth` or `http.tls` section)."""
        super().__init__(workdir, "distribution.log")
        self.config = config or {}

    def start(self) -> DistributionServer:
        assert self.binary, "docker-registry is not installed"
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "distribution-data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "workers": 1},  # (a test asks for more)
        }
        _merge(config, self.config)
        config_file = self.workdir / "distribution.yml"
        config_file.write_text(yaml.safe_dump(config))
        tls = bool(config["http"].get("tls"))  # type: ignore[attr-defined]
        self._spawn([self.binary, "serve", str(config_file)], scheme="https" if tls else "http")
        return self


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
