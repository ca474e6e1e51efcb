"""Tag lists, the catalog and the referrers API, with pagination."""

from __future__ import annotations

import json

import pytest
import requests

from .conftest import MakeBerth
from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import (
    EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest,
    error_code,
    image,
    push_blob,
    put_manifest,
)
from .servers import BerthServer


def test_tags_lexical_and_paginated(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    tags = ["b", "a", "C", "a1", "_x", "z.9", "a-b", "10", "9"]
    for tag in tags:
        assert put_manifest(berth.url, repo, tag, data).status_code == 201
    expected = sorted(tags)
    r = requests.get(f"{berth.url}/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": expected}
    assert "Link" not in r.headers
    seen: list[str] = []
    url = f"{berth.url}/v2/{repo}/tags/list?n=4"
    while url:
        r = requests.get(url)
        assert r.status_code == 200
        page = r.json()["tags"]
        assert len(page) <= 4
        seen += page
        link = r.headers.get("Link")
        if link is None:
            break
        assert link.endswith('>; rel="next"')
        url = berth.url + link[1 : link.index(">")]
    assert seen == expected
    r = requests.get(f"{berth.url}/v2/{repo}/tags/list", params={"n": 2, "last": "a1"})
    assert r.json()["tags"] == expected[expected.index("a1") + 1 :][:2]
    r = requests.get(f"{berth.url}/v2/{repo}/tags/list", params={"n": 0})
    assert r.json()["tags"] == []
    r = requests.get(f"{berth.url}/v2/{repo}/tags/list", params={"last": "zzz"})
    assert r.json()["tags"] == []


def test_tags_bad_n(berth: BerthServer, repo: str) -> None:
    push_blob(berth.url, repo, b"x")
    for n in ("-1", "abc"):
        r = requests.get(f"{berth.url}/v2/{repo}/tags/list", params={"n": n})
        assert r.status_code == 400
        assert error_code(r) == "UNSUPPORTED"


def test_tags_of_unknown_and_untagged_repositories(berth: BerthServer, repo: str) -> None:
    r = requests.get(f"{berth.url}/v2/{repo}/tags/list")
    assert r.status_code == 404
    assert error_code(r) == "NAME_UNKNOWN"
    push_blob(berth.url, repo, b"blob only")
    r = requests.get(f"{berth.url}/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": []}


def test_catalog(make_berth: MakeBerth) -> None:
    server = make_berth()
    names = ["b/x", "a", "a/b/c", "a-b", "c", "a.b"]
    for name in names:
        push_blob(server.url, name, b"x")
    # an upload session alone does not make a repository
    requests.post(f"{server.url}/v2/only-upload/blobs/uploads/")
    r = requests.get(f"{server.url}/v2/_catalog")
    assert r.json() == {"repositories": sorted(names)}
    r = requests.get(f"{server.url}/v2/_catalog", params={"n": 2})
    assert r.json()["repositories"] == sorted(names)[:2]
    assert r.headers["Link"] == f'</v2/_catalog?n=2&last={sorted(names)[1]}>; rel="next"'
    r = requests.get(f"{server.url}/v2/_catalog", params={"n": 10, "last": "a/b/c"})
    assert r.json()["repositories"] == [n for n in sorted(names) if n > "a/b/c"]
    assert "Link" not in r.headers


def _referrer(base: str, repo: str, subject: bytes, artifact_type: str,
              annotations: dict[str, str]) -> bytes:
    layer = artifact_type.encode() + b" payload"
    push_blob(base, repo, layer)
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": EMPTY, "layers": [descriptor("application/octet-stream", layer)],
        "subject": descriptor(OCI_MANIFEST, subject), "annotations": annotations,
    }).encode()


def test_referrers(berth: BerthServer, repo: str) -> None:
    subject = image(berth.url, repo)
    sig = _referrer(berth.url, repo, subject, "application/vnd.example.sig", {"k": "v"})
    sbom = _referrer(berth.url, repo, subject, "application/vnd.example.sbom", {})
    # referrers may be pushed before their subject exists
    for data in (sig, sbom):
        r = put_manifest(berth.url, repo, digest(data), data)
        assert r.status_code == 201, r.text
        assert r.headers["OCI-Subject"] == digest(subject)
    assert put_manifest(berth.url, repo, "v1", subject).status_code == 201
    r = requests.get(f"{berth.url}/v2/{repo}/referrers/{digest(subject)}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert by_digest == {
        digest(sig): {"mediaType": OCI_MANIFEST, "digest": digest(sig), "size": len(sig),
                      "artifactType": "application/vnd.example.sig", "annotations": {"k": "v"}},
        digest(sbom): {"mediaType": OCI_MANIFEST, "digest": digest(sbom), "size": len(sbom),
                       "artifactType": "application/vnd.example.sbom"},
    }
    assert "OCI-Filters-Applied" not in r.headers
    r = requests.get(f"{berth.url}/v2/{repo}/referrers/{digest(subject)}",
                     params={"artifactType": "application/vnd.example.sbom"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [digest(sbom)]
    # deleting a referrer removes it from the listing
    assert requests.delete(f"{berth.url}/v2/{repo}/manifests/{digest(sig)}").status_code == 202
    r = requests.get(f"{berth.url}/v2/{repo}/referrers/{digest(subject)}")
    assert [m["digest"] for m in r.json()["manifests"]] == [digest(sbom)]


def test_referrers_of_image_without_artifact_type(berth: BerthServer, repo: str) -> None:
    subject = image(berth.url, repo)
    doc = json.loads(image(berth.url, repo, layers=[b"attached"]))
    doc["subject"] = descriptor(OCI_MANIFEST, subject)
    data = json.dumps(doc).encode()
    assert put_manifest(berth.url, repo, digest(data), data).status_code == 201
    r = requests.get(f"{berth.url}/v2/{repo}/referrers/{digest(subject)}")
    (entry,) = r.json()["manifests"]
    assert entry["artifactType"] == "application/vnd.oci.image.config.v1+json"


@pytest.mark.parametrize("known_repo", [True, False])
def test_referrers_unknown_subject(berth: BerthServer, repo: str, known_repo: bool) -> None:
    if known_repo:
        push_blob(berth.url, repo, b"x")
    r = requests.get(f"{berth.url}/v2/{repo}/referrers/{digest(b'nothing')}")
    assert r.status_code == 200
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_referrers_invalid_digest(berth: BerthServer, repo: str) -> None:
    r = requests.get(f"{berth.url}/v2/{repo}/referrers/sha256:nope")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_catalog_pages_on_every_driver(berth: BerthServer, repo: str) -> None:
    """Names that are prefixes of others ('x', 'x-b', 'x.b', 'x/b') page in lexical order
    whatever the storage (the index keys keep that order on S3 too)."""
    names = [repo, f"{repo}-b", f"{repo}.b", f"{repo}/b", f"{repo}/b/c"]
    for name in names:
        push_blob(berth.url, name, b"catalog page " + name.encode())
    whole = requests.get(f"{berth.url}/v2/_catalog").json()["repositories"]
    assert whole == sorted(whole)
    assert [n for n in whole if n.startswith(repo)] == sorted(names)
    walked: list[str] = []
    url: str | None = f"{berth.url}/v2/_catalog?n=3"
    while url:
        r = requests.get(url)
        page = r.json()["repositories"]
        assert len(page) <= 3
        walked += page
        link = r.headers.get("Link")
        url = berth.url + link.split(";")[0].strip("<>") if link else None
    assert walked == whole
