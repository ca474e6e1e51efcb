"""JSON the client reads from the network and from files (issue 9, item 1): a document
nested 100,000 deep, or malformed, is a one-line error, never a RecursionError (which the
CLI would report as an internal error, exit 70).

Registries, token servers and layouts here are real: `berth serve` holding a hostile
config blob, and a small HTTP server on loopback for what Berth itself never sends (a
token answer, an error body, a tag list)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, put_manifest
from .helpers import push_blob as push
from .layouts import Layout
from .servers import BerthServer
from .test_cli import run_berth

DEEP = b"[" * 100_000 + b"]" * 100_000


def assert_clean(result: Any, code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("berth: error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return str(result.stderr)


@pytest.fixture
def deep_config(berth: BerthServer, repo: str) -> str:
    """A registry image whose config blob is nested 100,000 deep."""
    layer = b"layer of " + repo.encode()
    for blob in (DEEP, layer):
        push(berth.url, repo, blob)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, DEEP),
                           "layers": [descriptor(OCI_LAYER, layer)]}).encode()
    assert put_manifest(berth.url, repo, "v1", manifest).status_code == 201
    return f"{berth.host}/{repo}:v1"


def test_deep_config_blob_inspect(deep_config: str) -> None:
    assert_clean(run_berth("inspect", deep_config), 1, "config", "nested too deeply")


def test_deep_config_blob_unpack(deep_config: str, tmp_path: Path) -> None:
    assert_clean(run_berth("pull", deep_config, "--unpack", str(tmp_path / "x")), 1,
                 "nested too deeply")


def test_deep_config_blob_pull_with_platform(deep_config: str, tmp_path: Path) -> None:
    assert_clean(run_berth("pull", deep_config, f"oci:{tmp_path / 'p'}:x", "--platform",
                           "linux/amd64"), 1, "nested too deeply")


def test_deep_config_blob_as_a_base(deep_config: str, berth: BerthServer,
                                    tmp_path: Path) -> None:
    assert_clean(run_berth("push", str(tmp_path), f"{berth.host}/t/on-deep:v1", "--base",
                           deep_config), 1, "nested too deeply")


def test_deep_layout_index(berth: BerthServer, tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "deep")
    (layout.root / "index.json").write_bytes(DEEP)
    assert_clean(run_berth("copy", f"oci:{layout.root}:v1", f"{berth.host}/t/deep:v1"), 1,
                 "index.json", "nested too deeply")


def test_deep_docker_archive_manifest(berth: BerthServer, tmp_path: Path) -> None:
    archive = tmp_path / "deep.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(DEEP)
        tar.addfile(info, io.BytesIO(DEEP))
    assert_clean(run_berth("push", f"docker-archive:{archive}", f"{berth.host}/t/deep:v1"),
                 1, "manifest.json", "nested too deeply")


def test_deep_docker_config_file(berth: BerthServer, tmp_path: Path) -> None:
    authfile = tmp_path / "config.json"
    authfile.write_bytes(DEEP)
    assert_clean(run_berth("login", berth.host, "-u", "alice", "--password-stdin",
                           "--authfile", str(authfile), stdin="pw\n"), 3, "nested too deeply")


def test_deep_command_line_json(berth: BerthServer, tmp_path: Path) -> None:
    assert_clean(run_berth("push", str(tmp_path), f"{berth.host}/t/deep:v1", "--cmd",
                           "[" * 100_000), 2, "not a JSON array")


# -- a registry that answers what Berth never would --------------------------------------


Route = tuple[int, dict[str, str], bytes]


class HostileRegistry:
    """An HTTP server on loopback answering each path with a fixed (status, headers, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                status, headers, body = owner.routes.get(path, (404, {}, b""))
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.stop()


def tags(hostile: HostileRegistry) -> Any:
    return run_berth("tags", f"http://{hostile.host}/app", "--retries", "0")


def test_deep_token_answer(hostile: HostileRegistry) -> None:
    realm = f"http://{hostile.host}/token"
    hostile.routes["/v2/"] = (401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'},
                              b"")
    hostile.routes["/token"] = (200, {}, DEEP)
    assert_clean(tags(hostile), 3, "token server", "nested too deeply")


def test_deep_error_body(hostile: HostileRegistry) -> None:
    hostile.routes["/v2/"] = (200, {}, b"{}")
    hostile.routes["/v2/app/tags/list"] = (404, {}, DEEP)
    assert_clean(tags(hostile), 4, "repository not found")


def test_deep_and_malformed_tag_lists(hostile: HostileRegistry) -> None:
    hostile.routes["/v2/"] = (200, {}, b"{}")
    hostile.routes["/v2/app/tags/list"] = (200, {}, DEEP)
    assert_clean(tags(hostile), 1, "tag list", "nested too deeply")
    hostile.routes["/v2/app/tags/list"] = (200, {}, b'{"tags": "latest"}')
    assert_clean(tags(hostile), 1, "not a list of strings")
