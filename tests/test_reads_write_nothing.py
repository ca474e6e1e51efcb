"""A read never writes (issue 9, item 3): anonymous `tags/list` of unknown repositories
created repository directories, and listings built their indexes on the way. Here every
kind of read, answered or refused, leaves storage byte for byte as it was."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from .authkit import POLICY, USERS, basic, write_htpasswd, write_policy
from .conftest import MakeBerth, S3Endpoint, s3_config
from .helpers import (
    EMPTY,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest,
    put_manifest,
)
from .servers import BerthServer, DistributionServer

Snapshot = dict[str, tuple[bytes, Any]]
HEALTH = "_health/"  # the server's readiness probe (not a read) writes there every 10 s


def snapshot(server: BerthServer, s3: S3Endpoint | None) -> Snapshot:
    """Every stored object: its bytes and when it was last written."""
    if s3 is None:
        return {str(p.relative_to(server.root)): (p.read_bytes(), p.stat().st_mtime_ns)
                for p in sorted(server.root.rglob("*")) if p.is_file() and HEALTH not in str(p)}
    import boto3

    bucket = boto3.client("s3", endpoint_url=s3.url, region_name=s3.region,
                          aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key)
    prefix = server.config["storage"]["s3"]["rootdirectory"]
    found: Snapshot = {}
    for page in bucket.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket,
                                                                 Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            if HEALTH in obj["Key"]:
                continue
            body = bucket.get_object(Bucket=s3.bucket, Key=obj["Key"])["Body"].read()
            found[obj["Key"]] = (body, (obj["LastModified"], obj["ETag"]))
    return found


def push(base: str, repo: str, data: bytes, headers: dict[str, str] | None) -> str:
    """POST, then PUT ?digest= (distribution 2.8 has no monolithic POST)."""
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", headers=headers)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location = location if location.startswith("http") else base + location
    r = requests.put(location, params={"digest": digest(data)}, data=data, headers=headers)
    assert r.status_code == 201, r.text
    return digest(data)


def publish(base: str, repo: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """An image tagged `v1`, an index over it tagged `all`, and a referrer: the digests."""
    config, layer = b'{"architecture": "amd64", "os": "linux"}', f"layer of {repo}".encode()
    for blob in (config, layer, b"{}"):
        push(base, repo, blob, headers)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config),
                           "layers": [descriptor(OCI_LAYER, layer)]}).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, manifest)]}).encode()
    referrer = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "artifactType": "application/x-test", "config": EMPTY,
                           "layers": [], "subject": descriptor(OCI_MANIFEST, manifest)}).encode()
    for reference, data, media_type in (("v1", manifest, OCI_MANIFEST),
                                        ("all", index, OCI_INDEX),
                                        (digest(referrer), referrer, OCI_MANIFEST)):
        r = put_manifest(base, repo, reference, data, media_type, headers=headers)
        assert r.status_code == 201, r.text
    return {"manifest": digest(manifest), "index": digest(index), "layer": digest(layer)}


def read_everything(base: str, repo: str, digests: dict[str, str],
                    headers: dict[str, str] | None = None) -> list[int]:
    """Every read endpoint, on what exists and on what does not; the statuses."""
    unknown = f"nobody/{uuid.uuid4().hex[:8]}"
    session_id = str(uuid.uuid4())
    paths = [
        "/v2/", "/v2/_catalog", "/v2/_catalog?n=1", "/v2/_catalog?n=1&last=a",
        f"/v2/{repo}/tags/list", f"/v2/{repo}/tags/list?n=1", f"/v2/{repo}/tags/list?last=a",
        f"/v2/{repo}/manifests/v1", f"/v2/{repo}/manifests/all",
        f"/v2/{repo}/manifests/{digests['manifest']}", f"/v2/{repo}/manifests/nope",
        f"/v2/{repo}/blobs/{digests['layer']}", f"/v2/{repo}/blobs/{digests['index']}",
        f"/v2/{repo}/referrers/{digests['manifest']}",
        f"/v2/{repo}/referrers/{digests['manifest']}?artifactType=application/x-test",
        f"/v2/{repo}/blobs/uploads/{session_id}", f"/v2/{repo}/blobs/uploads/not-a-uuid",
        f"/v2/{unknown}/tags/list", f"/v2/{unknown}/tags/list?n=5",
        f"/v2/{unknown}/manifests/latest", f"/v2/{unknown}/manifests/{digests['manifest']}",
        f"/v2/{unknown}/blobs/{digests['layer']}", f"/v2/{unknown}/referrers/{digests['layer']}",
        f"/v2/{unknown}/blobs/uploads/{session_id}", "/v2/UPPER/tags/list", "/v2/a/b/c/nothing",
        "/nothing",
    ]
    statuses = []
    for path in paths:
        for method in ("GET", "HEAD"):
            r = requests.request(method, base + path, headers=headers, allow_redirects=False)
            statuses.append(r.status_code)
        r = requests.get(base + path, headers={**(headers or {}), "Range": "bytes=0-3"},
                         allow_redirects=False)
        statuses.append(r.status_code)
    return statuses


@pytest.mark.parametrize("storage", ["filesystem", "s3", pytest.param("s3-rgw",
                                                                      marks=pytest.mark.rgw)])
def test_reads_leave_storage_as_it_was(make_berth: MakeBerth, repo: str,
                                       request: pytest.FixtureRequest, storage: str) -> None:
    """(The in-memory driver runs the same registry code; its storage cannot be seen from
    outside the server process.)"""
    s3 = None if storage == "filesystem" else request.getfixturevalue(
        "moto_s3" if storage == "s3" else "rgw_s3")
    server = make_berth(s3_config(s3) if s3 else None)
    digests = publish(server.url, repo)
    before = snapshot(server, s3)
    statuses = read_everything(server.url, repo, digests)
    assert 200 in statuses and 404 in statuses
    after = snapshot(server, s3)
    assert sorted(after) == sorted(before)
    assert after == before


def test_reads_under_access_control_write_nothing(make_berth: MakeBerth, repo: str,
                                                  tmp_path: Path) -> None:
    """Anonymous callers (refused) and signed-in ones (answered) alike."""
    server = make_berth({"auth": {
        "htpasswd": {"path": str(write_htpasswd(tmp_path / "htpasswd", USERS)),
                     "realm": "berth-test"},
        "policy": str(write_policy(tmp_path / "policy.yml", POLICY)),
    }})
    alice = basic("alice", USERS["alice"])
    digests = publish(server.url, repo, alice)
    public = publish(server.url, "public/app", alice)
    before = snapshot(server, None)
    assert 401 in read_everything(server.url, repo, digests)
    assert 200 in read_everything(server.url, "public/app", public)
    assert 200 in read_everything(server.url, repo, digests, alice)
    assert 200 in read_everything(server.url, repo, digests, basic("bob", USERS["bob"]))
    assert snapshot(server, None) == before


@pytest.mark.interop
@pytest.mark.skipif(DistributionServer.binary is None,
                    reason="docker-registry is not installed (CI installs it)")
def test_reads_of_a_root_without_indexes_write_nothing(make_berth: MakeBerth, repo: str,
                                                       tmp_path: Path) -> None:
    """A root the distribution registry wrote has no tag or catalog index: the catalog is
    indexed once when the server starts, a repository's tags when one is next pushed
    there; reads meanwhile list from the content itself."""
    reference = DistributionServer(tmp_path).start()
    try:
        digests = publish(reference.url, repo)
    finally:
        reference.stop()
    root = tmp_path / "distribution-data"
    server = make_berth({"storage": {"filesystem": {"rootdirectory": str(root)}}})
    server.root = root
    deadline = time.monotonic() + 20
    while "catalog index built: 1 repositories" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)
    before = snapshot(server, None)
    read_everything(server.url, repo, digests)
    assert requests.get(f"{server.url}/v2/{repo}/tags/list").json()["tags"] == ["all", "v1"]
    assert requests.get(f"{server.url}/v2/_catalog").json() == {"repositories": [repo]}
    assert snapshot(server, None) == before
    # the next tag pushed indexes the repository's tags, old ones included
    manifest = requests.get(f"{server.url}/v2/{repo}/manifests/v1",
                            headers={"Accept": OCI_MANIFEST}).content
    assert put_manifest(server.url, repo, "v2", manifest).status_code == 201
    index = root / "docker/registry/v2/repositories" / repo / "_tags"
    assert sorted(p.name for p in index.iterdir()) == ["all", "v1", "v2"]
    assert requests.get(f"{server.url}/v2/{repo}/tags/list?n=2").json()["tags"] == ["all", "v1"]
