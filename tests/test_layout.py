"""Issue 12: the storage layout's version is recorded, and a root a newer Berth wrote is
refused (one line, exit 2) by the server and the commands alike, before they write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from .conftest import MakeBerth
from .helpers import push_blob
from .servers import ROOT

RECORD = Path("docker/registry/v2/_layout")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_new_root_records_its_layout(make_berth: MakeBerth) -> None:
    server = make_berth()
    push_blob(server.url, "app", b"laid out")
    assert (server.root / RECORD).read_text() == "1\n"


def test_a_newer_layout_is_refused(make_berth: MakeBerth, tmp_path: Path) -> None:
    server = make_berth()
    push_blob(server.url, "app", b"before the upgrade")
    server.stop()
    (server.root / RECORD).write_text("2\n")  # as a future Berth would
    before = files(server.root)
    serve = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--root", str(server.root),
         "--listen", "127.0.0.1:0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2
    assert serve.stderr.strip().endswith("this one knows up to 1): upgrade this Berth")
    assert "Traceback" not in serve.stderr and len(serve.stderr.strip().splitlines()) == 1
    for command in (["gc", "--grace", "0s"], ["fsck", "--repair"], ["du"]):
        run = subprocess.run([sys.executable, "-m", "client.cli", *command, "--root",
                              str(server.root)], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 2, (command, run.stderr)
        assert "written by a newer Berth" in run.stderr and "Traceback" not in run.stderr
    assert files(server.root) == before  # nothing written by any of them
    (server.root / RECORD).write_text("1\n")
    server.start()
    assert requests.get(f"{server.url}/v2/").status_code == 200
