"""The shared OCI primitives: digests, references, descriptors, manifest parsing."""

from __future__ import annotations

import json

import pytest

from client.oci import mediatypes as mt
from client.oci.digest import Digest, DigestError
from client.oci.manifest import ManifestError, parse_manifest
from client.oci.reference import InvalidReferenceError, Reference, is_valid_name, is_valid_tag

HEX = "a" * 64


def test_digest_parse_and_format() -> None:
    d = Digest.parse(f"sha256:{HEX}")
    assert (d.algorithm, d.hex, str(d)) == ("sha256", HEX, f"sha256:{HEX}")
    assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"
    assert Digest.from_bytes(b"{}") == Digest.parse(mt.EMPTY_JSON_DIGEST)


@pytest.mark.parametrize("bad", ["", "sha256", f"sha256:{HEX[:-1]}", f"SHA256:{HEX}",
                                 f"sha256:{HEX.upper()}", f"md5:{'a' * 32}", f"sha384:{HEX}",
                                 "sha512:" + "b" * 64, f":{HEX}", f"sha256:{HEX}\n"])
def test_digest_invalid(bad: str) -> None:
    with pytest.raises(DigestError):
        Digest.parse(bad)


@pytest.mark.parametrize(("name", "ok"), [
    ("a", True), ("a/b/c", True), ("a.b-c__d", True), ("a---b", True), ("0/1", True),
    ("A", False), ("a/", False), ("/a", False), ("a//b", False), ("a..b", False),
    ("a___b", False), ("-a", False), ("a_", False), ("..", False), ("a" * 256, False),
])
def test_names(name: str, ok: bool) -> None:
    assert is_valid_name(name) is ok


def test_tags() -> None:
    assert is_valid_tag("latest") and is_valid_tag("_x") and is_valid_tag("A" * 128)
    assert not is_valid_tag("A" * 129) and not is_valid_tag(".x") and not is_valid_tag("-x")


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("user/app:1.0", "docker.io", "user/app", "1.0", None),
    ("localhost:5000/a/b", "localhost:5000", "a/b", "latest", None),
    ("127.0.0.1:5000/a:t", "127.0.0.1:5000", "a", "t", None),
    (f"mcr.microsoft.com/windows/servercore@sha256:{HEX}", "mcr.microsoft.com",
     "windows/servercore", None, f"sha256:{HEX}"),
    (f"reg.io/x:tag@sha256:{HEX}", "reg.io", "x", "tag", f"sha256:{HEX}"),
])
def test_references(text: str, registry: str, repository: str, tag: str | None,
                    digest: str | None) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest


@pytest.mark.parametrize("bad", ["", "UPPER/case", "reg.io/x:-bad", "x@sha256:short", "a//b"])
def test_bad_references(bad: str) -> None:
    with pytest.raises(InvalidReferenceError):
        Reference.parse(bad)


def _doc(**fields: object) -> bytes:
    return json.dumps({"schemaVersion": 2, **fields}).encode()


CONFIG = {"mediaType": mt.OCI_CONFIG, "digest": f"sha256:{HEX}", "size": 10}


def test_parse_shapes() -> None:
    m = parse_manifest(_doc(config=CONFIG, layers=[]), mt.OCI_MANIFEST)
    assert m.media_type == mt.OCI_MANIFEST and not m.is_index
    assert m.effective_artifact_type() == mt.OCI_CONFIG
    i = parse_manifest(_doc(manifests=[]), None)
    assert i.media_type == mt.OCI_INDEX and i.is_index
    d = parse_manifest(_doc(mediaType=mt.DOCKER_MANIFEST, config=CONFIG, layers=[]),
                       "application/json")
    assert d.media_type == mt.DOCKER_MANIFEST


def test_foreign_classification() -> None:
    assert mt.is_foreign(mt.DOCKER_FOREIGN_LAYER)
    assert mt.is_foreign(mt.OCI_NONDISTRIBUTABLE_ZSTD)
    assert not mt.is_foreign(mt.OCI_LAYER_GZIP)


@pytest.mark.parametrize(("data", "content_type"), [
    (_doc(mediaType=mt.OCI_INDEX, manifests=[], config=CONFIG), None),
    (_doc(mediaType=mt.OCI_MANIFEST, manifests=[], config=CONFIG), None),
    (_doc(config=CONFIG, layers={}), mt.OCI_MANIFEST),
    (_doc(config=CONFIG, layers=[], annotations={"a": 1}), mt.OCI_MANIFEST),
    (_doc(config={**CONFIG, "urls": "http://x"}, layers=[]), mt.OCI_MANIFEST),
    (_doc(config=CONFIG, layers=[], subject={"digest": "x"}), mt.OCI_MANIFEST),
    (json.dumps({"schemaVersion": True, "config": CONFIG}).encode(), mt.OCI_MANIFEST),
    (_doc(mediaType=mt.DOCKER_MANIFEST, config=CONFIG), mt.DOCKER_MANIFEST),
    (b"\xff\xfe", mt.OCI_MANIFEST),
])
def test_parse_rejects(data: bytes, content_type: str | None) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(data, content_type)
