"""What the CLI tells its user (issue 9, item 11): no misleading progress lines, hints
where the next step is not obvious, Click's usage errors in the one-line format, exit 130
on Ctrl-C, --debug that logs requests, progress while packing, lines that fit 80 columns,
no blank line for an empty listing."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.client import Client
from client.events import Events

from .authkit import ISSUER, POLICY, SERVICE, USERS, write_htpasswd, write_key, write_policy
from .conftest import MakeBerth
from .helpers import OCI_CONFIG, OCI_MANIFEST, descriptor, digest, image, put_manifest
from .layouts import Layout, layout_image, tar_bytes
from .servers import ROOT, BerthServer
from .test_cli import run_berth

FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


def foreign_layout(root: Path) -> tuple[Layout, str]:
    """A layout whose image has a foreign layer, its blob included; returns its digest."""
    layout = Layout.create(root)
    tar = tar_bytes({"Files/base.txt": b"foreign base\n"})
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest(tar)]}}).encode()
    for blob in (layer, config):
        layout.add_blob(blob)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(FOREIGN, layer, urls=["http://127.0.0.1:1/base.tar.gz"])],
    }).encode()
    layout.tag("v1", OCI_MANIFEST, manifest)
    return layout, digest(layer)


def test_pushing_a_layout_with_a_foreign_blob_hints_include_foreign(
        berth: BerthServer, repo: str, tmp_path: Path) -> None:
    layout, layer = foreign_layout(tmp_path / "src")
    pushed = run_berth("push", f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1")
    assert pushed.returncode == 0, pushed.stderr
    warning = [line for line in pushed.stderr.splitlines() if line.startswith("berth: warning")]
    assert len(warning) == 1 and layer[7:19] in warning[0], pushed.stderr
    assert "--include-foreign" in warning[0]
    quiet = run_berth("push", f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v2", "-q")
    assert "--include-foreign" in quiet.stderr  # a warning, not progress: -q shows it
    included = run_berth("push", f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v3",
                         "--include-foreign")
    assert included.returncode == 0 and "warning" not in included.stderr, included.stderr


def test_unpack_does_not_call_a_fetched_foreign_layer_a_reference(
        berth: BerthServer, repo: str, tmp_path: Path) -> None:
    layout, layer = foreign_layout(tmp_path / "src")
    ref = f"{berth.host}/{repo}:v1"
    assert run_berth("push", f"oci:{layout.root}:v1", ref, "--include-foreign",
                     "-q").returncode == 0
    target = tmp_path / "rootfs"
    pulled = run_berth("pull", ref, "--unpack", str(target))
    assert pulled.returncode == 0, pulled.stderr
    assert (target / "Files" / "base.txt").read_text() == "foreign base\n"
    assert "kept as a reference" not in pulled.stderr
    assert f"blob {layer[7:19]} " in pulled.stderr and ": done" in pulled.stderr


def test_anonymous_refused_under_token_auth_is_told_to_log_in(make_berth: MakeBerth,
                                                              tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    server = make_berth({"auth": {
        "htpasswd": {"path": str(write_htpasswd(tmp_path / "htpasswd", USERS))},
        "policy": str(write_policy(tmp_path / "policy.yml", POLICY)),
        "token": {"service": SERVICE, "issuer": ISSUER, "signingkey": str(
            write_key(tmp_path / "key.pem", ec.generate_private_key(ec.SECP256R1())))},
    }})
    layout, _ = layout_image(tmp_path / "src", "anonymous")
    authfile = ["--authfile", str(tmp_path / "none.json")]
    pushed = run_berth("push", f"oci:{layout.root}:v1", f"{server.host}/team-a/app:v1", "-q",
                       "--creds", f"alice:{USERS['alice']}")
    assert pushed.returncode == 0, pushed.stderr
    for args in (("pull", f"{server.host}/team-a/app:v1", f"oci:{tmp_path / 'x'}:v1"),
                 ("push", f"oci:{layout.root}:v1", f"{server.host}/public/app:v1")):
        refused = run_berth(*args, "-q", *authfile)
        assert refused.returncode == 3, refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert f"berth login {server.host}" in refused.stderr, refused.stderr
    as_bob = run_berth("push", f"oci:{layout.root}:v1", f"{server.host}/public/app:v1", "-q",
                       "--creds", f"bob:{USERS['bob']}")
    assert as_bob.returncode == 3 and "(as bob)" in as_bob.stderr, as_bob.stderr


@pytest.mark.parametrize("args", [
    ("pull",), ("push", "a"), ("tags", "x", "--retries", "99"), ("copy", "a", "b", "--bogus"),
    ("inspect", "a", "b"), ("no-such-command",),
])
def test_click_usage_errors_are_one_line(args: tuple[str, ...]) -> None:
    result = run_berth(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("berth: error: "), result.stderr
    assert "--help" in result.stderr and "Usage:" not in result.stderr


def test_interrupt_exits_130_and_is_documented(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "tags", f"http://127.0.0.1:{port}/app"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(3)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr == "berth: interrupted\n"
    docs = " ".join((ROOT / "docs" / "client.md").read_text().split())
    assert "130 interrupted" in docs


def test_debug_logs_every_request(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    layout, _ = layout_image(tmp_path / "src", "debug")
    assert run_berth("push", f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1",
                     "-q").returncode == 0
    result = run_berth("tags", f"http://{berth.host}/{repo}", "--debug")
    assert result.returncode == 0, result.stderr
    assert f"GET http://{berth.host}/v2/: HTTP 200" in result.stderr
    assert f"GET http://{berth.host}/v2/{repo}/tags/list: HTTP 200" in result.stderr


def test_packing_shows_progress_and_lines_fit_80_columns(berth: BerthServer, repo: str,
                                                         tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "big.bin").write_bytes(bytes(range(256)) * 8192)
    pushed = run_berth("push", str(tree), f"{berth.host}/{repo}:v1")
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stderr.splitlines()
    assert lines[0] == f"packing {tree} ..."
    assert lines[1].startswith(f"packed {tree}: 2 entries, a ")
    layout, _ = layout_image(tmp_path / "src", "columns")
    copied = run_berth("push", f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v2")
    progress = [line for line in lines + copied.stderr.splitlines()
                if line.startswith(("blob ", "manifest "))]
    assert sum(line.startswith("manifest ") for line in progress) == 2
    assert all(len(line) <= 80 for line in progress), progress


class Recorder(Events):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def pack_progress(self, directory: str, files: int, done: int) -> None:
        self.calls.append(("progress", files, done))

    def pack_done(self, directory: str, files: int, size: int) -> None:
        self.calls.append(("done", files, size))


async def test_packing_reports_progress_to_the_library(berth: BerthServer, repo: str,
                                                       tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for n in range(20):
        (tree / f"file-{n}").write_bytes(b"x" * 100_000)
    events = Recorder()
    async with Client() as client:
        await client.build([tree], f"{berth.host}/{repo}:v1", events=events)
    progress = [c for c in events.calls if c[0] == "progress"]
    assert progress and events.calls[-1][:2] == ("done", 20)
    done = [c[2] for c in progress]
    assert done == sorted(done) and done[-1] <= 2_000_000


def test_empty_listings_print_no_blank_line(make_berth: MakeBerth) -> None:
    server = make_berth()
    catalog = run_berth("catalog", server.host)
    assert (catalog.returncode, catalog.stdout) == (0, ""), catalog.stderr
    manifest = image(server.url, "untagged/app")
    assert put_manifest(server.url, "untagged/app", digest(manifest), manifest).ok
    tags = run_berth("tags", f"{server.host}/untagged/app")
    assert (tags.returncode, tags.stdout) == (0, ""), tags.stderr
    assert tags.stderr == f"{server.host}/untagged/app: no tags\n"
    assert json.loads(run_berth("tags", f"{server.host}/untagged/app", "--json").stdout) == []
