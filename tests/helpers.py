"""Small HTTP helpers for driving a registry in tests (deliberately not the Berth client)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# The `{}` config descriptor of artifacts (image-spec "empty descriptor").
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json",
         "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
         "size": 2}


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def push_blob(base: str, repo: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    d = digest(data)
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data,
                      headers=headers, verify=False)
    assert r.status_code == 201, r.text
    return d


def image(base: str, repo: str, layers: list[bytes] | None = None,
          config: bytes | None = None, media_type: str = OCI_MANIFEST,
          headers: dict[str, str] | None = None, **fields: Any) -> bytes:
    """Push config and layers, return the bytes of a manifest referencing them."""
    layers = [b"layer-" + repo.encode()] if layers is None else layers
    config = config or json.dumps({"architecture": "amd64", "os": "linux",
                                   "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    docker = media_type == DOCKER_MANIFEST
    for blob in [config, *layers]:
        push_blob(base, repo, blob, headers)
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, b) for b in layers],
        **fields,
    }
    return json.dumps(doc).encode()


def put_manifest(base: str, repo: str, reference: str, data: bytes,
                 media_type: str = OCI_MANIFEST, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> requests.Response:
    return requests.put(f"{base}/v2/{repo}/manifests/{reference}", data=data,
                        headers={"Content-Type": media_type, **(headers or {})}, **kwargs)


def error_code(response: requests.Response) -> str:
    body = response.json()
    assert set(body) == {"errors"}, body
    return str(body["errors"][0]["code"])
