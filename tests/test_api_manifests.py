"""Manifests of every type in use: push, fetch, validation, tags, delete."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from .conftest import MakeBerth
from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest,
    error_code,
    image,
    push_blob,
    put_manifest,
)
from .servers import BerthServer


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_push_and_pull_image_manifest(berth: BerthServer, repo: str, media_type: str) -> None:
    data = image(berth.url, repo, media_type=media_type)
    r = put_manifest(berth.url, repo, "v1", data, media_type)
    assert r.status_code == 201, r.text
    d = digest(data)
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{d}"
    for ref in ("v1", d):
        g = requests.get(f"{berth.url}/v2/{repo}/manifests/{ref}",
                         headers={"Accept": media_type})
        assert g.status_code == 200
        assert g.content == data  # the exact bytes pushed
        assert g.headers["Content-Type"] == media_type
        assert g.headers["Docker-Content-Digest"] == d
        h = requests.head(f"{berth.url}/v2/{repo}/manifests/{ref}")
        assert h.status_code == 200
        assert h.headers["Content-Length"] == str(len(data))
        assert h.headers["Content-Type"] == media_type
        assert h.headers["Docker-Content-Digest"] == d


def test_exact_bytes_kept(berth: BerthServer, repo: str) -> None:
    doc = json.loads(image(berth.url, repo))
    data = ("  " + json.dumps(doc, indent=7, sort_keys=True) + "\n\n").encode()
    assert put_manifest(berth.url, repo, "spaced", data).status_code == 201
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/spaced")
    assert g.content == data
    assert g.headers["Docker-Content-Digest"] == digest(data)


@pytest.mark.parametrize(("index_type", "child_type"),
                         [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)])
def test_index(berth: BerthServer, repo: str, index_type: str, child_type: str) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        child = image(berth.url, repo, layers=[arch.encode()], config=config,
                      media_type=child_type)
        assert put_manifest(berth.url, repo, digest(child), child, child_type).status_code == 201
        children.append(descriptor(child_type, child,
                                   platform={"architecture": arch, "os": "linux"}))
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type,
                        "manifests": children}).encode()
    r = put_manifest(berth.url, repo, "multi", index, index_type)
    assert r.status_code == 201, r.text
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/multi")
    assert g.content == index
    assert g.headers["Content-Type"] == index_type


def test_index_with_missing_child(berth: BerthServer, repo: str) -> None:
    child = image(berth.url, repo)  # blobs pushed, manifest itself not
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, child)]}).encode()
    r = put_manifest(berth.url, repo, "multi", index, OCI_INDEX)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_missing_layer_and_config(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    doc = json.loads(data)
    doc["layers"].append(descriptor(OCI_LAYER, b"not pushed"))
    r = put_manifest(berth.url, repo, "v1", json.dumps(doc).encode())
    assert r.status_code == 400
    body = r.json()["errors"][0]
    assert body["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert body["detail"]["digest"] == digest(b"not pushed")
    doc = json.loads(data)
    doc["config"] = descriptor(OCI_CONFIG, b"{\"not\": \"pushed\"}")
    r = put_manifest(berth.url, repo, "v1", json.dumps(doc).encode())
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    # nothing became visible
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/v1").status_code == 404


def test_blob_from_another_repository_is_unknown(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo + "-src")
    r = put_manifest(berth.url, repo, "v1", data)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_wrong_layer_size(berth: BerthServer, repo: str) -> None:
    doc = json.loads(image(berth.url, repo))
    doc["layers"][0]["size"] += 1
    r = put_manifest(berth.url, repo, "v1", json.dumps(doc).encode())
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"


@pytest.mark.parametrize(("body", "content_type"), [
    (b"not json", OCI_MANIFEST),
    (b"[]", OCI_MANIFEST),
    (b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}',
     "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    (b'{"schemaVersion": 3, "mediaType": "' + OCI_MANIFEST.encode() + b'"}', OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "layers": []}',
     OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": []}',
     OCI_MANIFEST),
    (b'{"schemaVersion": 2, "mediaType": "application/x-unknown", "config": {}}',
     "application/x-unknown"),
    (b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:1", "size": 1},'
     b' "layers": []}', OCI_MANIFEST),
    (b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:'
     + b"0" * 64 + b'", "size": -1}, "layers": []}', OCI_MANIFEST),
])
def test_invalid_manifests(berth: BerthServer, repo: str, body: bytes, content_type: str) -> None:
    push_blob(berth.url, repo, b"x")
    r = put_manifest(berth.url, repo, "bad", body, content_type)
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"


def test_media_type_must_match_content_type(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)  # mediaType: OCI manifest
    r = put_manifest(berth.url, repo, "v1", data, DOCKER_MANIFEST)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"


def test_media_type_from_content_type_when_absent(berth: BerthServer, repo: str) -> None:
    doc = json.loads(image(berth.url, repo))
    del doc["mediaType"]
    data = json.dumps(doc).encode()
    assert put_manifest(berth.url, repo, "v1", data, OCI_MANIFEST).status_code == 201
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/v1")
    assert g.headers["Content-Type"] == OCI_MANIFEST


def test_put_by_digest_must_match(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    r = put_manifest(berth.url, repo, digest(b"other"), data)
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    r = put_manifest(berth.url, repo, "sha256:zzz", data)
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_put_by_sha512_digest(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    d512 = "sha512:" + hashlib.sha512(data).hexdigest()
    r = put_manifest(berth.url, repo, d512, data)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d512
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/{d512}")
    assert g.content == data


def test_put_by_digest_with_tags(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    r = put_manifest(berth.url, repo, digest(data), data, params=[("tag", "a"), ("tag", "b")])
    assert r.status_code == 201
    tags = requests.get(f"{berth.url}/v2/{repo}/tags/list").json()["tags"]
    assert tags == ["a", "b"]
    for tag in tags:
        assert requests.get(f"{berth.url}/v2/{repo}/manifests/{tag}").content == data
    r = put_manifest(berth.url, repo, digest(data), data, params={"tag": "-bad"})
    assert r.status_code == 400


def test_invalid_tag(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    r = put_manifest(berth.url, repo, "." + "x", data)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_INVALID"
    r = put_manifest(berth.url, repo, "t" * 129, data)
    assert r.status_code == 400


def test_size_limit(make_berth: MakeBerth, repo: str) -> None:
    server = make_berth({"berth": {"manifest_max_bytes": 2048}})
    doc = json.loads(image(server.url, repo))
    doc["annotations"] = {"pad": "x" * 4096}
    r = put_manifest(server.url, repo, "big", json.dumps(doc).encode())
    assert r.status_code == 413
    assert error_code(r) == "SIZE_INVALID"


def test_tag_moves(berth: BerthServer, repo: str) -> None:
    first = image(berth.url, repo, layers=[b"one"])
    second = image(berth.url, repo, layers=[b"two"])
    assert put_manifest(berth.url, repo, "latest", first).status_code == 201
    assert put_manifest(berth.url, repo, "latest", second).status_code == 201
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/latest")
    assert g.content == second
    # the old manifest stays reachable by digest
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/{digest(first)}").content == first


def test_unknown_manifest_and_repository(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    put_manifest(berth.url, repo, "v1", data)
    for ref in ("nope", digest(b"nope")):
        r = requests.get(f"{berth.url}/v2/{repo}/manifests/{ref}")
        assert r.status_code == 404
        assert error_code(r) == "MANIFEST_UNKNOWN"
        assert requests.head(f"{berth.url}/v2/{repo}/manifests/{ref}").status_code == 404
    r = requests.get(f"{berth.url}/v2/{repo}-never/manifests/v1")
    assert r.status_code == 404
    assert error_code(r) == "NAME_UNKNOWN"
    r = requests.get(f"{berth.url}/v2/{repo}/manifests/sha256:short")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_delete_tag_keeps_manifest(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    put_manifest(berth.url, repo, "v1", data)
    put_manifest(berth.url, repo, "v2", data)
    r = requests.delete(f"{berth.url}/v2/{repo}/manifests/v1")
    assert r.status_code == 202
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/v1").status_code == 404
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/v2").content == data
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/{digest(data)}").content == data
    assert requests.get(f"{berth.url}/v2/{repo}/tags/list").json()["tags"] == ["v2"]
    assert requests.delete(f"{berth.url}/v2/{repo}/manifests/v1").status_code == 404


def test_delete_manifest_removes_its_tags(berth: BerthServer, repo: str) -> None:
    data = image(berth.url, repo)
    other = image(berth.url, repo, layers=[b"other"])
    put_manifest(berth.url, repo, "v1", data)
    put_manifest(berth.url, repo, "keep", other)
    r = requests.delete(f"{berth.url}/v2/{repo}/manifests/{digest(data)}")
    assert r.status_code == 202
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/{digest(data)}").status_code == 404
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/v1").status_code == 404
    assert requests.get(f"{berth.url}/v2/{repo}/tags/list").json()["tags"] == ["keep"]
    r = requests.delete(f"{berth.url}/v2/{repo}/manifests/{digest(data)}")
    assert r.status_code == 404
    assert error_code(r) == "MANIFEST_UNKNOWN"


def test_artifact_with_empty_config(berth: BerthServer, repo: str) -> None:
    layer = b"signature bytes"
    push_blob(berth.url, repo, layer)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "artifactType": "application/vnd.example.sig", "config": EMPTY,
           "layers": [descriptor("application/octet-stream", layer)]}
    data = json.dumps(doc).encode()
    r = put_manifest(berth.url, repo, "art", data)
    assert r.status_code == 201, r.text
    # the empty config is served even though the client never uploaded it
    g = requests.get(f"{berth.url}/v2/{repo}/blobs/{EMPTY['digest']}")
    assert g.content == b"{}"


def test_concurrent_pushes_of_one_tag(berth: BerthServer, repo: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    manifests = [image(berth.url, repo, layers=[f"l{i}".encode()]) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda m: put_manifest(berth.url, repo, "race", m).status_code,
                              manifests))
    assert codes == [201] * 6
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/race")
    assert g.content in manifests
    assert g.headers["Docker-Content-Digest"] == digest(g.content)


def _nested(depth: int, inner: str = '"x"') -> str:
    return '{"a":' * depth + inner + "}" * depth


@pytest.mark.parametrize("case", ["brackets", "annotations", "index-manifests"])
def test_deeply_nested_json_is_invalid(berth: BerthServer, repo: str, case: str) -> None:
    """Issue 9, item 1: a RecursionError escaped manifest parsing as 500 UNKNOWN."""
    if case == "brackets":
        body = b"[" * 100_000 + b"]" * 100_000
    elif case == "annotations":  # a 10 KB manifest nesting 3,000 levels
        text = json.dumps(json.loads(image(berth.url, repo)))
        body = (text[:-1] + ', "annotations": ' + _nested(3000) + "}").encode()
    else:
        nested = "[" * 3000 + "]" * 3000
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
                          ).replace("[]", f"[{nested}]").encode()
    r = put_manifest(berth.url, repo, "deep", body)
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert requests.get(f"{berth.url}/v2/{repo}/manifests/deep").status_code == 404


def _large_manifest(layers: list[dict[str, object]], count: int, config: bytes) -> bytes:
    """An image manifest of `count` layers cycling over `layers` (hundreds of KB: examined
    in the registry's worker process, not on its event loop)."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [layers[i % len(layers)] for i in range(count)],
    }).encode()


