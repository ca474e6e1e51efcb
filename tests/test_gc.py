"""Garbage collection through `berth gc`, run while the registry serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from .conftest import MakeBerth
from .helpers import (
    EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest,
    image,
    push_blob,
    put_manifest,
)
from .servers import ROOT, BerthServer


def gc(server: BerthServer, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "gc", "--root", str(server.root), "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def has_blob(server: BerthServer, repo: str, d: str) -> bool:
    return requests.head(f"{server.url}/v2/{repo}/blobs/{d}").status_code == 200


def test_gc_keeps_referenced_and_sweeps_the_rest(make_berth: MakeBerth) -> None:
    server = make_berth()
    url = server.url
    tagged = image(url, "app", layers=[b"tagged layer"])
    put_manifest(url, "app", "v1", tagged)
    orphan = push_blob(url, "app", b"pushed, never referenced")
    # a Windows image whose foreign base layer was pushed (air-gapped registry)
    foreign = b"foreign base layer bytes"
    push_blob(url, "win", foreign)
    win = image(url, "win", layers=[b"app layer"])
    doc = json.loads(win)
    doc["layers"].insert(0, descriptor(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", foreign,
        urls=["https://example.com/base"]))
    win = json.dumps(doc).encode()
    assert put_manifest(url, "win", "ltsc", win).status_code == 201

    dry = gc(server, "--grace", "0s", "--dry-run")
    assert dry["deleted_blobs"] == [orphan]
    assert has_blob(server, "app", orphan)

    report = gc(server, "--grace", "0s")
    assert report["deleted_blobs"] == [orphan]
    assert report["freed_bytes"] == len(b"pushed, never referenced")
    assert not has_blob(server, "app", orphan)
    for layer in json.loads(tagged)["layers"]:
        assert has_blob(server, "app", layer["digest"])
    assert has_blob(server, "win", digest(foreign))
    assert requests.get(f"{url}/v2/app/manifests/v1").content == tagged
    assert requests.get(f"{url}/v2/win/manifests/ltsc").content == win


def test_gc_grace_period_protects_fresh_blobs(make_berth: MakeBerth) -> None:
    server = make_berth()
    fresh = push_blob(server.url, "app", b"upload racing with gc")
    report = gc(server)  # default grace: 1h
    assert report["deleted_blobs"] == []
    assert report["kept_young"] == 1
    assert has_blob(server, "app", fresh)


def test_gc_delete_untagged(make_berth: MakeBerth) -> None:
    server = make_berth()
    url = server.url
    old = image(url, "app", layers=[b"old layer"])
    new = image(url, "app", layers=[b"new layer"])
    put_manifest(url, "app", "latest", old)
    put_manifest(url, "app", "latest", new)  # `old` is now untagged
    child = image(url, "app", layers=[b"child layer"])
    put_manifest(url, "app", digest(child), child)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [descriptor(OCI_MANIFEST, child)]}).encode()
    put_manifest(url, "app", "multi", index, OCI_INDEX)
    sig_layer = push_blob(url, "app", b"signature")
    sig = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-sig",
        "config": EMPTY,
        "layers": [descriptor("application/octet-stream", b"signature")],
        "subject": descriptor(OCI_MANIFEST, new),
    }).encode()
    assert put_manifest(url, "app", digest(sig), sig).status_code == 201

    report = gc(server, "--grace", "0s", "--delete-untagged")
    assert report["deleted_manifests"] == [f"app@{digest(old)}"]
    assert sorted(report["deleted_blobs"]) == sorted([digest(b"old layer"), digest(old)])
    assert requests.get(f"{url}/v2/app/manifests/{digest(old)}").status_code == 404
    for kept in (new, child, index, sig):
        assert requests.get(f"{url}/v2/app/manifests/{digest(kept)}").content == kept
    assert has_blob(server, "app", sig_layer)
    assert has_blob(server, "app", digest(b"new layer"))
    assert has_blob(server, "app", digest(b"child layer"))


def test_gc_drops_emptied_repositories_from_the_catalog(make_berth: MakeBerth) -> None:
    server = make_berth()
    d = push_blob(server.url, "gone", b"the only content")
    push_blob(server.url, "kept", b"other content")
    assert requests.delete(f"{server.url}/v2/gone/blobs/{d}").status_code == 202
    # listed until a collection notices it holds nothing
    assert requests.get(f"{server.url}/v2/_catalog").json()["repositories"] == ["gone", "kept"]
    # an entry younger than the grace period may be a first push about to write its link
    gc(server)
    assert requests.get(f"{server.url}/v2/_catalog").json()["repositories"] == ["gone", "kept"]
    gc(server, "--grace", "0s")
    assert requests.get(f"{server.url}/v2/_catalog").json()["repositories"] == ["kept"]


def test_gc_of_a_root_without_repositories_warns(tmp_path: Path) -> None:
    """Issue 9, item 14: `berth gc` on an empty or mistyped root said "0 repositories" as if
    all were well. The grace period goes in plain seconds too (`--grace 60`)."""
    wrong = tmp_path / "not-the-registry"
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "gc", "--root", str(wrong), "--json",
         "--grace", "60"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["repositories"] == 0
    assert report["warnings"] == [
        f"no repositories in {wrong} (and no blobs): is that the registry's storage root?"]
    assert not wrong.exists()  # and looking wrote nothing there
    plain = subprocess.run([sys.executable, "-m", "client.cli", "gc", "--root", str(wrong)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0
    assert plain.stderr.startswith(f"berth: warning: no repositories in {wrong}")


def test_gc_removes_links_whose_targets_are_gone(make_berth: MakeBerth) -> None:
    """Issue 11: orphaned layer links, revisions and tag index entries (their data or tag
    lost outside the registry, or by an interrupted delete) are removed once older than
    the grace period; the same left just now are kept."""
    server = make_berth()
    url, root = server.url, server.root
    for tag in ("v1", "v2", "v3"):  # images sharing nothing
        put_manifest(url, "app", tag, image(url, "app", layers=[f"layer {tag}".encode()]))
    lost_layer = digest(b"layer v1")
    lost_manifest = requests.get(f"{url}/v2/app/manifests/v2",
                                 headers={"Accept": OCI_MANIFEST}).headers["Docker-Content-Digest"]
    blobs = root / "docker/registry/v2/blobs/sha256"
    repo = root / "docker/registry/v2/repositories/app"
    (blobs / lost_layer[7:9] / lost_layer[7:] / "data").unlink()
    (blobs / lost_manifest[7:9] / lost_manifest[7:] / "data").unlink()
    (repo / "_manifests/tags/v1/current/link").unlink()  # the tag, not its index entry
    layer_link = repo / "_layers/sha256" / lost_layer[7:] / "link"
    revision_link = repo / "_manifests/revisions/sha256" / lost_manifest[7:] / "link"
    index_entry = repo / "_tags/v1"
    assert layer_link.exists() and revision_link.exists() and index_entry.exists()

    assert gc(server)["cleaned"] == 0  # all of it younger than the grace period
    assert layer_link.exists() and revision_link.exists() and index_entry.exists()

    report = gc(server, "--grace", "0s")
    assert report["cleaned"] >= 3
    assert not layer_link.exists() and not revision_link.exists() and not index_entry.exists()
    # (v2's tag still names the lost manifest: fsck reports it)
    assert requests.get(f"{url}/v2/app/tags/list").json()["tags"] == ["v2", "v3"]
    assert has_blob(server, "app", digest(b"layer v3"))  # what is whole stays
    assert requests.get(f"{url}/v2/app/manifests/v3").status_code == 200


def test_gc_reads_tags_from_their_links(make_berth: MakeBerth) -> None:
    """A tag missing from the tag index (as a race between two replicas' first tags once
    left it) still keeps its manifest from `--delete-untagged`: the link is the truth."""
    server = make_berth()
    manifest = image(server.url, "app", layers=[b"tagged, not indexed"])
    assert put_manifest(server.url, "app", "v1", manifest).status_code == 201
    (server.root / "docker/registry/v2/repositories/app/_tags/v1").unlink()
    report = gc(server, "--grace", "0s", "--delete-untagged")
    assert report["deleted_manifests"] == []
    assert requests.get(f"{server.url}/v2/app/manifests/v1",
                        headers={"Accept": OCI_MANIFEST}).content == manifest
