"""Bearer tokens against a running `berth serve`: the built-in token server (GET and the
OAuth2 POST form, scope reduction, refresh tokens), and every way a token can be wrong.
Tokens the tests forge are signed with PyJWT, the same library the registry checks with,
but with keys and claims of the test's choosing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .authkit import (
    ISSUER,
    POLICY,
    SERVICE,
    USERS,
    basic,
    bearer,
    certificate,
    claims,
    sign,
    write_htpasswd,
    write_key,
    write_policy,
)
from .conftest import MakeBerth
from .helpers import digest, error_code, image, push_blob, put_manifest
from .servers import BerthServer


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def token_auth(directory: Path, signing_key: Any) -> dict[str, Any]:
    return {"auth": {
        "htpasswd": {"path": str(write_htpasswd(directory / "htpasswd", USERS))},
        "policy": str(write_policy(directory / "policy.yml", POLICY)),
        "token": {"service": SERVICE, "issuer": ISSUER,
                  "signingkey": str(write_key(directory / "signing.pem", signing_key))},
        "reloadinterval": "0.2s",
    }}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory,
           signing_key: ec.EllipticCurvePrivateKey) -> Iterator[BerthServer]:
    """One registry for the tests that touch only repositories of their own."""
    directory = tmp_path_factory.mktemp("token-registry")
    server = BerthServer(directory, token_auth(directory, signing_key)).start()
    yield server
    server.stop()


@pytest.fixture
def server(make_berth: MakeBerth, tmp_path: Path,
           signing_key: ec.EllipticCurvePrivateKey) -> BerthServer:
    """A registry of the test's own (its files change, or it lists the catalog)."""
    return make_berth(token_auth(tmp_path, signing_key))


def token_get(server: BerthServer, *scopes: str, user: str | None = None,
              **params: str) -> requests.Response:
    headers = basic(user, USERS.get(user, "wrong")) if user else {}
    query: list[tuple[str, str]] = [("service", SERVICE), *(("scope", s) for s in scopes),
                                    *params.items()]
    return requests.get(server.url + "/auth/token", params=query, headers=headers, timeout=30)


def token_for(server: BerthServer, *scopes: str, user: str | None = None) -> str:
    response = token_get(server, *scopes, user=user)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    return str(body["token"])


def access_of(token: str) -> dict[str, list[str]]:
    payload = jwt.decode(token, options={"verify_signature": False})
    return {f"{a['type']}:{a['name']}": sorted(a["actions"]) for a in payload["access"]}


