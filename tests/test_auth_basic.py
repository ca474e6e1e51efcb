"""Access control with htpasswd (HTTP Basic) and the access policy, against a running
`berth serve`: challenges, denials, anonymous pull, filtered catalog, mount rules,
reloading, failed-login throttling and timing."""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from .authkit import POLICY, USERS, basic, write_htpasswd, write_policy
from .conftest import MakeBerth
from .helpers import digest, error_code, image, push_blob, put_manifest
from .servers import BerthServer

ALICE, BOB, CAROL = (basic(u, USERS[u]) for u in ("alice", "bob", "carol"))


def start(make_berth: MakeBerth, tmp_path: Path, policy: dict[str, Any] | None = POLICY,
          **auth: Any) -> BerthServer:
    settings: dict[str, Any] = {
        "htpasswd": {"path": str(write_htpasswd(tmp_path / "htpasswd", USERS)),
                     "realm": "berth-test"},
        "reloadinterval": "0.2s", **auth,
    }
    if policy is not None:
        settings["policy"] = str(write_policy(tmp_path / "policy.yml", policy))
    return make_berth({"auth": settings})


@pytest.fixture
def server(make_berth: MakeBerth, tmp_path: Path) -> BerthServer:
    return start(make_berth, tmp_path)


def publish(server: BerthServer, repo: str, headers: dict[str, str]) -> str:
    """Push a small image tagged `latest`; its manifest digest."""
    manifest = image(server.url, repo, headers=headers)
    response = put_manifest(server.url, repo, "latest", manifest, headers=headers)
    assert response.status_code == 201, response.text
    return digest(manifest)


