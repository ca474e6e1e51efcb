"""The TLS probe of loopback registries (issue 9, item 12): as Docker does for insecure
registries, HTTPS is tried first, then plain HTTP; the answer is remembered per host for
the process, so the registry's log shows one probe (`"UNKNOWN / HTTP/1.0" 400`, a TLS
hello on a plain-HTTP port) at most per process, and none when plain HTTP is known."""

from __future__ import annotations

import time
from pathlib import Path

from client.client import Client

from .conftest import MakeBerth
from .layouts import layout_image
from .servers import BerthServer
from .test_cli import run_berth

PROBE = '"UNKNOWN / HTTP/1.0" 400'


def probes(server: BerthServer) -> int:
    time.sleep(0.3)  # the access log line is written as the request ends
    return sum(PROBE in line for line in server.log.read_text().splitlines())


async def test_two_clients_in_one_process_probe_once(make_berth: MakeBerth,
                                                     tmp_path: Path) -> None:
    server = make_berth()
    layout, _ = layout_image(tmp_path / "src", "probe")
    async with Client() as first:
        await first.copy(f"oci:{layout.root}:v1", f"{server.host}/a:v1")
    async with Client() as second:
        assert await second.tags(f"{server.host}/a") == ["v1"]
        await second.copy(f"{server.host}/a:v1", f"{server.host}/b:v1")
    assert probes(server) == 1


def test_one_probe_per_command_at_most(make_berth: MakeBerth, tmp_path: Path) -> None:
    server = make_berth()
    layout, _ = layout_image(tmp_path / "src", "probe-cli")
    base = f"{server.host}/base:v1"
    assert run_berth("push", f"oci:{layout.root}:v1", base, "-q").returncode == 0
    assert probes(server) == 1
    app = tmp_path / "app"
    app.mkdir()
    built = run_berth("push", str(app), f"{server.host}/app:v1", "--base", base, "-q")
    assert built.returncode == 0, built.stderr
    assert probes(server) == 2


def test_no_probe_when_plain_http_is_known(make_berth: MakeBerth, tmp_path: Path) -> None:
    server = make_berth()
    layout, _ = layout_image(tmp_path / "src", "no-probe")
    for args in (("push", f"oci:{layout.root}:v1", f"http://{server.host}/a:v1", "-q"),
                 ("tags", f"{server.host}/a", "--plain-http"),
                 ("catalog", f"http://{server.host}"),
                 ("copy", f"http://{server.host}/a:v1", f"http://{server.host}/b:v1", "-q")):
        result = run_berth(*args)
        assert result.returncode == 0, result.stderr
    assert probes(server) == 0
