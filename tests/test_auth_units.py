"""The access-control building blocks on their own: policy semantics, htpasswd parsing
(including files written by Apache's real `htpasswd -B`), the login throttle's bounds,
scope parsing, and startup errors for unusable auth files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from client.oci.scope import CATALOG_SCOPE, Scope, ScopeError, repository
from registry.auth.htpasswd import Htpasswd, HtpasswdError
from registry.auth.policy import USERS_MAY_DO_ALL, Policy, PolicyError
from registry.auth.throttle import LoginThrottle

from .authkit import POLICY, write_policy
from .servers import ROOT

ALL = {"pull", "push", "delete"}


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return Policy.load(write_policy(tmp_path / "policy.yml", POLICY))


def test_policy_unions_allows_and_subtracts_denies(policy: Policy) -> None:
    assert policy.actions("alice", "anything/at/all") == ALL
    assert policy.actions("bob", "team-a/app") == {"pull", "push"}
    assert policy.actions("bob", "team-a/deep/nested/app") == {"pull", "push"}  # * crosses /
    assert policy.actions("bob", "team-ab/app") == set()
    assert policy.actions("carol", "team-a/vault/keys") == set()  # deny wins
    assert policy.actions("bob", "team-a/vault/keys") == {"pull", "push"}
    assert policy.actions("mallory", "team-a/app") == set()


def test_anonymous_grants_reach_everyone(policy: Policy) -> None:
    assert policy.actions(None, "public/base") == {"pull"}
    assert policy.actions("mallory", "public/base") == {"pull"}  # signed in, in no group
    assert policy.actions(None, "team-a/app") == set()
    assert policy.anonymous_allowed
    assert not USERS_MAY_DO_ALL.anonymous_allowed
    assert USERS_MAY_DO_ALL.actions("anyone", "x") == ALL
    assert USERS_MAY_DO_ALL.actions(None, "x") == set()


def test_scope_reduction_never_grants_more(policy: Policy) -> None:
    assert policy.grant("bob", "team-a/app", {"pull", "push", "delete"}) == {"pull", "push"}
    assert policy.grant("bob", "team-a/app", {"pull"}) == {"pull"}
    assert policy.grant(None, "public/base", {"push"}) == set()


def test_deny_rule_for_anonymous_only() -> None:
    policy = Policy.parse("""
rules:
  - {repositories: ["*"], users: ["*"], anonymous: true, actions: [pull]}
  - {repositories: ["private/*"], anonymous: true, deny: true, actions: [pull]}
""")
    assert policy.actions(None, "private/x") == set()
    assert policy.actions("bob", "private/x") == {"pull"}


@pytest.mark.parametrize(("text", "where"), [
    ("rules: [{repositories: ['*'], actions: [fly]}]", "rules.0.actions"),
    ("rules: [{repositories: [], actions: [pull]}]", "rules.0.repositories"),
    ("rules: [{repositories: ['*'], actions: [pull], color: red}]", "rules.0.color: unknown"),
    ("groups: [a, b]", "groups"),
    ("rules: [", "not valid YAML"),
])
def test_policy_errors_name_the_rule(text: str, where: str) -> None:
    with pytest.raises(PolicyError, match=where.replace(".", r"\.")):
        Policy.parse(text, "policy.yml")


def test_htpasswd_from_apache_htpasswd(tmp_path: Path) -> None:
    binary = shutil.which("htpasswd")
    if binary is None:
        pytest.skip("Apache's htpasswd is not installed (CI installs apache2-utils)")
    path = tmp_path / "htpasswd"
    subprocess.run([binary, "-cbB", "-C", "5", str(path), "alice", "s3cret"], check=True,
                   capture_output=True)
    subprocess.run([binary, "-bB", "-C", "5", str(path), "bob", "pä$$wörd"], check=True,
                   capture_output=True)
    users = Htpasswd.load(path)
    assert users.check("alice", "s3cret") and users.check("bob", "pä$$wörd")
    assert not users.check("alice", "S3cret") and not users.check("carol", "s3cret")
    assert users.fingerprint("alice") != users.fingerprint("bob")
    assert users.fingerprint("carol") is None


def test_htpasswd_refuses_what_is_not_bcrypt() -> None:
    with pytest.raises(HtpasswdError, match=r"htpasswd:2: bob's entry is not bcrypt"):
        Htpasswd.parse("# users\nbob:$apr1$abcdefgh$0123456789012345678901\n")
    with pytest.raises(HtpasswdError, match="htpasswd:1: expected user:hash"):
        Htpasswd.parse("just-a-name\n")
    assert Htpasswd.parse("\n# nobody yet\n").hashes == {}


def test_throttle_window_and_memory_bound() -> None:
    throttle = LoginThrottle(attempts=2, window=60, tracked=100)
    throttle.failed("bob", "10.0.0.1")
    assert throttle.retry_after("bob", "10.0.0.9") is None
    throttle.failed("bob", "10.0.0.2")
    wait = throttle.retry_after("bob", "10.0.0.9")
    assert wait is not None and 0 < wait <= 60
    assert throttle.retry_after("alice", "10.0.0.9") is None
    for i in range(1000):  # a flood of made-up names stays within the bound
        throttle.failed(f"user-{i}", None)
    assert len(throttle._failures) <= 100


def test_scopes_parse_and_print() -> None:
    scope = Scope.parse("repository:team/app:pull,push")
    assert (scope.type, scope.name, scope.actions) == ("repository", "team/app",
                                                       {"pull", "push"})
    assert Scope.parse("repository:localhost:5000/app:pull").name == "localhost:5000/app"
    assert str(Scope.parse(CATALOG_SCOPE)) == "registry:catalog:*"
    assert repository("a/b", "pull", "push") == "repository:a/b:pull,push"
    with pytest.raises(ScopeError):
        Scope.parse("repository-only")


@pytest.mark.parametrize(("files", "message"), [
    ({"htpasswd": "alice:plaintext\n"}, "alice's entry is not bcrypt"),
    ({"policy": "rules: [{repositories: ['*'], actions: [fly]}]"}, "rules.0.actions"),
    ({"signingkey": "not a key"}, "cannot read the signing key"),
])
def test_unusable_auth_files_stop_the_server_with_one_line(
    tmp_path: Path, files: dict[str, str], message: str,
) -> None:
    auth: dict[str, object] = {"htpasswd": {"path": str(tmp_path / "htpasswd")},
                               "token": {}}
    (tmp_path / "htpasswd").write_text(files.get("htpasswd", ""))
    if "policy" in files:
        (tmp_path / "policy.yml").write_text(files["policy"])
        auth["policy"] = str(tmp_path / "policy.yml")
    if "signingkey" in files:
        (tmp_path / "key.pem").write_text(files["signingkey"])
        auth["token"] = {"signingkey": str(tmp_path / "key.pem")}
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"auth": auth, "http": {"addr": "127.0.0.1:0"},
                                      "storage": {"inmemory": {}}}))
    result = subprocess.run([sys.executable, "-m", "client.cli", "serve", "--config",
                             str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