def test_large_manifest_with_repeated_layers(berth: BerthServer, repo: str) -> None:
    """Issue 9, item 2: 25,000 descriptors were checked one storage lookup each, on the
    event loop. Each distinct digest is looked up once now; what a large manifest gets
    wrong is reported as for a small one (the worker's errors arrive whole)."""
    blobs = [f"{repo}-layer-{i}".encode() for i in range(20)]
    config = b'{"architecture": "amd64", "os": "linux"}'
    for blob in [config, *blobs]:
        push_blob(berth.url, repo, blob)
    layers: list[dict[str, object]] = [descriptor(OCI_LAYER, b) for b in blobs]
    data = _large_manifest(layers, 5000, config)
    assert len(data) > 500_000
    r = put_manifest(berth.url, repo, "big", data)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest(data)
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/big")
    assert g.content == data and g.headers["Content-Type"] == OCI_MANIFEST

    wrong = [*layers[:-1], {**layers[-1], "size": 1}]  # one digest, two sizes
    r = put_manifest(berth.url, repo, "wrong-size", _large_manifest(wrong + layers, 5000,
                                                                    config))
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", r.text
    assert r.json()["errors"][0]["detail"] == {
        "digest": layers[-1]["digest"], "size": 1, "actual": len(blobs[-1])}

    missing = [*layers, descriptor(OCI_LAYER, b"never pushed")]
    r = put_manifest(berth.url, repo, "missing", _large_manifest(missing, 5000, config))
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN", r.text

    foreign = [*layers, descriptor("application/vnd.oci.image.layer.nondistributable.v1.tar",
                                   b"base", urls=["ftp://example.com/base"])]
    r = put_manifest(berth.url, repo, "ftp", _large_manifest(foreign, 5000, config))
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID", r.text
    assert r.json()["errors"][0]["detail"]["url"] == "ftp://example.com/base"
    for tag in ("wrong-size", "missing", "ftp"):
        assert requests.head(f"{berth.url}/v2/{repo}/manifests/{tag}").status_code == 404


def test_large_manifest_served_after_restart(make_berth: MakeBerth, repo: str) -> None:
    """A large manifest read back by a process that has not seen it (its info is worked
    out in the worker process too)."""
    server = make_berth()
    config = b'{"architecture": "arm64", "os": "linux"}'
    blob = b"one layer, many times"
    for data in (config, blob):
        push_blob(server.url, repo, data)
    manifest = _large_manifest([descriptor(OCI_LAYER, blob)], 4000, config)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, manifest, platform={"architecture": "arm64", "os": "linux"})
        for _ in range(300)]}).encode()
    assert put_manifest(server.url, repo, "image", manifest).status_code == 201
    r = put_manifest(server.url, repo, "index", index, OCI_INDEX)
    assert r.status_code == 201, r.text
    server.restart()
    for tag, data, media_type in (("image", manifest, OCI_MANIFEST),
                                  ("index", index, OCI_INDEX)):
        h = requests.head(f"{server.url}/v2/{repo}/manifests/{tag}")
        assert h.status_code == 200
        assert h.headers["Content-Type"] == media_type
        assert h.headers["Content-Length"] == str(len(data))
        assert requests.get(f"{server.url}/v2/{repo}/manifests/{tag}").content == data
