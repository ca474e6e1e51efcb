"""The version check, unknown endpoints and methods: always the spec's JSON body."""

from __future__ import annotations

import requests

from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import error_code
from .servers import BerthServer


def test_version_check(berth: BerthServer) -> None:
    r = requests.get(f"{berth.url}/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


def test_unknown_endpoint_is_json_404(berth: BerthServer) -> None:
    r = requests.get(f"{berth.url}/v2/foo/nothing-here")
    assert r.status_code == 404
    assert error_code(r) == "UNSUPPORTED"
    assert "Traceback" not in r.text


def test_wrong_method_is_json_405(berth: BerthServer) -> None:
    r = requests.post(f"{berth.url}/v2/foo/tags/list")
    assert r.status_code == 405
    assert error_code(r) == "UNSUPPORTED"


def test_invalid_names(berth: BerthServer) -> None:
    for name in ["Upper", "a//b", "-lead", "a/../b", "trail/", "x" * 256, "a..b", "a__-b"]:
        r = requests.get(f"{berth.url}/v2/{name}/tags/list")
        assert r.status_code in (400, 404), name
        if r.status_code == 400:
            assert error_code(r) == "NAME_INVALID", name
        else:  # the URL itself was normalised away (e.g. '..'): still a spec error body
            assert error_code(r) in ("NAME_UNKNOWN", "UNSUPPORTED"), name


def test_name_at_length_limit(berth: BerthServer) -> None:
    name = "a" * 255
    r = requests.post(f"{berth.url}/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    r = requests.post(f"{berth.url}/v2/{name}b/blobs/uploads/")
    assert r.status_code == 400
    assert error_code(r) == "NAME_INVALID"
