"""The OCI distribution-spec conformance checks, re-created against Berth.

Each test follows a flow of the official suite (`conformance/0x_*_test.go` of v1.1.0 and
`conformance2/` on main) or a MUST/SHOULD of `spec.md` (v1.1.0, and main where it adds the
`?tag=` query parameter) that the other test files do not already pin down. The spec
sentence a test checks is quoted in its docstring. A failing test here is a deviation
from the spec: the assertion states what the spec requires, not what Berth does.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest,
    push_blob,
    put_manifest,
)
from .servers import BerthServer

OCTET = {"Content-Type": "application/octet-stream"}
ACCEPT = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DESC = descriptor(OCI_EMPTY, EMPTY_JSON)
TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
TYPE_INDEX = "application/vnd.food.stand"
ANNOTATION = "org.opencontainers.conformance.test"
DUMMY_DIGEST = digest(b"hello world")

# spec.md, Error Codes: "The `code` field MUST be one of the following" (the 14 below);
# "Legacy Docker support error codes" lets clients also meet the two schema 1 codes.
SPEC_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
})
LEGACY_CODES = frozenset({"TAG_INVALID", "MANIFEST_UNVERIFIED"})


# -- helpers --------------------------------------------------------------------------


def absolute(base: str, location: str) -> str:
    """A Location may be absolute or relative (spec.md, POST then PUT)."""
    assert location, "missing Location header"
    return urljoin(base + "/", location)


def start_session(base: str, repo: str) -> str:
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    return absolute(base, r.headers["Location"])


def doc_bytes(doc: dict[str, Any]) -> bytes:
    """Serialised like the suite (Go's json.MarshalIndent with tabs)."""
    return json.dumps(doc, indent="\t").encode()


def oci_image(config: dict[str, Any], layers: list[dict[str, Any]], **fields: Any) -> bytes:
    return doc_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                      "layers": layers, **fields})


def oci_index(manifests: list[dict[str, Any]], **fields: Any) -> bytes:
    return doc_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
                      **fields})


def b64(data: bytes) -> str:
    """A descriptor's `data` field: the base64 of the content it describes."""
    return base64.b64encode(data).decode()


def config_blob(seed: str) -> bytes:
    return doc_bytes({"architecture": "amd64", "os": "linux", "author": seed,
                      "rootfs": {"type": "layers", "diff_ids": []}})


def assert_pullable(base: str, repo: str, location: str, data: bytes, ref: str) -> None:
    """conformance2 ManifestPut/ManifestGetExists/ManifestHeadExists: the Location of a
    pushed manifest answers with the exact bytes, their media type and their length."""
    media_type = json.loads(data).get("mediaType", OCI_MANIFEST)
    g = requests.get(absolute(base, location), headers=ACCEPT)
    assert g.status_code == 200
    assert g.content == data
    assert g.headers["Content-Type"] == media_type
    assert g.headers["Content-Length"] == str(len(data))
    h = requests.head(f"{base}/v2/{repo}/manifests/{ref}", headers=ACCEPT)
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Type"] == media_type
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == digest(data)


def push_manifest(base: str, repo: str, ref: str, data: bytes) -> requests.Response:
    """PUT like the suite (Content-Type from the document's mediaType) and check the 201."""
    media_type = json.loads(data).get("mediaType", OCI_MANIFEST)
    r = put_manifest(base, repo, ref, data, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["Location"]
    assert r.headers["Docker-Content-Digest"] == digest(data)
    return r


def codes_of(r: requests.Response) -> list[str]:
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), body
    return [str(e["code"]) for e in body["errors"]]


# -- Pull (conformance/01_pull_test.go) -----------------------------------------------


