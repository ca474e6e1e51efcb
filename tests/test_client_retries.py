"""Retries: 429 and 5xx are retried with backoff, honouring Retry-After; other errors not.

The registry here is a deliberately misbehaving aiohttp app on loopback: the point is the
client's reaction to exactly these answers, which no healthy registry gives on demand."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from client.client import Client
from client.errors import NetworkError, RegistryResponseError
from client.session import TransportOptions

MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + "0" * 64, "size": 2},
    "layers": [],
}).encode()

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def flaky_registry(failures: list[tuple[int, dict[str, str]]]) -> tuple[web.Application,
                                                                          list[float]]:
    """Answers the manifest GET with each of `failures` in turn, then with the manifest."""
    seen: list[float] = []

    async def version(request: web.Request) -> web.Response:
        return web.json_response({})

    async def manifest(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if failures:
            status, headers = failures.pop(0)
            return web.json_response({"errors": [{"code": "TOOMANYREQUESTS" if status == 429
                                                  else "UNAVAILABLE", "message": "later"}]},
                                     status=status, headers=headers)
        return web.Response(body=MANIFEST,
                            content_type="application/vnd.oci.image.manifest.v1+json")

    app = web.Application()
    app.router.add_get("/v2/", version)
    app.router.add_get("/v2/app/manifests/v1", manifest)
    return app, seen


@pytest.fixture
async def start(aiohttp_server: ServerFactory) -> Callable[[web.Application], Awaitable[str]]:
    async def run(app: web.Application) -> str:
        server = await aiohttp_server(app)
        return f"127.0.0.1:{server.port}"

    return run


async def test_retry_after_is_honoured(start: Callable[[web.Application], Awaitable[str]]) -> None:
    app, seen = flaky_registry([(429, {"Retry-After": "1"}), (503, {}), (502, {})])
    host = await start(app)
    async with Client(TransportOptions(plain_http=True, backoff=0.05)) as client:
        fetched = await client.manifest(f"{host}/app:v1")
    assert fetched.data == MANIFEST
    assert len(seen) == 4
    assert seen[1] - seen[0] >= 0.95  # waited as long as Retry-After said
    assert seen[2] - seen[1] < 0.9  # then the (short, in this test) exponential backoff


async def test_retries_give_up(start: Callable[[web.Application], Awaitable[str]]) -> None:
    app, seen = flaky_registry([(503, {})] * 10)
    host = await start(app)
    async with Client(TransportOptions(plain_http=True, backoff=0.01, retries=2)) as client:
        with pytest.raises(RegistryResponseError, match="HTTP 503"):
            await client.manifest(f"{host}/app:v1")
    assert len(seen) == 3


async def test_client_errors_are_not_retried(
    start: Callable[[web.Application], Awaitable[str]]
) -> None:
    app, seen = flaky_registry([(400, {})])
    host = await start(app)
    async with Client(TransportOptions(plain_http=True, backoff=0.01)) as client:
        with pytest.raises(RegistryResponseError, match="HTTP 400"):
            await client.manifest(f"{host}/app:v1")
    assert len(seen) == 1


async def test_connection_refused_is_retried_then_reported() -> None:
    started = time.monotonic()
    async with Client(TransportOptions(plain_http=True, backoff=0.05, retries=2)) as client:
        with pytest.raises(NetworkError, match=r"cannot reach 127\.0\.0\.1:1"):
            await client.manifest("127.0.0.1:1/app:v1")
    assert time.monotonic() - started >= 0.05 * 3 * 0.5  # two backoffs happened
