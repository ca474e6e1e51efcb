"""Retention policies (`berth.retention`), applied by garbage collection: keep the last N
tags by push time, tags matching expressions, forget untagged manifests older than a
delay; never an immutable tag or one written within the grace period; a dry run deletes
nothing and says what it would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from client.oci.digest import Digest
from registry.config import ConfigError, glob_regex, load_config
from registry.storage import paths

from .conftest import MakeBerth, s3_config
from .helpers import digest, image, put_manifest
from .servers import ROOT, BerthServer

POLICIES: list[dict[str, Any]] = [
    {"repositories": ["ci/special"]},  # the first match applies: keeps every tag
    {"repositories": ["ci/**"], "deleteuntagged": True,
     "keeptags": [{"patterns": ["^b"], "mostrecentlypushedcount": 2},
                  {"patterns": ["^v[0-9]"]}]},
]
IMMUTABLE = [{"repositories": ["ci/**"], "tags": ["^rel-"]}]


def berth_gc(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "gc", "--config",
         str(server.workdir / "config.yml"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def gc_report(server: BerthServer, *args: str) -> dict[str, Any]:
    result = berth_gc(server, "--json", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def tags(server: BerthServer, repo: str) -> list[str]:
    response = requests.get(f"{server.url}/v2/{repo}/tags/list")
    assert response.status_code == 200, response.text
    return list(response.json()["tags"])


def status(server: BerthServer, repo: str, reference: str) -> int:
    return requests.head(f"{server.url}/v2/{repo}/manifests/{reference}").status_code


def push(server: BerthServer, repo: str, tag: str, content: bytes | None = None) -> bytes:
    manifest = image(server.url, repo, layers=[content or f"{repo} {tag}".encode()])
    assert put_manifest(server.url, repo, tag, manifest).status_code == 201
    return manifest


def push_scenario(server: BerthServer, apart: float) -> dict[str, bytes]:
    """ci/app: b1 < b2 < b3 by push time (`apart` seconds between), and tags no rule keeps."""
    pushed = {tag: push(server, "ci/app", tag) for tag in ("v1.0", "rel-1", "other", "b1")}
    for tag in ("b2", "b3"):
        time.sleep(apart)
        pushed[tag] = push(server, "ci/app", tag)
    for tag in ("b1", "other"):
        push(server, "ci/special", tag)
        push(server, "elsewhere", tag)  # no policy: everything stays
    return pushed


def assert_scenario_applied(server: BerthServer, pushed: dict[str, bytes]) -> None:
    assert tags(server, "ci/app") == ["b2", "b3", "rel-1", "v1.0"]
    for tag in ("b1", "other"):  # untagged now, and forgotten (deleteuntagged, delay 0s)
        assert status(server, "ci/app", digest(pushed[tag])) == 404
        layer = digest(f"ci/app {tag}".encode())
        assert requests.head(f"{server.url}/v2/ci/app/blobs/{layer}").status_code == 404
    for tag in ("b2", "b3", "rel-1", "v1.0"):
        assert requests.get(f"{server.url}/v2/ci/app/manifests/{tag}").content == pushed[tag]
    assert tags(server, "ci/special") == ["b1", "other"]
    assert tags(server, "elsewhere") == ["b1", "other"]


def retention_config(**extra: Any) -> dict[str, Any]:
    return {"berth": {"retention": {"delay": "0s", "policies": POLICIES},
                      "immutabletags": IMMUTABLE, **extra}}


@pytest.mark.parametrize("driver", ["filesystem", "s3",
                                    pytest.param("s3-rgw", marks=pytest.mark.rgw)])
def test_berth_gc_applies_the_policies(make_berth: MakeBerth, driver: str,
                                       request: pytest.FixtureRequest) -> None:
    config = retention_config()
    if driver == "s3":
        config.update(s3_config(request.getfixturevalue("moto_s3")))
    elif driver == "s3-rgw":
        config.update(s3_config(request.getfixturevalue("rgw_s3")))
    server = make_berth(config)
    # S3 keeps modification times to the second
    pushed = push_scenario(server, apart=0.02 if driver == "filesystem" else 1.1)
    report = gc_report(server, "--grace", "0s")
    assert report["retention_deleted_tags"] == ["ci/app:b1", "ci/app:other"]
    assert report["retention_kept_immutable"] == ["ci/app:rel-1"]
    assert sorted(report["deleted_manifests"]) == sorted(
        f"ci/app@{digest(pushed[t])}" for t in ("b1", "other"))
    assert_scenario_applied(server, pushed)
    again = gc_report(server, "--grace", "0s")
    assert again["retention_deleted_tags"] == [] and again["deleted_manifests"] == []


def test_the_scheduled_collection_applies_them_in_memory(make_berth: MakeBerth) -> None:
    """An in-memory registry is collected inside its server only."""
    grace = 2.0
    server = make_berth({"storage": {"inmemory": {}}, **retention_config(
        gc={"enabled": True, "interval": "0.5s", "grace": f"{grace}s"})})
    pushed = push_scenario(server, apart=0.05)
    deadline = time.monotonic() + grace + 15
    while tags(server, "ci/app") != ["b2", "b3", "rel-1", "v1.0"]:
        assert time.monotonic() < deadline, tags(server, "ci/app")
        time.sleep(0.2)
    time.sleep(1)  # (the untagged manifests go in the same run, its blobs in a later one)
    while requests.head(f"{server.url}/v2/ci/app/blobs/"
                        f"{digest(b'ci/app other')}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert_scenario_applied(server, pushed)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every stored file (but the server's readiness probe, written every few seconds)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and "_health/" not in str(p)}


def test_a_dry_run_deletes_nothing_and_names_what_would_go(make_berth: MakeBerth) -> None:
    server = make_berth(retention_config())
    pushed = push_scenario(server, apart=0.02)
    before = snapshot(server.root)
    result = berth_gc(server, "--dry-run", "--grace", "0s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["would delete tag ci/app:b1", "would delete tag ci/app:other"]
    assert sorted(lines[2:4]) == sorted(
        f"would forget manifest ci/app@{digest(pushed[t])}" for t in ("b1", "other"))
    assert lines[4].startswith("would have: ")
    assert lines[4].endswith("; retention deleted 2 tags, kept 1 immutable ones")
    assert len(lines) == 5
    assert snapshot(server.root) == before
    report = gc_report(server, "--dry-run", "--grace", "0s")
    assert report["retention_deleted_tags"] == ["ci/app:b1", "ci/app:other"]
    assert snapshot(server.root) == before
    assert tags(server, "ci/app") == ["b1", "b2", "b3", "other", "rel-1", "v1.0"]


def test_push_time_is_the_last_push_of_the_tag(make_berth: MakeBerth) -> None:
    """A re-push of the same digest rewrites the tag's link: it counts as the newest."""
    server = make_berth({"berth": {"retention": {"policies": [
        {"repositories": ["**"], "keeptags": [{"mostrecentlypushedcount": 1}]}]}}})
    first = push(server, "app", "m")
    for tag in ("z", "a"):  # (neither name order is push order)
        time.sleep(0.02)
        push(server, "app", tag)
    time.sleep(0.02)
    assert put_manifest(server.url, "app", "m", first).status_code == 201
    assert gc_report(server, "--grace", "0s")["retention_deleted_tags"] == ["app:a", "app:z"]
    assert tags(server, "app") == ["m"]
    # not asked to forget untagged manifests: z's stays, by digest
    assert status(server, "app", digest(image(server.url, "app", layers=[b"app z"]))) == 200


