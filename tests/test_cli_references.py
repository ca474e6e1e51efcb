"""One reference parser and one printer for every command (issue 9, item 10): HOST[:PORT],
http(s)://HOST, docker://, tags and digests, in copy, push, pull, inspect, tags, rm,
catalog and login alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.oci.reference import InvalidReferenceError, Reference, Registry

from .layouts import layout_image
from .servers import BerthServer
from .test_cli import run_berth

HEX = "ab" * 32


@pytest.fixture
def pushed(berth: BerthServer, repo: str, tmp_path: Path) -> tuple[str, str]:
    """(repository reference, manifest digest) of an image tagged v1."""
    layout, image = layout_image(tmp_path / "src", repo)
    result = run_berth("push", f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1", "-q")
    assert result.returncode == 0, result.stderr
    return f"{berth.host}/{repo}", image.digest


@pytest.mark.parametrize("scheme", ["docker://", "http://"])
def test_every_command_takes_every_spelling(pushed: tuple[str, str], scheme: str,
                                            tmp_path: Path) -> None:
    ref, digest = pushed
    shown = run_berth("inspect", f"{scheme}{ref}:v1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["digest"] == digest
    by_digest = run_berth("inspect", f"{scheme}{ref}@{digest}", "--json")
    assert json.loads(by_digest.stdout)["digest"] == digest, by_digest.stderr
    listed = run_berth("tags", f"{scheme}{ref}")
    assert listed.stdout.split() == ["v1"], listed.stderr
    copied = run_berth("copy", f"{scheme}{ref}:v1", f"{scheme}{ref}:v2", "-q")
    assert copied.returncode == 0, copied.stderr
    pulled = run_berth("pull", f"{scheme}{ref}@{digest}", f"oci:{tmp_path / 'p'}:x", "-q")
    assert pulled.returncode == 0, pulled.stderr
    removed = run_berth("rm", f"{scheme}{ref}:v2")
    assert removed.returncode == 0, removed.stderr
    assert run_berth("tags", f"{scheme}{ref}").stdout.split() == ["v1"]


def test_catalog_and_login_take_a_scheme(berth: BerthServer, pushed: tuple[str, str],
                                         tmp_path: Path) -> None:
    ref, _ = pushed
    listed = run_berth("catalog", f"http://{berth.host}", "--json")
    assert listed.returncode == 0, listed.stderr
    assert ref.split("/", 1)[1] in json.loads(listed.stdout)
    authfile = tmp_path / "auth.json"
    login = run_berth("login", f"http://{berth.host}/", "-u", "u", "--password-stdin",
                      "--authfile", str(authfile), stdin="p\n")
    assert login.returncode == 0, login.stderr
    assert list(json.loads(authfile.read_text())["auths"]) == [berth.host]
    logout = run_berth("logout", f"http://{berth.host}", "--authfile", str(authfile))
    assert logout.returncode == 0, logout.stderr


def test_digests_print_after_an_at(pushed: tuple[str, str]) -> None:
    ref, digest = pushed
    missing = run_berth("inspect", f"{ref}@sha256:{HEX}")
    assert missing.returncode == 4
    assert f"{ref}@sha256:{HEX}: manifest not found" in missing.stderr, missing.stderr
    assert f":sha256:{HEX}" not in missing.stderr
    removed = run_berth("rm", f"{ref}@{digest}")
    assert removed.stdout.strip() == f"deleted {ref}@{digest}", removed.stderr


def test_a_bad_registry_argument_is_a_usage_error(berth: BerthServer) -> None:
    for args in (("catalog", f"{berth.host}/some/repo"), ("catalog", "http://bad_host"),
                 ("tags", "http://127.0.0.1:1")):
        result = run_berth(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("berth: error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(("text", "registry", "repository", "scheme", "printed"), [
    ("docker://busybox", "docker.io", "library/busybox", None,
     "docker.io/library/busybox:latest"),
    ("http://127.0.0.1:5000/app:v1", "127.0.0.1:5000", "app", "http",
     "http://127.0.0.1:5000/app:v1"),
    ("https://reg/a/b", "reg", "a/b", "https", "https://reg/a/b:latest"),
    (f"docker://reg.io/x@sha256:{HEX}", "reg.io", "x", None, f"reg.io/x@sha256:{HEX}"),
    ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", None,
     "docker.io/library/alpine:3"),
])
def test_reference_grammar(text: str, registry: str, repository: str, scheme: str | None,
                           printed: str) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.scheme) == (registry, repository, scheme)
    assert str(ref) == printed
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(("text", "host", "scheme"), [
    ("127.0.0.1:5000", "127.0.0.1:5000", None), ("http://127.0.0.1:5000", "127.0.0.1:5000",
                                                  "http"),
    ("https://index.docker.io/v1/", "docker.io", "https"), ("docker://localhost/", "localhost",
                                                            None),
])
def test_registry_grammar(text: str, host: str, scheme: str | None) -> None:
    assert Registry.parse(text) == Registry(host, scheme)


@pytest.mark.parametrize("bad", ["http://x", "http://bad_host/x", "docker://"])
def test_bad_scheme_references(bad: str) -> None:
    with pytest.raises(InvalidReferenceError):
        Reference.parse(bad)
