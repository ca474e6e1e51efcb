"""A full disk (issue 9, item 4): a refused write keeps nothing, says so, and the registry
goes on working once there is room. The store is a real 50 MiB tmpfs (mounting needs
root, which CI has)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import MakeBerth
from .helpers import error_code
from .servers import BerthServer

MB = 1_000_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 50 MiB filesystem of the test's own (requested before the server, so the server
    is stopped before it is unmounted)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def server(small_disk: Path, make_berth: MakeBerth) -> BerthServer:
    return make_berth({"storage": {"filesystem": {"rootdirectory": str(small_disk)}}})


def used(path: Path) -> int:
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_full(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert error_code(r) == "UNAVAILABLE"
    assert "storage is full" in r.json()["errors"][0]["message"]
    assert int(r.headers["Retry-After"]) > 0


def test_monolithic_push_that_does_not_fit_keeps_nothing(server: BerthServer, repo: str,
                                                         small_disk: Path) -> None:
    """It left ~50 MiB of a session no client could cancel, until the 168 h purge."""
    data = os.urandom(100 * MB)
    r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                      data=data)
    assert_full(r)
    assert used(small_disk) < MB
    small = b"a kilobyte " * 93
    r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(small)},
                      data=small)
    assert r.status_code == 201, r.text
    assert requests.get(f"{server.url}/v2/{repo}/blobs/{sha256(small)}").content == small


def test_refused_chunk_leaves_the_session_as_it_was(server: BerthServer, repo: str,
                                                    small_disk: Path) -> None:
    """A PATCH refused for lack of space kept 2.4 MB of itself (Range moved on)."""
    r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/")
    location = server.url + r.headers["Location"]
    first = os.urandom(30 * MB)
    r = requests.patch(location, data=first, headers={"Content-Range": f"0-{30 * MB - 1}"})
    assert r.status_code == 202 and r.headers["Range"] == f"0-{30 * MB - 1}"
    before = used(small_disk)
    for _ in range(3):  # refused each time, logged once
        r = requests.patch(location, data=os.urandom(30 * MB),
                           headers={"Content-Range": f"{30 * MB}-{60 * MB - 1}"})
        assert_full(r)
        status = requests.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{30 * MB - 1}"
        assert used(small_disk) <= before
    log = server.log.read_text()
    assert log.count("storage is full") == 1, log
    # with a chunk that fits, the upload goes on and its digest is right
    second = os.urandom(10 * MB)
    r = requests.patch(location, data=second,
                       headers={"Content-Range": f"{30 * MB}-{40 * MB - 1}"})
    assert r.status_code == 202 and r.headers["Range"] == f"0-{40 * MB - 1}"
    r = requests.put(location, params={"digest": sha256(first + second)})
    assert r.status_code == 201, r.text
    got = requests.get(f"{server.url}/v2/{repo}/blobs/{sha256(first + second)}")
    assert got.content == first + second


def test_final_chunk_that_does_not_fit(server: BerthServer, repo: str,
                                       small_disk: Path) -> None:
    """A PUT carrying a last chunk that does not fit: refused, the session kept as it was
    (the client may send it again once there is room)."""
    r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/")
    location = server.url + r.headers["Location"]
    first = os.urandom(20 * MB)
    assert requests.patch(location, data=first).status_code == 202
    rest = os.urandom(40 * MB)
    r = requests.put(location, params={"digest": sha256(first + rest)}, data=rest)
    assert_full(r)
    assert requests.get(location).headers["Range"] == f"0-{20 * MB - 1}"
    tail = os.urandom(MB)
    r = requests.put(location, params={"digest": sha256(first + tail)}, data=tail)
    assert r.status_code == 201, r.text