def age(server: BerthServer, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(server.root / key, (then, then))


def test_pushed_within_and_the_untagged_delay(make_berth: MakeBerth) -> None:
    server = make_berth({"berth": {"retention": {"delay": "1h", "policies": [
        {"repositories": ["app"], "deleteuntagged": True,
         "keeptags": [{"pushedwithin": "1h"}]}]}}})
    push(server, "app", "fresh")
    push(server, "app", "stale")
    age(server, paths.tag_link("app", "stale"), 7200)
    old = image(server.url, "app", layers=[b"untagged, old"])
    new = image(server.url, "app", layers=[b"untagged, new"])
    for manifest in (old, new):
        assert put_manifest(server.url, "app", digest(manifest), manifest).status_code == 201
    age(server, paths.revision_link("app", Digest.parse(digest(old))), 7200)
    age(server, paths.use_record(Digest.parse(digest(old))), 7200)  # (pushed back then)
    report = gc_report(server, "--grace", "0s")
    assert report["retention_deleted_tags"] == ["app:stale"]
    # stale's manifest is untagged now, but only for a moment: the delay keeps it
    assert report["deleted_manifests"] == [f"app@{digest(old)}"]
    assert tags(server, "app") == ["fresh"]
    assert status(server, "app", digest(old)) == 404
    assert status(server, "app", digest(new)) == 200


def test_tags_written_within_the_grace_period_stay(make_berth: MakeBerth) -> None:
    server = make_berth({"berth": {"retention": {"policies": [
        {"repositories": ["**"], "keeptags": [{"patterns": ["^keep$"]}]}]}}})
    push(server, "app", "keep")
    push(server, "app", "young")
    assert gc_report(server)["retention_deleted_tags"] == []  # grace: 1h
    assert tags(server, "app") == ["keep", "young"]
    assert gc_report(server, "--grace", "0s")["retention_deleted_tags"] == ["app:young"]


@pytest.mark.parametrize(("text", "message"), [
    ({"policies": [{"repositories": ["a"]}, {"repositories": ["b"]},
                   {"repositories": ["c"], "keeptags": [{"patterns": ["^v", "v[0-"]}]}]},
     "berth.retention.policies[2].keeptags[0].patterns[1]: bad regex 'v[0-': "
     "unterminated character set at position 1"),
    ({"policies": [{"repositories": ["ok/*", "Team/[ab]"]}]},
     "berth.retention.policies[0].repositories[1]: bad glob 'Team/[ab]': use repository-name "
     "characters (a-z 0-9 . _ - /) and the wildcards * ? **"),
    ({"policies": [{"repositories": ["a"], "keeptags": [{"pushedwithin": "a week"}]}]},
     "berth.retention.policies[0].keeptags[0].pushedwithin: not a duration: 'a week'"),
    ({"policies": [{"repositories": ["a"], "keeptags": [{"mostrecentlypushedcount": -1}]}]},
     "berth.retention.policies[0].keeptags[0].mostrecentlypushedcount: Input should be "
     "greater than or equal to 0"),
    ({"policies": [{"repositories": []}]},
     "berth.retention.policies[0].repositories: list at least one"),
    ({"policies": [{"repositories": ["a"], "keeptags": [{"pattern": ["x"]}]}]},
     "berth.retention.policies[0].keeptags[0].pattern: unknown key"),
])
def test_config_errors_name_the_rule(tmp_path: Path, text: dict[str, Any],
                                     message: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"berth": {"retention": text}}))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(f"{path}: {message}")