def test_pull_workflow(berth: BerthServer, repo: str) -> None:
    """01_pull: blobs and manifests (descriptors carrying `data` and an unknown field, as
    the suite's test manifests do) pulled by digest and tag; "If the blob or manifest is
    not found in the repository, the response code MUST be `404 Not Found`"."""
    base = berth.url
    config = config_blob("pull")
    layer = b"pull layer " * 100
    for blob in (config, layer):
        loc = start_session(base, repo)
        r = requests.put(loc, params={"digest": digest(blob)}, data=blob, headers=OCTET)
        assert r.status_code == 201
    cfg = {**descriptor(OCI_CONFIG, config), "data": b64(config),
           "newUnspecifiedField": b64(b"hello world")}
    manifests = [oci_image(cfg, [descriptor(OCI_LAYER, layer)], annotations={"n": str(i)})
                 for i in range(2)]
    push_manifest(base, repo, "tagtest0", manifests[0])
    push_manifest(base, repo, digest(manifests[1]), manifests[1])

    for ref, data in [(digest(manifests[0]), manifests[0]), (digest(manifests[1]), manifests[1]),
                      ("tagtest0", manifests[0])]:
        assert_pullable(base, repo, f"/v2/{repo}/manifests/{ref}", data, ref)
    h = requests.head(f"{base}/v2/{repo}/blobs/{digest(config)}")
    assert h.status_code == 200
    assert h.headers["Docker-Content-Digest"] == digest(config)
    assert requests.get(f"{base}/v2/{repo}/blobs/{digest(config)}").content == config

    for method in ("HEAD", "GET"):
        r = requests.request(method, f"{base}/v2/{repo}/blobs/{DUMMY_DIGEST}")
        assert r.status_code == 404
        r = requests.request(method, f"{base}/v2/{repo}/manifests/.INVALID_MANIFEST_NAME")
        assert r.status_code == 404
        # a manifest is readable in the repository it was pushed to, not in another one
        r = requests.request(method, f"{base}/v2/{repo}-other/manifests/{digest(manifests[0])}")
        assert r.status_code == 404


@pytest.fixture(scope="module")
def seeded(berth: BerthServer) -> tuple[str, str]:
    """A repository holding one blob and one tag, for the error-body checks."""
    repo = "conformance/errors"
    d = push_blob(berth.url, repo, b"0123456789")
    config = config_blob("errors")
    push_blob(berth.url, repo, config)
    data = oci_image(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, b"0123456789")])
    push_manifest(berth.url, repo, "v1", data)
    return repo, d


ERROR_CASES: dict[str, tuple[str, str, dict[str, str]]] = {
    # (method, path, headers); {repo} and {blob} are filled in
    "bad-digest-reference": ("GET", "/v2/{repo}/manifests/sha256:totallywrong", {}),
    "unknown-blob": ("GET", f"/v2/{{repo}}/blobs/{DUMMY_DIGEST}", {}),
    "unknown-manifest": ("GET", "/v2/{repo}/manifests/nope", {}),
    "unknown-repository": ("GET", "/v2/{repo}/never/tags/list", {}),
    "invalid-name": ("GET", "/v2/Not-Valid/tags/list", {}),
    "unknown-upload": ("GET", "/v2/{repo}/blobs/uploads/" + "0" * 32, {}),
    "method-not-allowed": ("POST", "/v2/{repo}/tags/list", {}),
    "unknown-endpoint": ("GET", "/v2/{repo}/no-such-endpoint", {}),
    "blob-range-not-satisfiable": ("GET", "/v2/{repo}/blobs/{blob}", {"Range": "bytes=100-"}),
    "bad-pagination-number": ("GET", "/v2/{repo}/tags/list?n=-1", {}),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_bodies_use_spec_codes(berth: BerthServer, seeded: tuple[str, str],
                                     case: str) -> None:
    """01_pull "400 response body should contain OCI-conforming JSON message", applied to
    every 4xx Berth produces. Error Codes: "If the response body is in JSON format, it MUST
    have the following format ... The `code` field MUST be a unique identifier, containing
    only uppercase alphabetic characters and underscores ... The `code` field MUST be one of
    the following" (BLOB_UNKNOWN ... TOOMANYREQUESTS)."""
    repo, blob = seeded
    method, path, headers = ERROR_CASES[case]
    r = requests.request(method, berth.url + path.format(repo=repo, blob=blob), headers=headers)
    assert 400 <= r.status_code < 500, r.status_code
    if "json" not in r.headers.get("Content-Type", ""):
        return  # "A `4XX` response code from the registry MAY return a body in any format"
    for code in codes_of(r):
        assert re.fullmatch(r"[A-Z_]+", code), code
        assert code in SPEC_CODES | LEGACY_CODES, f"{code} is not a distribution-spec error code"


# -- Push: blobs (conformance/02_push_test.go, conformance2 blob APIs) ----------------


def test_chunked_upload_sequence(berth: BerthServer, repo: str) -> None:
    """02_push "Blob Upload Chunked", step by step: an out-of-order first chunk is 416;
    "Each successful chunk upload MUST have a `202 Accepted` response code, and MUST have
    the following headers: Location, Range: 0-<end-of-range>"; a retried chunk is 416;
    "The response to an active upload `<location>` MUST be a `204 No Content` response code,
    and MUST have the following headers: Location, Range"; the session is closed by a PUT
    with the digest and no body."""
    base = berth.url
    blob = bytes(range(42))
    chunk1, chunk2 = blob[:22], blob[22:]
    range1, range2 = "0-21", f"22-{len(blob) - 1}"

    loc = start_session(base, repo)
    r = requests.patch(loc, data=chunk2, headers={**OCTET, "Content-Range": range2})
    assert r.status_code == 416

    first = start_session(base, repo)
    r = requests.patch(first, data=chunk1, headers={**OCTET, "Content-Range": range1})
    assert r.status_code == 202
    assert r.headers["Range"] == range1
    assert r.headers["Location"]
    r = requests.patch(first, data=chunk1, headers={**OCTET, "Content-Range": range1})
    assert r.status_code == 416
    r = requests.get(first)
    assert r.status_code == 204
    assert r.headers["Range"] == range1
    r = requests.patch(absolute(base, r.headers["Location"]), data=chunk2,
                       headers={**OCTET, "Content-Range": range2})
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(blob) - 1}"
    r = requests.put(absolute(base, r.headers["Location"]), params={"digest": digest(blob)},
                     headers={**OCTET, "Content-Length": "0"})
    assert r.status_code == 201
    g = requests.get(absolute(base, r.headers["Location"]))
    assert g.status_code == 200
    assert g.content == blob


