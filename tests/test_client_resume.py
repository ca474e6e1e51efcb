"""A push whose connection dies mid-blob resumes from the registry's offset, not from zero."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import pytest

from client.client import Client

from .helpers import digest
from .layouts import Layout
from .servers import BerthServer

MiB = 1024 * 1024


class CuttingProxy:
    """A loopback TCP proxy that cuts one connection after `cut_after` bytes upstream."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.sent = 0
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def upstream() -> None:
            while data := await reader.read(256 * 1024):
                self.sent += len(data)
                up_writer.write(data)
                await up_writer.drain()
                if self.cuts == 0 and self.sent >= self.cut_after:
                    self.cuts += 1
                    break  # the network fails mid-request

        async def downstream() -> None:
            while data := await up_reader.read(256 * 1024):
                writer.write(data)
                await writer.drain()

        down = asyncio.ensure_future(downstream())
        with contextlib.suppress(ConnectionError):
            await upstream()
        for w in (writer, up_writer):
            w.close()
        down.cancel()
        with contextlib.suppress(BaseException):
            await down

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_interrupted_push_resumes_from_offset(berth: BerthServer, repo: str,
                                                    tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="client.remote")
    layer = os.urandom(40 * MiB)
    layout = Layout.create(tmp_path / "src")
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layout.add_blob(layer)
    layout.add_blob(config)
    manifest = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json",'
        f'"digest":"{digest(config)}","size":{len(config)}}},'
        f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
        f'"digest":"{digest(layer)}","size":{len(layer)}}}]}}'
    ).encode()
    layout.tag("big", "application/vnd.oci.image.manifest.v1+json", manifest)

    proxy = CuttingProxy(berth.port, cut_after=25 * MiB)
    port = await proxy.start()
    try:
        async with Client() as client:
            result = await client.copy(f"oci:{layout.root}:big", f"127.0.0.1:{port}/{repo}:big")
    finally:
        await proxy.stop()
    assert proxy.cuts == 1
    assert result.blobs[digest(layer)] == "uploaded"
    # Resumed where the registry stood, not restarted: the client asked, got an offset past
    # zero (what the registry had received when the connection died), and sent less than a
    # restart would have (what went before the cut plus the whole layer again).
    # (A second resume can follow when the registry was still taking in bytes of the cut
    # request as the client asked: the chunk then gets 416 and the client asks again.)
    resumed = [r for r in caplog.records if "resuming upload" in r.getMessage()]
    assert resumed
    offsets = [int(r.getMessage().rsplit(" ", 1)[1]) for r in resumed]
    assert all(0 < offset < len(layer) for offset in offsets)
    assert proxy.sent < proxy.cut_after + len(layer)
    log = berth.log.read_text()
    assert f'"GET /v2/{repo}/blobs/uploads/' in log  # the client asked where to resume
    import requests

    got = requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(layer)}")
    assert got.content == layer