def call(server: BerthServer, method: str, path: str, token: str | None,
         headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
    headers = {**(bearer(token) if token else {}), **(headers or {})}
    return requests.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def publish(server: BerthServer, repo: str, token: str) -> str:
    manifest = image(server.url, repo, headers=bearer(token))
    response = put_manifest(server.url, repo, "latest", manifest, headers=bearer(token))
    assert response.status_code == 201, response.text
    return digest(manifest)


def assert_challenge(response: requests.Response, scope: str | None,
                     error: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert error_code(response) == "UNAUTHORIZED"
    header = response.headers["WWW-Authenticate"]
    assert header.startswith('Bearer realm="http://127.0.0.1:') and "/auth/token" in header
    assert f'service="{SERVICE}"' in header
    if scope:
        assert f'scope="{scope}"' in header
    if error:
        assert f'error="{error}"' in header
    else:
        assert "error=" not in header


def test_challenge_then_token_then_push_and_pull(shared: BerthServer) -> None:
    assert_challenge(call(shared, "GET", "/v2/", None), None)
    assert_challenge(call(shared, "POST", "/v2/team-a/app/blobs/uploads/", None),
                     "repository:team-a/app:pull,push")
    token = token_for(shared, "repository:team-a/app:pull,push", user="bob")
    assert call(shared, "GET", "/v2/", token).status_code == 200
    manifest = publish(shared, "team-a/app", token)
    pulled = call(shared, "GET", f"/v2/team-a/app/manifests/{manifest}", token)
    assert pulled.status_code == 200
    assert call(shared, "GET", "/v2/team-a/app/tags/list", token).json()["tags"] == ["latest"]


def test_scope_requests_are_cut_down_to_the_policy(shared: BerthServer) -> None:
    token = token_for(shared, "repository:team-a/app:pull,push,delete",
                      "repository:admin/secret:pull", "repository:public/x:push,pull",
                      "registry:catalog:*", user="bob")
    assert access_of(token) == {
        "repository:team-a/app": ["pull", "push"],  # no delete
        "repository:public/x": ["pull"],  # no push
        "registry:catalog": ["*"],
    }  # and nothing on admin/secret
    anonymous = token_for(shared, "repository:public/x:pull,push", "repository:team-a/app:pull")
    assert access_of(anonymous) == {"repository:public/x": ["pull"]}
    assert jwt.decode(anonymous, options={"verify_signature": False})["sub"] == ""


def test_oauth2_password_and_refresh_grants(server: BerthServer, tmp_path: Path) -> None:
    def post(**form: str) -> requests.Response:
        return requests.post(server.url + "/auth/token", timeout=30,
                             data={"service": SERVICE, "client_id": "test", **form})

    granted = post(grant_type="password", username="carol", password=USERS["carol"],
                   access_type="offline", scope="repository:team-a/app:pull")
    assert granted.status_code == 200, granted.text
    refresh = granted.json()["refresh_token"]
    assert access_of(granted.json()["access_token"]) == {"repository:team-a/app": ["pull"]}
    renewed = post(grant_type="refresh_token", refresh_token=refresh,
                   scope="repository:team-a/app:pull,push")
    assert renewed.status_code == 200
    assert access_of(renewed.json()["access_token"]) == {"repository:team-a/app":
                                                         ["pull", "push"]}
    # A refresh token is not an access token.
    assert_challenge(call(server, "GET", "/v2/", refresh), None, "invalid_token")
    assert post(grant_type="password", username="carol", password="no").status_code == 401
    assert post(grant_type="password", username="zed", password="no").status_code == 401
    assert post(grant_type="client_credentials").status_code == 400
    # A new password ends the refresh token.
    write_htpasswd(tmp_path / "htpasswd", {**USERS, "carol": "carol-new-pw"})
    deadline = time.monotonic() + 10
    while post(grant_type="refresh_token", refresh_token=refresh).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert post(grant_type="refresh_token", refresh_token=refresh).status_code == 401


def test_get_with_offline_token_returns_a_refresh_token(shared: BerthServer) -> None:
    body = token_get(shared, "repository:team-a/app:pull", user="bob", offline_token="true")
    assert "refresh_token" in body.json()
    assert "refresh_token" not in token_get(shared, "repository:public/x:pull").json()


def test_bad_credentials_at_the_token_server(shared: BerthServer) -> None:
    for user, password in (("bob", "wrong"), ("nobody", "wrong")):
        response = requests.get(shared.url + "/auth/token", headers=basic(user, password),
                                params={"service": SERVICE, "scope": "repository:x/y:pull"},
                                timeout=30)
        assert response.status_code == 401 and error_code(response) == "UNAUTHORIZED"
    other = requests.get(shared.url + "/auth/token", params={"service": "elsewhere"}, timeout=30)
    assert other.status_code == 400
    garbage = requests.get(shared.url + "/auth/token", params={"scope": "nonsense"}, timeout=30)
    assert garbage.status_code == 400


# -- tokens that must be refused ---------------------------------------------------------


def test_pull_token_cannot_push_and_nothing_changes(shared: BerthServer) -> None:
    token = token_for(shared, "repository:team-a/readonly:pull", user="bob")
    refused = call(shared, "POST", "/v2/team-a/readonly/blobs/uploads/", token)
    assert_challenge(refused, "repository:team-a/readonly:pull,push", "insufficient_scope")
    refused = call(shared, "PUT", "/v2/team-a/readonly/manifests/latest", token, data=b"{}",
                   headers={"Content-Type": "application/json"})
    assert refused.status_code == 401
    assert not (shared.root / "docker/registry/v2/repositories/team-a/readonly").exists()


def test_token_for_another_repository(shared: BerthServer) -> None:
    token = token_for(shared, "repository:team-a/one:pull,push", user="bob")
    refused = call(shared, "GET", "/v2/team-a/two/tags/list", token)
    assert_challenge(refused, "repository:team-a/two:pull", "insufficient_scope")


def forged(signing_key: Any, repository: str = "team-a/forged", **changes: Any) -> str:
    payload = claims("alice", [("repository", repository, ["pull", "push"])])
    payload.update(changes)
    return sign(payload, signing_key)


@pytest.mark.parametrize("case", ["expired", "not-yet-valid", "audience", "issuer",
                                  "no-exp", "foreign-key", "tampered", "alg-none",
                                  "hmac-with-public-key", "garbage"])
def test_invalid_tokens_are_refused(shared: BerthServer, signing_key: Any, case: str) -> None:
    now = int(time.time())
    if case == "expired":
        token = forged(signing_key, exp=now - 300, iat=now - 900, nbf=now - 900)
    elif case == "not-yet-valid":
        token = forged(signing_key, nbf=now + 900)
    elif case == "audience":
        token = forged(signing_key, aud="another-registry")
    elif case == "issuer":
        token = forged(signing_key, iss="someone-else")
    elif case == "no-exp":
        payload = claims("alice", [("repository", "team-a/forged", ["pull"])])
        del payload["exp"]
        token = sign(payload, signing_key)
    elif case == "foreign-key":
        token = forged(ec.generate_private_key(ec.SECP256R1()))
    elif case == "tampered":
        header, payload, signature = forged(signing_key).split(".")
        body = json.loads(base64.urlsafe_b64decode(payload + "=="))
        body["access"][0]["name"] = "admin/secret"
        payload = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
        token = f"{header}.{payload}.{signature}"
    elif case == "alg-none":
        token = jwt.encode(claims("alice", [("repository", "team-a/forged", ["pull"])]),
                           None, algorithm="none")
    elif case == "hmac-with-public-key":  # the classic algorithm confusion
        public = signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(
            claims("alice", [("repository", "team-a/forged", ["pull"])])).encode()).rstrip(b"=")
        mac = hmac.new(public, header + b"." + body, hashlib.sha256).digest()
        token = (header + b"." + body + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")
                 ).decode()
    else:
        token = "not.a.token"
    response = call(shared, "GET", "/v2/team-a/forged/tags/list", token)
    assert_challenge(response, "repository:team-a/forged:pull", "invalid_token")
    pushed = call(shared, "POST", "/v2/team-a/forged/blobs/uploads/", token)
    assert pushed.status_code == 401
    assert not (shared.root / "docker/registry/v2/repositories/team-a/forged").exists()


def test_forged_token_with_the_right_key_is_accepted(shared: BerthServer,
                                                     signing_key: Any) -> None:
    """The control for the refusals above: the same forging, correct claims, works."""
    token = forged(signing_key, "team-a/control")
    assert call(shared, "POST", "/v2/team-a/control/blobs/uploads/", token).status_code == 202


def test_mount_needs_pull_on_the_source_in_the_token(shared: BerthServer) -> None:
    alice = token_for(shared, "repository:admin/secret:pull,push", user="alice")
    secret = push_blob(shared.url, "admin/secret", b"secret layer", bearer(alice))
    bob = token_for(shared, "repository:team-a/mounted:pull,push",
                    "repository:admin/secret:pull", user="bob")  # cut to team-a only
    response = call(shared, "POST", f"/v2/team-a/mounted/blobs/uploads/?mount={secret}"
                    "&from=admin/secret", bob)
    assert response.status_code == 202
    assert call(shared, "HEAD", f"/v2/team-a/mounted/blobs/{secret}", bob).status_code == 404
    both = token_for(shared, "repository:team-a/mounted:pull,push",
                     "repository:admin/secret:pull", user="alice")
    response = call(shared, "POST", f"/v2/team-a/mounted/blobs/uploads/?mount={secret}"
                    "&from=admin/secret", both)
    assert response.status_code == 201


def test_catalog_with_a_token_is_filtered(server: BerthServer) -> None:
    alice = token_for(server, "repository:admin/secret:pull,push",
                      "repository:public/base:pull,push", user="alice")
    publish(server, "admin/secret", alice)
    publish(server, "public/base", alice)
    bob = token_for(server, "registry:catalog:*", user="bob")
    assert call(server, "GET", "/v2/_catalog", bob).json() == {"repositories": ["public/base"]}
    anonymous = token_for(server, "registry:catalog:*")
    assert call(server, "GET", "/v2/_catalog", anonymous).json() == {
        "repositories": ["public/base"]}
    # Anonymous pulls of public repositories work even without a token.
    assert call(server, "GET", "/v2/public/base/manifests/latest", None).status_code == 200


# -- an external issuer ------------------------------------------------------------------


def test_external_issuer_with_jwks_and_certificates(make_berth: MakeBerth,
                                                    tmp_path: Path) -> None:
    ed_key = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed_key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "ed-1"}]}))
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = certificate(ca_key, "token CA")
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = certificate(leaf_key, "token signer", ca=False, issuer=(ca, ca_key))
    (tmp_path / "bundle.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = make_berth({"auth": {"token": {
        "realm": "https://auth.example.com/token", "service": SERVICE, "issuer": ISSUER,
        "builtin": False, "jwks": str(tmp_path / "jwks.json"),
        "rootcertbundle": str(tmp_path / "bundle.pem")}}})
    challenge = call(server, "GET", "/v2/", None)
    assert challenge.headers["WWW-Authenticate"].startswith(
        'Bearer realm="https://auth.example.com/token"')
    scope = [("repository", "ext/app", ["pull", "push"])]
    by_kid = sign(claims("eve", scope), ed_key, "EdDSA", kid="ed-1")
    assert call(server, "POST", "/v2/ext/app/blobs/uploads/", by_kid).status_code == 202
    assert call(server, "GET", "/auth/token", None).status_code == 401  # behind the gate
    assert call(server, "GET", "/auth/token", by_kid).status_code == 404  # and not served
    x5c = [base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()]
    by_chain = sign(claims("eve", scope), leaf_key, "ES384", x5c=x5c)
    assert call(server, "POST", "/v2/ext/app/blobs/uploads/", by_chain).status_code == 202
    by_ca = sign(claims("eve", scope), ca_key, "RS256")  # the CA's own key is trusted too
    assert call(server, "POST", "/v2/ext/app/blobs/uploads/", by_ca).status_code == 202
    # A self-made certificate in x5c is not trusted, whatever it claims.
    rogue_key = ec.generate_private_key(ec.SECP384R1())
    rogue = certificate(rogue_key, "token signer", ca=False)
    x5c = [base64.b64encode(rogue.public_bytes(serialization.Encoding.DER)).decode()]
    refused = call(server, "POST", "/v2/ext/app/blobs/uploads/",
                   sign(claims("eve", scope), rogue_key, "ES384", x5c=x5c))
    assert refused.status_code == 401 and "not trusted" in refused.text, refused.text
    # Without a local policy, an external token's catalog lists everything.
    catalog = sign(claims("eve", [("registry", "catalog", ["*"])]), ed_key, "EdDSA", kid="ed-1")
    assert call(server, "GET", "/v2/_catalog", catalog).status_code == 200