def test_out_of_order_final_chunk_in_put_is_416(berth: BerthServer, repo: str) -> None:
    """conformance2 "chunked out-of-order and put chunk": "If a chunk is uploaded out of
    order, the registry MUST respond with a `416 Requested Range Not Satisfiable` code" —
    also when that chunk is the final one, sent with the closing PUT."""
    base = berth.url
    blob = bytes(range(256)) * 4
    a, b = blob[:400], blob[400:]
    loc = start_session(base, repo)
    r = requests.patch(loc, data=a, headers={**OCTET, "Content-Range": f"0-{len(a) - 1}"})
    assert r.status_code == 202
    loc = absolute(base, r.headers["Location"])
    for bad_start, body in [(len(a) + 10, b[10:]), (0, blob)]:
        r = requests.put(loc, params={"digest": digest(blob)}, data=body,
                         headers={**OCTET, "Content-Range": f"{bad_start}-{len(blob) - 1}"})
        assert r.status_code == 416
    r = requests.get(loc)
    assert r.status_code == 204
    assert r.headers["Range"] == f"0-{len(a) - 1}"
    r = requests.put(absolute(base, r.headers["Location"]), params={"digest": digest(blob)},
                     data=b, headers={**OCTET, "Content-Range": f"{len(a)}-{len(blob) - 1}"})
    assert r.status_code == 201
    assert requests.get(f"{base}/v2/{repo}/blobs/{digest(blob)}").content == blob


def _push_post_only(base: str, repo: str, d: str, data: bytes) -> requests.Response:
    return requests.post(f"{base}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data,
                         headers=OCTET)


def _push_post_put(base: str, repo: str, d: str, data: bytes) -> requests.Response:
    return requests.put(start_session(base, repo), params={"digest": d}, data=data, headers=OCTET)


def _push_chunked(base: str, repo: str, d: str, data: bytes, put_last: bool) -> requests.Response:
    loc = start_session(base, repo)
    size = len(data) // 3 + 1
    starts = list(range(0, len(data), size))
    for start in starts[:-1] if put_last else starts:
        chunk = data[start:start + size]
        r = requests.patch(loc, data=chunk, headers={
            **OCTET, "Content-Range": f"{start}-{start + len(chunk) - 1}"})
        assert r.status_code == 202, r.text
        loc = absolute(base, r.headers["Location"])
    if not put_last:
        return requests.put(loc, params={"digest": d}, headers={**OCTET, "Content-Length": "0"})
    last = data[starts[-1]:]
    return requests.put(loc, params={"digest": d}, data=last, headers={
        **OCTET, "Content-Range": f"{starts[-1]}-{len(data) - 1}"})


def _push_stream(base: str, repo: str, d: str, data: bytes) -> requests.Response:
    def body() -> Iterator[bytes]:
        yield data[:100]
        yield data[100:]

    r = requests.patch(start_session(base, repo), data=body(), headers=OCTET)
    assert r.status_code == 202
    return requests.put(absolute(base, r.headers["Location"]), params={"digest": d},
                        headers={**OCTET, "Content-Length": "0"})


@pytest.mark.parametrize("method", ["post only", "post+put", "chunked", "chunked and put chunk",
                                    "stream"])