def test_immutable_rule_errors_and_the_cli_message(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"berth": {"immutabletags": [
        {"repositories": ["prod/**"], "tags": ["^v"]}, {"repositories": ["x"], "tags": ["("]}]}}))
    result = subprocess.run([sys.executable, "-m", "client.cli", "gc", "--config", str(path),
                             "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"berth: config error: {path}: berth.immutabletags[1].tags[0]: "
                             "bad regex '(': missing ), unterminated subpattern at position 0\n")


def wait_for(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def pull(server: BerthServer, repo: str, reference: str) -> None:
    assert requests.get(f"{server.url}/v2/{repo}/manifests/{reference}").status_code == 200


@pytest.mark.parametrize("driver", ["filesystem", "s3"])
def test_pull_rules_keep_what_was_pulled(make_berth: MakeBerth, driver: str,
                                         request: pytest.FixtureRequest) -> None:
    config: dict[str, Any] = {"berth": {"retention": {"pullflush": "0.1s", "policies": [
        {"repositories": ["within"], "keeptags": [{"pulledwithin": "1h"}]},
        {"repositories": ["count"], "keeptags": [{"mostrecentlypulledcount": 1}]},
        {"repositories": ["count3"], "keeptags": [{"mostrecentlypulledcount": 3}]},
    ]}}}
    if driver == "s3":
        config.update(s3_config(request.getfixturevalue("moto_s3")))
    server = make_berth(config)
    within = {tag: push(server, "within", tag) for tag in ("a", "b", "c")}
    for tag in ("x", "y", "z"):
        push(server, "count", tag)
        push(server, "count3", tag)
    pull(server, "count3", "x")
    pull(server, "count3", "y")  # z: never pulled, so not among the most recently pulled
    pull(server, "within", "a")
    pull(server, "within", digest(within["c"]))  # a pull by digest counts for its tags
    assert requests.head(f"{server.url}/v2/within/manifests/b").status_code == 200  # not one
    pull(server, "count", "x")
    time.sleep(1.1 if driver == "s3" else 0.3)  # (S3 keeps times to the second)
    pull(server, "count", "y")
    time.sleep(0.5)  # a few batches
    report = gc_report(server, "--grace", "0s")
    assert report["retention_deleted_tags"] == ["count:x", "count:z", "count3:z", "within:b"]
    assert tags(server, "within") == ["a", "c"]
    assert tags(server, "count") == ["y"]
    assert tags(server, "count3") == ["x", "y"]


def test_a_pull_is_written_once_an_hour_in_batches(make_berth: MakeBerth) -> None:
    server = make_berth({"berth": {"retention": {"pullflush": "0.1s", "policies": [
        {"repositories": ["app"], "keeptags": [{"pulledwithin": "24h"}]}]}}})
    manifest = push(server, "app", "v1")
    record = server.root / paths.pull_record("app", Digest.parse(digest(manifest)))
    assert not record.exists()
    pull(server, "app", "v1")
    wait_for(record.exists)
    written = record.stat().st_mtime_ns
    for _ in range(5):
        pull(server, "app", "v1")
        pull(server, "app", digest(manifest))
    time.sleep(0.5)
    assert record.stat().st_mtime_ns == written
    # a collection drops the records of manifests gone
    assert requests.delete(f"{server.url}/v2/app/manifests/{digest(manifest)}").status_code == 202
    assert gc_report(server, "--grace", "0s")["cleaned"] >= 1
    assert not record.exists()


def test_pulls_noted_are_written_at_shutdown_and_only_with_pull_rules(
        make_berth: MakeBerth) -> None:
    server = make_berth({"berth": {"retention": {"pullflush": "1h", "policies": [
        {"repositories": ["app"], "keeptags": [{"mostrecentlypulledcount": 3}]}]}}})
    manifest = push(server, "app", "v1")
    pull(server, "app", "v1")
    record = server.root / paths.pull_record("app", Digest.parse(digest(manifest)))
    assert not record.exists()  # (noted, not yet written)
    assert server.stop() == 0
    assert record.exists()
    plain = make_berth({"berth": {"retention": {"pullflush": "0.1s", "policies": [
        {"repositories": ["app"], "keeptags": [{"mostrecentlypushedcount": 3}]}]}}})
    manifest = push(plain, "app", "v1")
    pull(plain, "app", "v1")
    time.sleep(0.5)
    assert plain.stop() == 0
    assert not (plain.root / paths.pull_record("app", Digest.parse(digest(manifest)))).exists()


@pytest.mark.parametrize(("glob", "matches", "misses"), [
    ("team/*", ["team/a"], ["team", "team/a/b", "teams/a"]),
    ("prod/**", ["prod", "prod/a", "prod/a/b"], ["production", "pre/prod"]),
    ("**/cache", ["cache", "x/cache", "x/y/cache"], ["cache2", "xcache"]),
    ("**", ["a", "a/b/c"], []),
    ("app", ["app"], ["app/x", "myapp"]),
    ("a?c/x.y", ["abc/x.y"], ["a/c/x.y", "abc/xzy"]),
])
def test_repository_globs(glob: str, matches: list[str], misses: list[str]) -> None:
    """As docs/retention.md's table says."""
    pattern = glob_regex(glob)
    assert [n for n in matches if pattern.fullmatch(n)] == matches
    assert [n for n in misses if pattern.fullmatch(n)] == []
