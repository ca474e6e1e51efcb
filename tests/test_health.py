"""Issue 12: health probes (/livez, /readyz, distribution's /debug/health), the debug
listener, the shutdown order, and read-only mode switched by SIGHUP."""

from __future__ import annotations

import base64
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from .authkit import write_htpasswd
from .conftest import MakeBerth
from .helpers import digest, image, push_blob, put_manifest
from .servers import BerthServer, free_port

V2 = "docker/registry/v2"


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_probes_answer_without_credentials(make_berth: MakeBerth, tmp_path: Path) -> None:
    users = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    server = make_berth({"auth": {"htpasswd": {"realm": "berth", "path": str(users)}}})
    assert requests.get(f"{server.url}/v2/").status_code == 401
    for path, body in (("/livez", "ok\n"), ("/readyz", "ok\n")):
        response = requests.get(server.url + path)
        assert (response.status_code, response.text) == (200, body)
        assert requests.head(server.url + path).status_code == 200
    response = requests.get(f"{server.url}/debug/health")
    assert response.status_code == 200 and response.json() == {}
    # not every path outside /v2/ is open: only the probes
    assert requests.post(f"{server.url}/readyz").status_code != 200


def test_readiness_follows_storage(make_berth: MakeBerth) -> None:
    """Storage that refuses writes makes /readyz 503 (naming the check) and, with the
    storagedriver check enabled, /debug/health too, after `threshold` failures; both
    recover by themselves. /livez stays 200 throughout."""
    server = make_berth({"health": {"storagedriver": {
        "enabled": True, "interval": "0.1s", "threshold": 2}}})
    url = server.url
    wait_for(lambda: (server.root / V2 / "_health/probe").exists())
    blocker = server.root / V2 / "_health"
    for child in blocker.iterdir():
        child.unlink()
    blocker.rmdir()
    blocker.write_text("a file where storage needs a directory")
    wait_for(lambda: requests.get(f"{url}/readyz").status_code == 503)
    ready = requests.get(f"{url}/readyz")
    assert ready.text.startswith("storagedriver_filesystem: ")
    health = requests.get(f"{url}/debug/health")
    assert health.status_code == 503
    assert list(health.json()) == ["storagedriver_filesystem"]
    assert requests.get(f"{url}/livez").status_code == 200
    blocker.unlink()
    wait_for(lambda: requests.get(f"{url}/readyz").status_code == 200)
    assert requests.get(f"{url}/debug/health").json() == {}


def test_debug_health_leaves_out_a_check_not_enabled(make_berth: MakeBerth) -> None:
    """As distribution: without health.storagedriver.enabled, /debug/health has no
    storage check (readiness still has one)."""
    server = make_berth({"health": {"storagedriver": {"interval": "0.1s"}}})
    wait_for(lambda: (server.root / V2 / "_health/probe").exists())
    blocker = server.root / V2 / "_health"
    (blocker / "probe").unlink()
    blocker.rmdir()
    blocker.write_text("")
    wait_for(lambda: requests.get(f"{server.url}/readyz").status_code == 503)
    assert requests.get(f"{server.url}/debug/health").status_code == 200


def test_debug_listener_serves_probes_not_the_api(make_berth: MakeBerth) -> None:
    debug = f"127.0.0.1:{free_port()}"
    server = make_berth({"http": {"debug": {"addr": debug}}})
    for path in ("/livez", "/readyz", "/debug/health"):
        assert requests.get(f"http://{debug}{path}").status_code == 200
    assert requests.get(f"http://{debug}/v2/").status_code == 404
    assert requests.get(f"{server.url}/v2/").status_code == 200


def test_shutdown_turns_readiness_off_first(make_berth: MakeBerth) -> None:
    """SIGTERM: /readyz answers 503 at once while the API still serves, for
    http.shutdowndelay; then the listener closes and the process exits 0."""
    server = make_berth({"http": {"shutdowndelay": "3s"}})
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: requests.get(f"{server.url}/readyz").status_code == 503, timeout=2.5)
    assert requests.get(f"{server.url}/readyz").text == "shutting down\n"
    assert requests.get(f"{server.url}/v2/").status_code == 200
    assert requests.get(f"{server.url}/livez").status_code == 200
    assert server.proc.wait(30) == 0


def write_config(server: BerthServer, change: dict[str, Any]) -> None:
    config_file = server.workdir / "config.yml"
    config = yaml.safe_load(config_file.read_text())
    config.setdefault("storage", {}).setdefault("maintenance", {}).update(change)
    config_file.write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("auth", [False, True])
def test_read_only_mode_refuses_writes_and_switches_on_sighup(
        make_berth: MakeBerth, tmp_path: Path, auth: bool) -> None:
    config: dict[str, Any] = {}
    if auth:
        users = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
        config["auth"] = {"htpasswd": {"realm": "berth", "path": str(users)}}
    credentials = ("alice", "secret") if auth else None
    headers = _basic(credentials) if credentials else None
    server = make_berth(config)
    url = server.url
    manifest = image(url, "app", layers=[b"before maintenance"], headers=headers)
    assert put_manifest(url, "app", "v1", manifest, headers=headers).status_code == 201

    write_config(server, {"readonly": {"enabled": True}})
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: requests.post(f"{url}/v2/app/blobs/uploads/").status_code == 405)

    refused = [
        requests.post(f"{url}/v2/app/blobs/uploads/", auth=credentials),
        requests.put(f"{url}/v2/app/manifests/v2", data=manifest, auth=credentials,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
        requests.delete(f"{url}/v2/app/manifests/v1", auth=credentials),
        requests.patch(f"{url}/v2/app/blobs/uploads/some-id", data=b"x", auth=credentials),
        requests.post(f"{url}/v2/app/blobs/uploads/", auth=None),  # before access control
    ]
    for response in refused:
        assert response.status_code == 405, response.text
        error = response.json()["errors"][0]
        assert error["code"] == "UNSUPPORTED" and "read-only" in error["message"]
    # reads go on, and readiness says so
    pulled = requests.get(f"{url}/v2/app/manifests/v1", auth=credentials,
                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert pulled.content == manifest
    assert requests.get(f"{url}/readyz").text == "ok (read-only)\n"
    assert requests.get(f"{url}/v2/app/tags/list", auth=credentials).json()["tags"] == ["v1"]

    write_config(server, {"readonly": {"enabled": False}})
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: requests.get(f"{url}/readyz").text == "ok\n")
    assert push_blob(url, "app", b"after maintenance", headers=headers) == digest(
        b"after maintenance")
    assert "read-only mode is on" in server.log.read_text()


def _basic(credentials: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(":".join(credentials).encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_read_only_from_the_start_and_a_bad_reload_keeps_it(make_berth: MakeBerth) -> None:
    server = make_berth({"storage": {"maintenance": {"readonly": {"enabled": True}}}})
    assert requests.post(f"{server.url}/v2/app/blobs/uploads/").status_code == 405
    (server.workdir / "config.yml").write_text("http: [not, a, mapping")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reload failed" in server.log.read_text())
    assert requests.post(f"{server.url}/v2/app/blobs/uploads/").status_code == 405
    assert not (server.root / V2 / "_health").exists()  # read-only: the probe only reads