def test_bad_digest_rejected_by_every_push_method(berth: BerthServer, repo: str,
                                                  method: str) -> None:
    """conformance2 "bad digest ...": a blob whose bytes do not match `?digest=` is a 400,
    whichever way it was sent ("the `<digest>` MUST match the blob's digest"), and neither
    digest becomes pullable."""
    base = berth.url
    good = bytes(range(256)) * 3
    claimed, sent = digest(good), good + b"oh no"
    pushers: dict[str, Callable[[], requests.Response]] = {
        "post only": lambda: _push_post_only(base, repo, claimed, sent),
        "post+put": lambda: _push_post_put(base, repo, claimed, sent),
        "chunked": lambda: _push_chunked(base, repo, claimed, sent, put_last=False),
        "chunked and put chunk": lambda: _push_chunked(base, repo, claimed, sent, put_last=True),
        "stream": lambda: _push_stream(base, repo, claimed, sent),
    }
    r = pushers[method]()
    assert r.status_code == 400, r.text
    assert codes_of(r) == ["DIGEST_INVALID"]
    for d in (claimed, digest(sent)):
        assert requests.head(f"{base}/v2/{repo}/blobs/{d}").status_code == 404


def test_chunk_body_must_match_its_content_range(berth: BerthServer, repo: str) -> None:
    """"The `<range>` refers to the byte range of the chunk, and MUST be inclusive on both
    ends" and (main) "The `<end-of-range>` value is the position of the last uploaded byte
    of the blob, matching the end value of the `Content-Range` in the request". A chunk sent
    without Content-Length (chunked transfer encoding) whose body is longer than its
    Content-Range must be refused, or at least not recorded past the range it declared."""
    loc = start_session(berth.url, repo)

    def body() -> Iterator[bytes]:
        yield b"abcdef"

    r = requests.patch(loc, data=body(), headers={**OCTET, "Content-Range": "0-1"})
    if r.status_code == 202:
        assert r.headers["Range"] == "0-1", "Range does not match the chunk's Content-Range"
    else:
        assert r.status_code in (400, 416)


def test_cross_mount_fallbacks(berth: BerthServer, repo: str) -> None:
    """02_push "Cross-mounting of a blob without the from argument should yield session id"
    and conformance2 "mount missing": "if a registry ... is unable to mount the requested
    blob, it SHOULD return a `202`. This indicates that the upload session has begun and
    that the client MAY proceed with the upload" — and that session completes the push."""
    base = berth.url
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", params={"mount": DUMMY_DIGEST})
    assert r.status_code == 202
    assert f"/v2/{repo}/blobs/uploads/" in absolute(base, r.headers["Location"])

    blob = b"mount me, from nowhere"
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/",
                      params={"mount": digest(blob), "from": f"{repo}-source"})
    assert r.status_code == 202
    r = requests.put(absolute(base, r.headers["Location"]), params={"digest": digest(blob)},
                     data=blob, headers=OCTET)
    assert r.status_code == 201
    assert requests.get(absolute(base, r.headers["Location"])).content == blob

    # and once the source holds it, the mount is immediate, at the target's blob URL
    target = f"{repo}-target"
    r = requests.post(f"{base}/v2/{target}/blobs/uploads/",
                      params={"mount": digest(blob), "from": repo})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{target}/blobs/{digest(blob)}"
    assert requests.get(absolute(base, r.headers["Location"])).content == blob


# -- Push: manifests ------------------------------------------------------------------


LAYER_TYPES = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
]


def _manifest_variants(base: str, repo: str) -> dict[str, bytes]:
    """The image manifests of 02_push and conformance2's data sets, blobs pushed."""
    config = config_blob("variants")
    layer = b"variant layer"
    ref_a = b"NHL Peanut Butter on my NHL bagel"
    for blob in (config, layer, ref_a, EMPTY_JSON):
        push_blob(base, repo, blob)
    cfg = descriptor(OCI_CONFIG, config)
    layers = [descriptor(OCI_LAYER, layer)]
    variants = {
        "no layers": oci_image(cfg, []),
        "empty JSON layer, data field": oci_image(
            {**cfg, "data": b64(config), "newUnspecifiedField": b64(b"hi")}, [EMPTY_DESC]),
        "config media type as artifact type": oci_image(descriptor(TYPE_A, ref_a), layers),
        "artifactType with empty config": oci_image(
            EMPTY_DESC, [descriptor(TYPE_A, ref_a)], artifactType=TYPE_A),
        "artifactType, config typed as a manifest": oci_image(
            descriptor(OCI_MANIFEST, ref_a), layers, artifactType=TYPE_A),
        "custom layer media type": oci_image(cfg, [descriptor(TYPE_A, ref_a)]),
        "custom fields": oci_image({**cfg, "x-extra": {"k": [1, 2]}}, layers,
                                   **{"x-custom": "field", "annotations": {ANNOTATION: "c"}}),
    }
    for media_type in LAYER_TYPES:
        variants[f"layer {media_type}"] = oci_image(cfg, [descriptor(media_type, layer)])
    return variants