def get(server: BerthServer, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> requests.Response:
    return requests.request(method, server.url + path, headers=headers, timeout=30)


def catalog(server: BerthServer, headers: dict[str, str] | None) -> list[str]:
    response = get(server, "/v2/_catalog", headers)
    assert response.status_code == 200, response.text
    return list(response.json()["repositories"])


def test_no_credentials_is_a_basic_challenge(make_berth: MakeBerth, tmp_path: Path) -> None:
    server = start(make_berth, tmp_path, policy=None)  # no anonymous access at all
    for path in ("/v2/", "/v2/team-a/app/tags/list", "/v2/_catalog"):
        response = get(server, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="berth-test"')
        assert error_code(response) == "UNAUTHORIZED"
    # Without a policy file, every signed-in user may do everything.
    assert get(server, "/v2/", BOB).status_code == 200
    publish(server, "any/where", BOB)


def test_wrong_password_and_unknown_user_look_alike_and_change_nothing(
    server: BerthServer,
) -> None:
    wrong = get(server, "/v2/team-a/app/blobs/uploads/", basic("bob", "nope"), "POST")
    unknown = get(server, "/v2/team-a/app/blobs/uploads/", basic("mallory", "nope"), "POST")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert error_code(response) == "UNAUTHORIZED"
        assert "WWW-Authenticate" in response.headers
    assert wrong.json() == unknown.json()
    assert catalog(server, ALICE) == []
    assert not (server.root / "docker/registry/v2/repositories").exists()
    malformed = get(server, "/v2/", {"Authorization": "Basic !!!"})
    assert malformed.status_code == 401 and error_code(malformed) == "UNAUTHORIZED"


def test_policy_decides_who_may_push_pull_and_delete(server: BerthServer) -> None:
    manifest = publish(server, "team-a/app", BOB)
    assert get(server, "/v2/team-a/app/manifests/latest", CAROL).status_code == 200
    # bob may not push outside team-a: 403 DENIED, and nothing is created.
    refused = get(server, "/v2/team-b/app/blobs/uploads/", BOB, "POST")
    assert refused.status_code == 403 and error_code(refused) == "DENIED"
    assert get(server, "/v2/team-b/app/tags/list", ALICE).status_code == 404
    # team-a may pull and push but not delete; alice may.
    deleted = get(server, f"/v2/team-a/app/manifests/{manifest}", BOB, "DELETE")
    assert deleted.status_code == 403 and error_code(deleted) == "DENIED"
    assert get(server, f"/v2/team-a/app/manifests/{manifest}", ALICE, "DELETE").status_code == 202


def test_deny_rules_win(server: BerthServer) -> None:
    publish(server, "team-a/vault/keys", BOB)
    assert get(server, "/v2/team-a/vault/keys/tags/list", BOB).status_code == 200
    denied = get(server, "/v2/team-a/vault/keys/tags/list", CAROL)
    assert denied.status_code == 403 and error_code(denied) == "DENIED"
    assert get(server, "/v2/team-a/vault/keys/blobs/uploads/", CAROL, "POST").status_code == 403
    assert "team-a/vault/keys" not in catalog(server, CAROL)


def test_anonymous_pull_per_pattern(server: BerthServer) -> None:
    publish(server, "public/base", ALICE)
    publish(server, "team-a/app", BOB)
    # `/v2/` challenges anonymous callers (that is how clients learn to send credentials),
    # but the repositories the policy opens to them answer without any; so does an empty
    # Basic header, which clients without credentials send.
    assert get(server, "/v2/").status_code == 401
    assert get(server, "/v2/public/base/manifests/latest", basic("", "")).status_code == 200
    assert get(server, "/v2/public/base/manifests/latest").status_code == 200
    assert get(server, "/v2/public/base/manifests/latest", BOB).status_code == 200
    hidden = get(server, "/v2/team-a/app/manifests/latest")
    assert hidden.status_code == 401 and error_code(hidden) == "UNAUTHORIZED"
    push = get(server, "/v2/public/base/blobs/uploads/", method="POST")
    assert push.status_code == 401
    assert get(server, "/v2/public/base/blobs/uploads/", BOB, "POST").status_code == 403


def test_catalog_lists_only_what_the_caller_may_pull(server: BerthServer) -> None:
    for name, who in (("public/base", ALICE), ("team-a/app", BOB), ("team-a/vault/k", BOB),
                      ("admin/secret", ALICE)):
        publish(server, name, who)
    assert catalog(server, ALICE) == ["admin/secret", "public/base", "team-a/app",
                                      "team-a/vault/k"]
    assert catalog(server, BOB) == ["public/base", "team-a/app", "team-a/vault/k"]
    assert catalog(server, CAROL) == ["public/base", "team-a/app"]
    assert catalog(server, None) == ["public/base"]
    page = get(server, "/v2/_catalog?n=1", BOB)
    assert page.json() == {"repositories": ["public/base"]}
    assert "last=public%2Fbase" in page.headers["Link"]


def test_mount_needs_pull_on_the_source(server: BerthServer) -> None:
    secret = push_blob(server.url, "admin/secret", b"top secret layer", ALICE)
    shared = push_blob(server.url, "public/base", b"shared layer", ALICE)

    def mount(digest: str, source: str | None) -> requests.Response:
        query = f"?mount={digest}" + (f"&from={source}" if source else "")
        return get(server, f"/v2/team-a/app/blobs/uploads/{query}", BOB, "POST")

    refused = mount(secret, "admin/secret")
    assert refused.status_code == 202  # an ordinary upload instead, as the spec asks
    assert get(server, f"/v2/team-a/app/blobs/{secret}", BOB, "HEAD").status_code == 404
    assert mount(secret, None).status_code == 202  # no `from`: not under auth
    assert get(server, f"/v2/team-a/app/blobs/{secret}", BOB, "HEAD").status_code == 404
    assert mount(shared, "public/base").status_code == 201
    assert get(server, f"/v2/team-a/app/blobs/{shared}", BOB, "HEAD").status_code == 200


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_files_reload_when_changed(server: BerthServer, tmp_path: Path) -> None:
    dave = basic("dave", "dave-pw")
    assert get(server, "/v2/", dave).status_code == 401
    write_htpasswd(tmp_path / "htpasswd", {**USERS, "dave": "dave-pw"})
    wait_for(lambda: get(server, "/v2/", dave).status_code == 200)
    policy = json.loads(json.dumps(POLICY))
    policy["groups"]["team-a"].append("dave")
    write_policy(tmp_path / "policy.yml", policy)
    wait_for(lambda: get(server, "/v2/team-a/x/blobs/uploads/", dave, "POST").status_code == 202)
    # A broken edit keeps the last good files in force.
    (tmp_path / "policy.yml").write_text("rules: [{repositories: ['*'], actions: [fly]}]\n")
    wait_for(lambda: "keeping the previous users and policy" in server.log.read_text())
    assert get(server, "/v2/team-a/x/blobs/uploads/", dave, "POST").status_code == 202


def test_sighup_reloads(make_berth: MakeBerth, tmp_path: Path) -> None:
    server = start(make_berth, tmp_path, reloadinterval=0)  # no polling: the signal only
    dave = basic("dave", "dave-pw")
    write_htpasswd(tmp_path / "htpasswd", {**USERS, "dave": "dave-pw"})
    time.sleep(0.5)
    assert get(server, "/v2/", dave).status_code == 401
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_for(lambda: get(server, "/v2/", dave).status_code == 200)


def status_from(server: BerthServer, source: str, headers: dict[str, str]) -> tuple[int, str]:
    """One request from a chosen loopback address (127.0.0.0/8 all reaches this host)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30,
                                            source_address=(source, 0))
    try:
        connection.request("GET", "/v2/", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After") or ""
    finally:
        connection.close()


def test_failed_logins_are_throttled_per_user_and_address(
    make_berth: MakeBerth, tmp_path: Path,
) -> None:
    server = start(make_berth, tmp_path, loginlimit={"attempts": 3, "window": "1m"})
    for _ in range(3):
        assert status_from(server, "127.0.0.1", basic("bob", "guess"))[0] == 401
    status, retry_after = status_from(server, "127.0.0.1", BOB)  # even the right password
    assert status == 429 and 0 < int(retry_after) <= 60
    assert status_from(server, "127.0.0.1", ALICE)[0] == 429  # this address is throttled
    assert status_from(server, "127.0.0.2", BOB)[0] == 429  # and so is bob, from anywhere
    assert status_from(server, "127.0.0.2", ALICE)[0] == 200
    body = get(server, "/v2/", BOB)
    assert body.status_code == 429 and error_code(body) == "TOOMANYREQUESTS"


def test_unknown_user_costs_the_same_as_a_wrong_password(
    make_berth: MakeBerth, tmp_path: Path,
) -> None:
    settings = {"htpasswd": {"path": str(write_htpasswd(tmp_path / "htpasswd", USERS, cost=10))},
                "loginlimit": {"attempts": 1000}}
    server = make_berth({"auth": settings})
    session = requests.Session()

    def seconds(user: str) -> float:
        started = time.perf_counter()
        assert session.get(server.url + "/v2/", headers=basic(user, "wrong"),
                           timeout=30).status_code == 401
        return time.perf_counter() - started

    seconds("alice")  # warm up the connection
    known = statistics.median(seconds("alice") for _ in range(7))
    unknown = statistics.median(seconds(f"nobody-{i}") for i in range(7))
    # Without the dummy hash an unknown user answers in well under a millisecond of
    # work against tens of milliseconds of bcrypt: a ratio far outside this band.
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_access_log_names_the_user(server: BerthServer) -> None:
    """Issue 9, item 14: the access log carries the signed-in user and the duration."""
    assert requests.get(f"{server.url}/v2/", headers=ALICE).status_code == 200
    assert requests.get(f"{server.url}/v2/").status_code == 401
    lines = [x for x in server.log.read_text().splitlines() if '"GET /v2/ HTTP/1.1"' in x]
    signed_in = next(x for x in lines if '" 200 ' in x)
    anonymous = next(x for x in lines if '" 401 ' in x)
    assert " - alice [" in signed_in and " - - [" in anonymous
    # seconds it took, then the request id
    took, request_id = signed_in.rsplit(" ", 2)[1:]
    assert float(took) < 5 and request_id.startswith("request_id=")
