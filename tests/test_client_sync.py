"""The blocking facade, as a script would use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from client.errors import NotFoundError
from client.oci.digest import Digest
from client.sync import SyncClient

from .layouts import Layout, build_image
from .servers import BerthServer


def test_sync_client(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    image = build_image(src, "sync")
    src.tag("v1", "application/vnd.oci.image.manifest.v1+json", image.manifest)
    with SyncClient() as client:
        result = client.copy(f"oci:{src.root}:v1", f"{berth.host}/{repo}:v1")
        assert result.digest == image.digest
        assert client.tags(f"{berth.host}/{repo}") == ["v1"]
        assert repo in client.catalog(berth.host)
        fetched = client.manifest(f"{berth.host}/{repo}:v1")
        assert fetched.data == image.manifest
        assert client.blob(f"{berth.host}/{repo}", Digest.parse(image.config_digest)) == \
            image.config
        client.delete(f"{berth.host}/{repo}:v1")
        with pytest.raises(NotFoundError):
            client.manifest(f"{berth.host}/{repo}:v1")
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/{image.digest}").status_code == 200