def test_manifest_variants_accepted(berth: BerthServer, repo: str) -> None:
    """02_push "Registry should accept a manifest upload with no layers / custom
    config/mediaType / custom artifactType" and conformance2's data sets: "The registry MUST
    store the manifest in the exact byte representation provided by the client. Upon a
    successful upload, the registry MUST return response code `201 Created`, and MUST have
    the following header: Location"; "The Docker-Content-Digest header ... MUST be equal to
    the client provided digest"."""
    base = berth.url
    for name, data in _manifest_variants(base, repo).items():
        r = put_manifest(base, repo, digest(data), data, OCI_MANIFEST)
        assert r.status_code == 201, (name, r.text)
        assert r.headers["Docker-Content-Digest"] == digest(data), name
        assert_pullable(base, repo, r.headers["Location"], data, digest(data))


def test_index_variants_accepted(berth: BerthServer, repo: str) -> None:
    """02_push "Registry should accept a manifest upload with image index" and "with nested
    image index [OCI-Image v1.1]", conformance2 "artifact-index" and "custom-fields"."""
    base = berth.url
    children = []
    push_blob(base, repo, EMPTY_JSON)
    for arch in ("amd64", "arm64"):
        push_blob(base, repo, arch.encode())
        child = oci_image(EMPTY_DESC, [descriptor(TYPE_A, arch.encode())], artifactType=TYPE_A)
        push_manifest(base, repo, digest(child), child)
        children.append(descriptor(OCI_MANIFEST, child,
                                   platform={"architecture": arch, "os": "linux"}))
    artifact_index = oci_index(children, artifactType=TYPE_INDEX,
                               annotations={ANNOTATION: "test index"})
    r = push_manifest(base, repo, digest(artifact_index), artifact_index)
    assert_pullable(base, repo, r.headers["Location"], artifact_index, digest(artifact_index))
    nested = oci_index([descriptor(OCI_INDEX, artifact_index)],
                       annotations={ANNOTATION: "test index"})
    r = push_manifest(base, repo, "index-of-index", nested)
    assert_pullable(base, repo, r.headers["Location"], nested, "index-of-index")
    custom = doc_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "x-unknown": 7,
                        "manifests": [{**children[0], "x-field": "y"}]})
    r = push_manifest(base, repo, "custom-fields", custom)
    assert_pullable(base, repo, r.headers["Location"], custom, "custom-fields")


def test_manifest_with_bad_digest(berth: BerthServer, repo: str) -> None:
    """conformance2 "bad-digest-image" (bytes changed after the digest was computed) and
    "invalid-digest-format" (`sha256:baddigeststring`): both PUTs are 400; fetching the
    malformed digest is 400 or 404."""
    base = berth.url
    config = config_blob("bad-digest")
    push_blob(base, repo, config)
    data = oci_image(descriptor(OCI_CONFIG, config), [])
    r = put_manifest(base, repo, digest(data), data + b"  ", OCI_MANIFEST)
    assert r.status_code == 400
    r = put_manifest(base, repo, "sha256:baddigeststring", data, OCI_MANIFEST)
    assert r.status_code == 400
    r = requests.get(f"{base}/v2/{repo}/manifests/sha256:baddigeststring", headers=ACCEPT)
    assert r.status_code in (400, 404)
    assert requests.head(f"{base}/v2/{repo}/manifests/{digest(data)}").status_code == 404


def _simple_image(base: str, repo: str, seed: str) -> bytes:
    config = config_blob(seed)
    push_blob(base, repo, config)
    return oci_image(descriptor(OCI_CONFIG, config), [])


def test_push_by_digest_with_tags_answers_oci_tag(berth: BerthServer, repo: str) -> None:
    """spec.md (main), Pushing Manifests: "When pushing a manifest by digest, the registry
    MAY support the pushing of tags specified by addition of `tag` query parameters. If a
    registry supports this, it MUST: ... For each tag that was successfully pushed, include
    an `OCI-Tag` response header". Berth supports `?tag=` (the tags are created)."""
    base = berth.url
    data = _simple_image(base, repo, "oci-tag")
    tags = ["1.2.3", "1.2", "latest"]
    r = put_manifest(base, repo, digest(data), data, params=[("tag", t) for t in tags])
    assert r.status_code == 201
    for tag in tags:  # the feature is there ...
        assert requests.head(f"{base}/v2/{repo}/manifests/{tag}").status_code == 200
    # ... so the header is required; several headers or one comma-separated list (RFC 2616 4.2)
    announced = [t.strip() for t in r.headers.get("OCI-Tag", "").split(",") if t.strip()]
    assert sorted(announced) == sorted(tags), f"OCI-Tag: {r.headers.get('OCI-Tag')!r}"