def test_a_token_stops_working_when_it_expires(make_berth: MakeBerth, tmp_path: Path,
                                               signing_key: Any) -> None:
    """Accepted tokens are remembered between requests, but not past their expiry."""
    config = token_auth(tmp_path, signing_key)
    config["auth"]["token"]["leeway"] = 0
    server = make_berth(config)
    token = sign(claims("alice", [("repository", "team-a/brief", ["pull"])], lifetime=2),
                 signing_key)
    assert call(server, "GET", "/v2/team-a/brief/tags/list", token).status_code == 404
    time.sleep(2.5)
    expired = call(server, "GET", "/v2/team-a/brief/tags/list", token)
    assert_challenge(expired, "repository:team-a/brief:pull", "invalid_token")
    assert "expired" in expired.text


def test_replicas_sharing_a_signing_key_accept_each_others_tokens(
    make_berth: MakeBerth, tmp_path: Path, signing_key: Any,
) -> None:
    config = token_auth(tmp_path, signing_key)
    config["storage"] = {"filesystem": {"rootdirectory": str(tmp_path / "shared-root")}}
    a, b = make_berth(config), make_berth(config)
    token = token_for(a, "repository:team-a/both:pull,push", user="bob")
    location = call(a, "POST", "/v2/team-a/both/blobs/uploads/", token).headers["Location"]
    assert call(b, "GET", location, token).status_code == 204  # the session, via the other
    (tmp_path / "elsewhere").mkdir()  # a registry with a key of its own refuses it
    c = make_berth(token_auth(tmp_path / "elsewhere", ec.generate_private_key(ec.SECP256R1())))
    assert call(c, "GET", "/v2/team-a/both/tags/list", token).status_code == 401


def test_token_form_that_stops_arriving(make_berth: MakeBerth, tmp_path: Path,
                                        signing_key: ec.EllipticCurvePrivateKey) -> None:
    """A POST to the token server whose form stops mid-way ends after http.bodytimeout
    (issue 9, item 6), as any other request body does."""
    config = token_auth(tmp_path, signing_key)
    config["http"] = {"bodytimeout": "1s"}
    server = make_berth(config)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type=")
        sock.settimeout(20)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
