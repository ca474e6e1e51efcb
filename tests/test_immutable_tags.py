"""Immutable tags (`berth.immutabletags`): moving or deleting one is refused with 403
DENIED naming the rule; pushing the digest it already names again is accepted."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .conftest import MakeBerth, s3_config
from .helpers import digest, error_code, image, put_manifest
from .servers import BerthServer

RULES = [
    {"repositories": ["team/*"], "tags": ["^latest$"]},  # (not prod/**'s)
    {"repositories": ["prod/**"], "tags": ["^v[0-9]+", "^stable$"]},
]
RULE_TEXT = "berth.immutabletags[1]: repositories prod/**, tags ^v[0-9]+ ^stable$"


@pytest.fixture(params=["filesystem", "inmemory", "s3",
                        pytest.param("s3-rgw", marks=pytest.mark.rgw)])
def server(request: pytest.FixtureRequest, make_berth: MakeBerth) -> BerthServer:
    config: dict[str, Any] = {"berth": {"immutabletags": RULES}}
    if request.param == "inmemory":
        config["storage"] = {"inmemory": {}}
    elif request.param == "s3":
        config.update(s3_config(request.getfixturevalue("moto_s3")))
    elif request.param == "s3-rgw":
        config.update(s3_config(request.getfixturevalue("rgw_s3")))
    return make_berth(config)


def denied(response: requests.Response) -> str:
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    message: str = response.json()["errors"][0]["message"]
    return message


def test_an_immutable_tag_keeps_its_digest(server: BerthServer) -> None:
    url, repo = server.url, "prod/web/app"
    first = image(url, repo, layers=[b"first"])
    second = image(url, repo, layers=[b"second"])
    assert put_manifest(url, repo, "v1.2", first).status_code == 201
    # an idempotent retry of the same push
    assert put_manifest(url, repo, "v1.2", first).status_code == 201
    message = denied(put_manifest(url, repo, "v1.2", second))
    assert message == (f"tag v1.2 is immutable ({RULE_TEXT}): it names {digest(first)}, "
                       f"so {digest(second)} cannot be pushed to it")
    assert requests.get(f"{url}/v2/{repo}/manifests/v1.2").content == first
    # nothing of the refused push was published: not even its manifest by digest
    assert requests.head(f"{url}/v2/{repo}/manifests/{digest(second)}").status_code == 404
    # pushed by digest with ?tag=, the immutable tag among others
    response = requests.put(f"{url}/v2/{repo}/manifests/{digest(second)}",
                            params={"tag": ["stable-ish", "v1.2"]}, data=second,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert "tag v1.2 is immutable" in denied(response)
    assert requests.get(f"{url}/v2/{repo}/manifests/v1.2").content == first


def test_an_immutable_tag_cannot_be_deleted(server: BerthServer) -> None:
    url, repo = server.url, "prod/app"
    manifest = image(url, repo, layers=[b"kept"])
    assert put_manifest(url, repo, "stable", manifest).status_code == 201
    assert denied(requests.delete(f"{url}/v2/{repo}/manifests/stable")) == (
        f"tag stable is immutable ({RULE_TEXT}): it cannot be deleted")
    # deleting the manifest by digest would remove the tag with it
    assert "tag stable is immutable" in denied(
        requests.delete(f"{url}/v2/{repo}/manifests/{digest(manifest)}"))
    assert requests.get(f"{url}/v2/{repo}/manifests/stable").content == manifest
    assert requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] == ["stable"]


def test_other_tags_and_repositories_are_unaffected(server: BerthServer) -> None:
    url = server.url
    one = image(url, "prod/app", layers=[b"one"])
    two = image(url, "prod/app", layers=[b"two"])
    for tag in ("latest", "dev-v1"):  # no rule of prod/** matches them (searched, ^-anchored)
        assert put_manifest(url, "prod/app", tag, one).status_code == 201
        assert put_manifest(url, "prod/app", tag, two).status_code == 201
        assert requests.delete(f"{url}/v2/prod/app/manifests/{tag}").status_code == 202
    # `team/*` does not reach a nested repository, and `prod/**` not `production`
    for repo in ("team/a/b", "production"):
        a = image(url, repo, layers=[b"a"])
        b = image(url, repo, layers=[b"b"])
        assert put_manifest(url, repo, "latest", a).status_code == 201
        assert put_manifest(url, repo, "v1", a).status_code == 201
        assert put_manifest(url, repo, "latest", b).status_code == 201
        assert put_manifest(url, repo, "v1", b).status_code == 201
        assert requests.delete(f"{url}/v2/{repo}/manifests/{digest(b)}").status_code == 202
    a = image(url, "team/a", layers=[b"a"])
    b = image(url, "team/a", layers=[b"b"])
    assert put_manifest(url, "team/a", "latest", a).status_code == 201
    assert "berth.immutabletags[0]: repositories team/*, tags ^latest$" in denied(
        put_manifest(url, "team/a", "latest", b))
    # an untagged manifest of an immutable repository can still be deleted
    assert put_manifest(url, "prod/app", digest(two), two).status_code == 201
    assert requests.delete(f"{url}/v2/prod/app/manifests/{digest(two)}").status_code == 202