def test_push_by_digest_does_not_limit_tag_count(berth: BerthServer, repo: str) -> None:
    """spec.md (main): a registry supporting `tag` query parameters "MUST: 1. Not limit the
    number of tags that can be pushed at once." ~420 tags make a request line of ~8.5 KB."""
    base = berth.url
    data = _simple_image(base, repo, "many-tags")
    tags = [f"release-number-{i:04d}" for i in range(420)]
    r = put_manifest(base, repo, digest(data), data, params=[("tag", t) for t in tags])
    assert r.status_code == 201, f"{r.status_code} {r.text[:120]}"
    listed = requests.get(f"{base}/v2/{repo}/tags/list").json()["tags"]
    assert set(tags) <= set(listed)


# -- Referrers (03_discovery "listing references", 02_push "Dangling subject") --------


def test_referrers_conformance_scenario(berth: BerthServer, repo: str) -> None:
    """03_discovery references setup and checks. "When processing a request for an image
    manifest with the `subject` field, a registry implementation that supports the referrers
    API MUST respond with the response header `OCI-Subject: <subject digest>`"; "A registry
    MUST initially accept an otherwise valid manifest with a `subject` field that references
    a manifest that does not exist"; referrers: "The descriptors MUST include an
    `artifactType` field ... If the `artifactType` is empty or missing in the image manifest,
    the value of `artifactType` MUST be set to the config descriptor `mediaType` value ...
    The descriptors MUST include annotations"; "If filtering is requested and applied, the
    response MUST include a header `OCI-Filters-Applied: artifactType`"."""
    base = berth.url
    ref_a, ref_b = b"NHL Peanut Butter on my NHL bagel", b"NBA Strawberry Jam on my NBA croissant"
    layer = b"subject layer"
    for blob in (EMPTY_JSON, ref_a, ref_b, layer):
        push_blob(base, repo, blob)
    subject = _image_with_layer(base, repo, "subject", layer)
    missing = _image_with_layer(base, repo, "never-pushed", layer)  # blobs only
    subj, lost = descriptor(OCI_MANIFEST, subject), descriptor(OCI_MANIFEST, missing)

    def artifact(config: dict[str, Any], layers: list[dict[str, Any]], note: str | None,
                 about: dict[str, Any] = subj, **fields: Any) -> bytes:
        extra = {"annotations": {ANNOTATION: note}} if note else {}
        return oci_image(config, layers, subject=about, **fields, **extra)

    a_config = artifact(descriptor(TYPE_A, ref_a), [EMPTY_DESC], "test config a")
    a_layer = artifact(EMPTY_DESC, [descriptor(TYPE_A, ref_a)], "test layer a",
                       artifactType=TYPE_A)
    index = oci_index([descriptor(OCI_MANIFEST, a_config), descriptor(OCI_MANIFEST, a_layer)],
                      artifactType=TYPE_INDEX, subject=subj,
                      annotations={ANNOTATION: "test index"})
    b_config = artifact(descriptor(TYPE_B, ref_b), [EMPTY_DESC], "test config b")
    b_layer = artifact(EMPTY_DESC, [descriptor(TYPE_B, ref_b)], "test layer b",
                       artifactType=TYPE_B)
    c_layer = artifact(EMPTY_DESC, [descriptor(TYPE_B, ref_b)], None, about=lost,
                       artifactType=TYPE_B)
    # referrers before their subject, the index among them; the subject by tag in between
    for data in (a_config, a_layer, index):
        r = push_manifest(base, repo, digest(data), data)
        assert r.headers.get("OCI-Subject") == digest(subject)
    push_manifest(base, repo, "tagtest0", subject)
    assert "OCI-Subject" not in put_manifest(base, repo, "tagtest0", subject).headers
    for data, about in [(b_config, subject), (b_layer, subject), (c_layer, missing)]:
        r = push_manifest(base, repo, digest(data), data)
        assert r.headers.get("OCI-Subject") == digest(about)

    expected = {
        digest(a_config): (OCI_MANIFEST, a_config, TYPE_A, "test config a"),
        digest(a_layer): (OCI_MANIFEST, a_layer, TYPE_A, "test layer a"),
        digest(index): (OCI_INDEX, index, TYPE_INDEX, "test index"),
        digest(b_config): (OCI_MANIFEST, b_config, TYPE_B, "test config b"),
        digest(b_layer): (OCI_MANIFEST, b_layer, TYPE_B, "test layer b"),
    }
    r = requests.get(f"{base}/v2/{repo}/referrers/{digest(subject)}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    listing = r.json()
    assert (listing["schemaVersion"], listing["mediaType"]) == (2, OCI_INDEX)
    found = {m["digest"]: m for m in listing["manifests"]}
    assert set(found) == set(expected)
    for d, (media_type, data, artifact_type, note) in expected.items():
        entry = found[d]
        assert (entry["mediaType"], entry["size"]) == (media_type, len(data))
        assert entry["artifactType"] == artifact_type
        assert entry["annotations"] == {ANNOTATION: note}

    r = requests.get(f"{base}/v2/{repo}/referrers/{digest(subject)}",
                     params={"artifactType": TYPE_A})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert {m["digest"] for m in r.json()["manifests"]} == {digest(a_config), digest(a_layer)}

    r = requests.get(f"{base}/v2/{repo}/referrers/{digest(missing)}")
    assert [m["digest"] for m in r.json()["manifests"]] == [digest(c_layer)]
    r = requests.get(f"{base}/v2/{repo}/referrers/{DUMMY_DIGEST}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.json()["manifests"] == []


def _image_with_layer(base: str, repo: str, seed: str, layer: bytes) -> bytes:
    config = config_blob(seed)
    push_blob(base, repo, config)
    return oci_image(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])


def test_referrers_artifact_type_rules(berth: BerthServer, repo: str) -> None:
    """"If the `artifactType` is empty or missing in the image manifest, the value of
    `artifactType` MUST be set to the config descriptor `mediaType` value. If the
    `artifactType` is empty or missing in an index, the `artifactType` MUST be omitted."
    Subjects may themselves be indexes (conformance2 "index-with-subject"); a subject digest
    of another algorithm still answers 200 ("MUST NOT return a `404 Not Found`")."""
    base = berth.url
    ref = b"attached"
    push_blob(base, repo, ref)
    push_blob(base, repo, EMPTY_JSON)
    subject_index = oci_index([])
    push_manifest(base, repo, "index", subject_index)
    subj = descriptor(OCI_INDEX, subject_index)
    blank_type = oci_image(descriptor(TYPE_A, ref), [EMPTY_DESC], artifactType="", subject=subj)
    index_blank = oci_index([], artifactType="", subject=subj, annotations={ANNOTATION: "x"})
    for data in (blank_type, index_blank):
        assert push_manifest(base, repo, digest(data), data).headers["OCI-Subject"] == \
            digest(subject_index)
    r = requests.get(f"{base}/v2/{repo}/referrers/{digest(subject_index)}")
    found = {m["digest"]: m for m in r.json()["manifests"]}
    assert found[digest(blank_type)]["artifactType"] == TYPE_A
    assert "artifactType" not in found[digest(index_blank)]
    assert found[digest(index_blank)]["annotations"] == {ANNOTATION: "x"}

    sha512 = "sha512:" + "ab" * 64
    r = requests.get(f"{base}/v2/{repo}/referrers/{sha512}")
    assert r.status_code == 200
    assert r.json()["manifests"] == []


# -- Content management (04_management, conformance2 TestDelete) ----------------------


def test_content_management_workflow(berth: BerthServer, repo: str) -> None:
    """04_management and conformance2's delete order (tags, then manifests newest first,
    then blobs), each checked with a HEAD right after: "Upon success, the registry MUST
    respond with a `202 Accepted` code"; "Once deleted, a `GET` to
    `/v2/<name>/manifests/<digest>` and any tag pointing to that digest will return a 404";
    "If the blob is not found, a `404 Not Found` code MUST be returned"."""
    base = berth.url
    layer = b"managed layer"
    push_blob(base, repo, layer)
    push_blob(base, repo, EMPTY_JSON)
    image = _image_with_layer(base, repo, "managed", layer)
    config_digest = json.loads(image)["config"]["digest"]
    index = oci_index([descriptor(OCI_MANIFEST, image)])
    referrer = oci_image(EMPTY_DESC, [descriptor(TYPE_A, layer)], artifactType=TYPE_A,
                         subject=descriptor(OCI_MANIFEST, image))
    push_manifest(base, repo, "tagtest0", image)
    push_manifest(base, repo, "other", image)
    push_manifest(base, repo, "multi", index)
    push_manifest(base, repo, digest(referrer), referrer)
    tags_before = requests.get(f"{base}/v2/{repo}/tags/list").json()["tags"]

    r = requests.delete(f"{base}/v2/{repo}/manifests/tagtest0")
    assert r.status_code == 202
    assert requests.head(f"{base}/v2/{repo}/manifests/tagtest0").status_code == 404
    assert requests.head(f"{base}/v2/{repo}/manifests/{digest(image)}").status_code == 200
    tags = requests.get(f"{base}/v2/{repo}/tags/list").json()["tags"]
    assert len(tags) < len(tags_before)

    for data in (referrer, index, image):  # newest first
        r = requests.delete(f"{base}/v2/{repo}/manifests/{digest(data)}")
        assert r.status_code == 202
        assert requests.head(f"{base}/v2/{repo}/manifests/{digest(data)}").status_code == 404
        assert requests.get(f"{base}/v2/{repo}/manifests/{digest(data)}").status_code == 404
    for tag in ("other", "multi"):  # the tags pointing at deleted manifests went with them
        assert requests.get(f"{base}/v2/{repo}/manifests/{tag}").status_code == 404
    r = requests.get(f"{base}/v2/{repo}/referrers/{digest(image)}")
    assert r.status_code == 200
    assert r.json()["manifests"] == []
    r = requests.get(f"{base}/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json()["tags"] == []

    for d in (config_digest, digest(layer), digest(EMPTY_JSON)):
        r = requests.delete(f"{base}/v2/{repo}/blobs/{d}")
        assert r.status_code == 202
        assert requests.head(f"{base}/v2/{repo}/blobs/{d}").status_code == 404
        assert requests.get(f"{base}/v2/{repo}/blobs/{d}").status_code == 404
        assert requests.delete(f"{base}/v2/{repo}/blobs/{d}").status_code == 404

    r = requests.delete(f"{base}/v2/{repo}-never/manifests/{digest(image)}")
    assert r.status_code == 404  # "If the repository does not exist ... MUST return 404"


@pytest.fixture(scope="module")
def second_process(berth: BerthServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """A second `berth serve` on the shared server's storage, with deletion disabled: a
    process that has seen none of the pushes (as after a restart)."""
    storage = dict(berth.config.get("storage", {}))
    if "inmemory" in storage:
        pytest.skip("the in-memory driver's storage cannot be shared with a second process")
    if "s3" not in storage:
        storage["filesystem"] = {"rootdirectory": str(berth.root)}
    storage["delete"] = {"enabled": False}
    server = BerthServer(tmp_path_factory.mktemp("second"), {"storage": storage})
    yield server.start()
    server.stop()


def test_delete_disabled_answers_400_or_405(berth: BerthServer, second_process: BerthServer,
                                            repo: str) -> None:
    """"If tag deletion is disabled, the registry MUST respond with either a `400 Bad
    Request` or a `405 Method Not Allowed`" — the same for manifests (blobs are covered in
    test_api_blobs); nothing is deleted."""
    data = _simple_image(berth.url, repo, "keep")
    push_manifest(berth.url, repo, "keep", data)
    for ref in ("keep", digest(data)):
        r = requests.delete(f"{second_process.url}/v2/{repo}/manifests/{ref}")
        assert r.status_code in (400, 405)
        if r.status_code == 400:  # 04_management: a 400 must say UNSUPPORTED
            assert codes_of(r) == ["UNSUPPORTED"]
        assert requests.head(f"{berth.url}/v2/{repo}/manifests/{ref}").status_code == 200


# -- Content-Type stability -----------------------------------------------------------


def test_manifest_content_type_is_what_was_pushed(berth: BerthServer,
                                                  second_process: BerthServer,
                                                  repo: str) -> None:
    """Pulling manifests: "The `Content-Type` header SHOULD match what the client pushed as
    the manifest's `Content-Type`". A Docker schema 2 manifest without a `mediaType` field,
    pushed with its Docker Content-Type, must be served as such by any process serving the
    storage (after a restart, or by a replica) — not only by the one that took the push."""
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"docker layer"
    push_blob(berth.url, repo, config)
    push_blob(berth.url, repo, layer)
    data = json.dumps({"schemaVersion": 2,
                       "config": descriptor(DOCKER_CONFIG, config),
                       "layers": [descriptor(DOCKER_LAYER, layer)]}).encode()
    assert put_manifest(berth.url, repo, "v1", data, DOCKER_MANIFEST).status_code == 201
    for server in (berth, second_process):
        for method in ("HEAD", "GET"):
            r = requests.request(method, f"{server.url}/v2/{repo}/manifests/v1")
            assert r.status_code == 200
            assert r.headers["Content-Type"] == DOCKER_MANIFEST, \
                f"{method} from the {'pushing' if server is berth else 'second'} process"
