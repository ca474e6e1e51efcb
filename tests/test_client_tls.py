"""TLS: verification on by default, --ca-file, --insecure; loopback registries speaking TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.client import Client
from client.errors import NetworkError
from client.session import TransportOptions

from .authkit import self_signed
from .layouts import Layout, build_image
from .servers import DistributionServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(DistributionServer.binary is None,
                       reason="docker-registry is not installed (CI installs it)"),
]


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[DistributionServer, Path]]:
    cert, key = self_signed(tmp_path)
    tls = {"http": {"tls": {"certificate": str(cert), "key": str(key)}}}
    server = DistributionServer(tmp_path, tls).start()
    yield server, cert
    server.stop()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    src = Layout.create(tmp_path / "src")
    image = build_image(src, "tls")
    src.tag("v1", "application/vnd.oci.image.manifest.v1+json", image.manifest)
    return src


async def test_verification_is_on_by_default(
    tls_registry: tuple[DistributionServer, Path], layout: Layout
) -> None:
    registry, cert = tls_registry
    strict = TransportOptions(plain_http=False, retries=0)
    async with Client(strict) as client:
        with pytest.raises(NetworkError, match=r"(?i)certificate|ssl|tls"):
            await client.copy(f"oci:{layout.root}:v1", f"{registry.host}/app:v1")
    ca = TransportOptions(plain_http=False, ca_file=str(cert))
    async with Client(ca) as client:
        result = await client.copy(f"oci:{layout.root}:v1", f"{registry.host}/app:v1")
    insecure = TransportOptions(plain_http=False, insecure=True)
    async with Client(insecure) as client:
        again = await client.copy(f"{registry.host}/app:v1", f"{registry.host}/b:v1")
    assert again.digest == result.digest


async def test_loopback_registry_with_tls_is_found(
    tls_registry: tuple[DistributionServer, Path], layout: Layout
) -> None:
    registry, _ = tls_registry
    async with Client() as client:  # loopback: HTTPS first, as Docker does
        result = await client.copy(f"oci:{layout.root}:v1", f"{registry.host}/app:v1")
        assert client.session(registry.host).scheme == "https"
        assert await client.tags(f"{registry.host}/app") == ["v1"]
    assert result.digest == layout.resolve("v1")["digest"]
