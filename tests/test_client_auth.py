"""The client's authentication against real servers.

* docker-registry (CNCF distribution) with htpasswd (bcrypt) Basic auth: library and CLI
  (`login`/`logout`, `--authfile`, `--creds`);
* docker-registry with token auth, the tokens issued by a token server run here (Docker
  registry token specification: GET /token?service=…&scope=… with Basic credentials,
  RS256 JWTs whose `x5c` header chains to the registry's `auth.token.rootcertbundle`),
  which grants each user only the actions its ACL allows;
* credentials from a Docker config file through a `docker-credential-*` helper
  (`credHelpers`, `credsStore`), including `login` (store) and `logout` (erase).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from client.auth import Credentials
from client.client import Client
from client.errors import AuthError
from client.oci.descriptor import Descriptor
from client.oci.digest import Digest
from client.oci.reference import Reference

from .helpers import OCI_INDEX, OCI_MANIFEST
from .layouts import Layout, build_image, build_index
from .servers import ROOT, DistributionServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        DistributionServer.binary is None,
        reason="docker-registry (CNCF distribution) is not installed: apt-get install "
               "docker-registry",
    ),
]

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
SERVICE = "berth-test-registry"
ISSUER = "berth-test-token-issuer"
REFRESH_TOKENS = {"alice-refresh-token": "alice"}  # OAuth2 refresh tokens (`identitytoken`)
LEEWAY = 60  # distribution accepts a token up to 60 s past its `exp` (token.go, Leeway)
# The token server's ACL: user (None: anonymous) -> repository prefix -> allowed actions.
ACL: dict[str | None, dict[str, set[str]]] = {
    "alice": {"team/": {"pull", "push"}, "public/": {"pull", "push"}},
    "bob": {"team/": {"pull"}, "public/": {"pull"}},
    None: {"public/": {"pull"}},
}


# -- servers ---------------------------------------------------------------------------------


class AuthDistribution(DistributionServer):
    """docker-registry with an `auth` section (htpasswd or token) in its config."""

    def __init__(self, workdir: Path, auth: dict[str, Any]) -> None:
        super().__init__(workdir, {"auth": auth, "log": {"accesslog": {"disabled": False}}})

    def requests_from_berth(self) -> int:
        """Requests the Berth client made so far (access log lines with its User-Agent)."""
        time.sleep(0.2)  # the access log line is written as the handler returns
        return sum('"berth/' in line for line in self.log.read_text().splitlines())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    user: str | None  # None: anonymous
    service: str | None
    scopes: list[str]
    query: dict[str, list[str]]  # with the form fields of a POST
    method: str
    granted: list[dict[str, Any]] = field(default_factory=list)
    token: str = ""
    at: float = field(default_factory=time.monotonic)


class TokenServer:
    """A token server after https://distribution.github.io/distribution/spec/auth/token/,
    in a thread on a loopback port. It records every request it answers."""

    def __init__(self, workdir: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = workdir / "token-root.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.lock = threading.Lock()
        self.requests: list[TokenRequest] = []
        self.failures: list[str | None] = []  # users refused (401)
        self.reset()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.handle(self, "GET")

            def do_POST(self) -> None:
                owner.handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.failures.clear()
        self.expires_in = 300  # what the client is told
        self.registry_lifetime: float | None = None  # when the registry refuses it, if sooner

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def realm(self) -> str:
        # a realm with a query of its own: the client must add to it, not replace it
        return f"http://127.0.0.1:{self.port}/token?origin=berth-tests"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _user(self, header: str | None) -> str | bool | None:
        """The authenticated user, None when anonymous, False for bad credentials."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return user if USERS.get(user) == password else False

    @staticmethod
    def grant(user: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        allowed: set[str] = set()
        for prefix, actions_allowed in ACL.get(user, {}).items():
            if name.startswith(prefix):
                allowed |= actions_allowed
        granted = [a for a in actions.split(",") if a in allowed]
        return {"type": kind, "name": name, "actions": granted}

    def jwt(self, claims: dict[str, Any]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def handle(self, http: BaseHTTPRequestHandler, method: str) -> None:
        """GET: the token spec (Basic credentials or none, `scope` repeated); POST: the
        OAuth2 refresh-token grant of the same spec family (form body, `scope` joined by
        spaces), answered with `access_token` alone."""
        url = urlsplit(http.path)
        if url.path != "/token":
            http.send_error(404)
            return
        query = parse_qs(url.query, keep_blank_values=True)
        user: str | bool | None
        if method == "POST":
            length = int(http.headers.get("Content-Length") or 0)
            form = parse_qs(http.rfile.read(length).decode(), keep_blank_values=True)
            query.update(form)
            refresh = form.get("refresh_token", [""])[0]
            grant_ok = form.get("grant_type") == ["refresh_token"]
            user = REFRESH_TOKENS.get(refresh, False) if grant_ok else False
            scopes = " ".join(form.get("scope", [])).split()
        else:
            user = self._user(http.headers.get("Authorization"))
            scopes = query.get("scope", [])
        if user is False:
            with self.lock:
                self.failures.append(http.headers.get("Authorization"))
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                           "message": "invalid username or password"}]})
            self._reply(http, 401, body, {"WWW-Authenticate": 'Basic realm="berth-tests"'})
            return
        assert user is None or isinstance(user, str)
        service = query.get("service", [None])[0]
        access = [g for g in (self.grant(user, s) for s in scopes) if g is not None]
        clock = time.time()
        now = int(clock)
        lifetime = self.registry_lifetime or self.expires_in
        claims = {
            "iss": ISSUER, "sub": user or "", "aud": service or "", "iat": now, "nbf": now,
            # the registry adds its leeway to `exp`: take it off so that the token really
            # stops working `lifetime` seconds (and less than one more) after it was issued
            "exp": math.ceil(clock + lifetime) - LEEWAY, "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = self.jwt(claims)
        with self.lock:
            self.requests.append(
                TokenRequest(user, service, scopes, query, method, access, token))
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer: dict[str, Any] = {"access_token": token, "expires_in": self.expires_in,
                                  "issued_at": issued}
        if method == "GET":
            answer["token"] = token
        else:
            answer["scope"] = " ".join(scopes)
        self._reply(http, 200, json.dumps(answer))

    @staticmethod
    def _reply(http: BaseHTTPRequestHandler, status: int, body: str,
               headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            http.send_header(key, value)
        http.end_headers()
        http.wfile.write(data)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_user_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read (or write) the credentials of whoever runs the tests."""
    docker_config = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    return docker_config


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthDistribution]:
    workdir = tmp_path_factory.mktemp("htpasswd")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text("".join(
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"
        for user, password in USERS.items()
    ))
    server = AuthDistribution(
        workdir, {"htpasswd": {"realm": "berth-tests", "path": str(htpasswd)}}
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TokenServer, AuthDistribution]]:
    workdir = tmp_path_factory.mktemp("token")
    tokens = TokenServer(workdir)
    server = AuthDistribution(workdir, {"token": {
        "realm": tokens.realm, "service": SERVICE, "issuer": ISSUER,
        "rootcertbundle": str(tokens.cert_file),
    }})
    try:
        server.start()
        yield tokens, server
    finally:
        server.stop()
        tokens.stop()


@pytest.fixture
def tokens(token_pair: tuple[TokenServer, AuthDistribution]) -> TokenServer:
    token_pair[0].reset()
    return token_pair[0]


@pytest.fixture
def token_registry(token_pair: tuple[TokenServer, AuthDistribution]) -> AuthDistribution:
    return token_pair[1]


@pytest.fixture
def layout(tmp_path: Path, request: pytest.FixtureRequest) -> Layout:
    src = Layout.create(tmp_path / "src")
    image = build_image(src, request.node.name)
    src.tag("v1", OCI_MANIFEST, image.manifest)
    return src


def alice() -> Credentials:
    return Credentials("alice", USERS["alice"])


def bob() -> Credentials:
    return Credentials("bob", USERS["bob"])


def blob_names(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "blobs").rglob("*") if p.is_file()}


def one_line_naming(message: str, host: str) -> None:
    assert message.strip() and "\n" not in message.strip(), message
    assert host in message, message
    assert "Traceback" not in message, message


def run_berth(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return subprocess.run([sys.executable, "-m", "client.cli", *map(str, args)], cwd=ROOT,
                          text=True, capture_output=True, timeout=120, env=env, input=stdin)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, host: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    one_line_naming(result.stderr, host)
    assert result.stderr.startswith("berth: error: "), result.stderr


# -- htpasswd (Basic) --------------------------------------------------------------------------


async def test_basic_push_and_pull(basic_registry: AuthDistribution, repo: str, layout: Layout,
                                   tmp_path: Path) -> None:
    host = basic_registry.host
    entry = layout.resolve("v1")
    async with Client(credentials={host: alice()}) as client:
        pushed = await client.copy(f"oci:{layout.root}:v1", f"{host}/{repo}:v1")
        out = tmp_path / "out"
        pulled = await client.copy(f"{host}/{repo}:v1", f"oci:{out}:v1")
    assert pushed.digest == pulled.digest == entry["digest"]
    assert set(pushed.blobs.values()) == {"uploaded"}
    assert blob_names(out) == blob_names(layout.root)
    # the registry really wants credentials, and holds the manifest byte for byte
    url = f"{basic_registry.url}/v2/{repo}/manifests/v1"
    headers = {"Accept": OCI_MANIFEST}
    assert requests.get(url, headers=headers, timeout=10).status_code == 401
    served = requests.get(url, headers=headers, auth=("alice", USERS["alice"]), timeout=10)
    assert served.content == layout.blob(entry["digest"])


async def test_basic_wrong_or_missing_password(basic_registry: AuthDistribution, repo: str,
                                               layout: Layout) -> None:
    host = basic_registry.host
    wrong = Credentials("alice", "not-her-password")
    async with Client(credentials={host: wrong}) as client:
        with pytest.raises(AuthError) as refused:
            await asyncio.wait_for(
                client.copy(f"oci:{layout.root}:v1", f"{host}/{repo}:v1"), 30)
    one_line_naming(str(refused.value), host)
    async with Client() as client:  # no credentials anywhere (DOCKER_CONFIG is empty)
        with pytest.raises(AuthError) as anonymous:
            await asyncio.wait_for(
                client.copy(f"oci:{layout.root}:v1", f"{host}/{repo}:v1"), 30)
    one_line_naming(str(anonymous.value), host)
    listed = requests.get(f"{basic_registry.url}/v2/{repo}/tags/list",
                          auth=("alice", USERS["alice"]), timeout=10)
    assert listed.status_code == 404  # nothing was pushed


def test_cli_login_push_copy_logout(basic_registry: AuthDistribution, repo: str,
                                    layout: Layout, tmp_path: Path) -> None:
    host = basic_registry.host
    authfile = tmp_path / "auth" / "config.json"
    ref = f"{host}/{repo}:v1"

    refused = run_berth("login", host, "-u", "alice", "--password-stdin",
                        "--authfile", authfile, stdin="wrong\n")
    one_line_error(refused, 3, host)
    assert not authfile.exists()

    login = run_berth("login", host, "-u", "alice", "--password-stdin",
                      "--authfile", authfile, stdin=USERS["alice"] + "\n")
    assert login.returncode == 0, login.stderr
    assert "Login succeeded" in login.stdout
    saved = authfile.read_bytes()
    entry = json.loads(saved)["auths"][host]
    assert base64.b64decode(entry["auth"]).decode() == f"alice:{USERS['alice']}"
    assert authfile.stat().st_mode & 0o077 == 0  # not readable by others

    again = run_berth("login", host, "-u", "alice", "--password-stdin",
                      "--authfile", authfile, stdin="wrong\n")
    one_line_error(again, 3, host)
    assert authfile.read_bytes() == saved  # a failed login changes nothing

    pushed = run_berth("push", f"oci:{layout.root}:v1", ref, "--authfile", authfile, "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["digest"] == layout.resolve("v1")["digest"]
    out = tmp_path / "out"
    copied = run_berth("copy", ref, f"oci:{out}:v1", "--authfile", authfile, "-q")
    assert copied.returncode == 0, copied.stderr
    assert blob_names(out) == blob_names(layout.root)

    logout = run_berth("logout", host, "--authfile", authfile)
    assert logout.returncode == 0, logout.stderr
    assert host not in json.loads(authfile.read_text()).get("auths", {})
    twice = run_berth("logout", host, "--authfile", authfile)
    one_line_error(twice, 1, host)


async def test_cli_creds(basic_registry: AuthDistribution, repo: str, layout: Layout,
                         tmp_path: Path) -> None:
    host = basic_registry.host
    ref = f"{host}/{repo}:v1"
    async with Client(credentials={host: alice()}) as client:
        await client.copy(f"oci:{layout.root}:v1", ref)
    none = tmp_path / "none.json"
    by_creds = run_berth("copy", ref, f"oci:{tmp_path / 'bob'}:v1", "-q",
                         "--creds", f"bob:{USERS['bob']}", "--authfile", none)
    assert by_creds.returncode == 0, by_creds.stderr
    assert blob_names(tmp_path / "bob") == blob_names(layout.root)
    bad_creds = run_berth("copy", ref, f"oci:{tmp_path / 'bad'}:v1", "-q",
                          "--creds", "bob:wrong", "--authfile", none)
    one_line_error(bad_creds, 3, host)
    anonymous = run_berth("copy", ref, f"oci:{tmp_path / 'anon'}:v1", "-q", "--authfile", none)
    one_line_error(anonymous, 3, host)


# -- token auth --------------------------------------------------------------------------------


async def test_token_push_as_alice_pull_as_bob(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, layout: Layout,
    tmp_path: Path,
) -> None:
    host, name = token_registry.host, f"team/{repo}"
    async with Client(credentials={host: alice()}) as client:
        pushed = await client.copy(f"oci:{layout.root}:v1", f"{host}/{name}:v1")
    assert pushed.digest == layout.resolve("v1")["digest"]
    alice_scopes = {s for r in tokens.requests if r.user == "alice" for s in r.scopes}
    assert f"repository:{name}:pull,push" in alice_scopes
    assert all(r.service == SERVICE for r in tokens.requests)
    # the realm's own query survives
    assert all(r.query.get("origin") == ["berth-tests"] for r in tokens.requests)

    out = tmp_path / "out"
    async with Client(credentials={host: bob()}) as client:
        pulled = await client.copy(f"{host}/{name}:v1", f"oci:{out}:v1")
    assert pulled.digest == pushed.digest
    assert blob_names(out) == blob_names(layout.root)
    bob_requests = [r for r in tokens.requests if r.user == "bob"]
    assert bob_requests
    assert {s for r in bob_requests for s in r.scopes} == {f"repository:{name}:pull"}

    # bob may pull but not push: refused promptly, as an AuthError naming the registry
    async with Client(credentials={host: bob()}) as client:
        with pytest.raises(AuthError) as refused:
            await asyncio.wait_for(
                client.copy(f"oci:{layout.root}:v1", f"{host}/{name}-bob:v1"), 30)
    one_line_naming(str(refused.value), host)
    asked = [r for r in tokens.requests if r.user == "bob"
             and f"repository:{name}-bob:pull,push" in r.scopes]
    assert asked and all(g["actions"] == ["pull"] for r in asked for g in r.granted)
    listed = requests.get(f"{token_registry.url}/v2/_catalog", timeout=10)
    assert listed.status_code == 401  # (the registry is really closed to the anonymous)


async def test_token_wrong_password_and_anonymous(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, layout: Layout,
    tmp_path: Path,
) -> None:
    host = token_registry.host
    wrong = Credentials("alice", "not-her-password")
    async with Client(credentials={host: wrong}) as client:
        with pytest.raises(AuthError) as refused:
            await asyncio.wait_for(
                client.copy(f"oci:{layout.root}:v1", f"{host}/team/{repo}:v1"), 30)
    one_line_naming(str(refused.value), host)
    assert tokens.failures and not tokens.requests

    # the anonymous may pull public/* (the token server is asked without credentials)…
    public = f"public/{repo}"
    async with Client(credentials={host: alice()}) as client:
        await client.copy(f"oci:{layout.root}:v1", f"{host}/{public}:v1")
    tokens.reset()
    async with Client() as client:
        pulled = await client.copy(f"{host}/{public}:v1", f"oci:{tmp_path / 'out'}:v1")
        assert pulled.digest == layout.resolve("v1")["digest"]
        # …but not push, nor pull from team/*
        with pytest.raises(AuthError) as push:
            await asyncio.wait_for(
                client.copy(f"oci:{layout.root}:v1", f"{host}/{public}:v2"), 30)
        one_line_naming(str(push.value), host)
        with pytest.raises(AuthError) as pull:
            await asyncio.wait_for(
                client.copy(f"{host}/team/{repo}:v1", f"oci:{tmp_path / 'no'}:v1"), 30)
        one_line_naming(str(pull.value), host)
    assert tokens.requests and all(r.user is None for r in tokens.requests)


async def test_token_scopes_of_a_cross_repository_mount(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, layout: Layout,
) -> None:
    host = token_registry.host
    source, target = f"team/{repo}-src", f"team/{repo}-dst"
    async with Client(credentials={host: alice()}) as client:
        await client.copy(f"oci:{layout.root}:v1", f"{host}/{source}:v1")
        tokens.reset()
        result = await client.copy(f"{host}/{source}:v1", f"{host}/{target}:v1")
    assert set(result.blobs.values()) == {"mounted"}
    scope_sets = [set(r.scopes) for r in tokens.requests]
    # one token for both: push on the target and pull on the source of the mount
    assert {f"repository:{target}:pull,push", f"repository:{source}:pull"} in scope_sets
    headers = {"Accept": OCI_MANIFEST}
    manifest = requests.get(f"{token_registry.url}/v2/{target}/manifests/v1", headers=headers,
                            timeout=10)
    assert manifest.status_code == 401


async def test_token_cached_per_scope_set(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, tmp_path: Path,
) -> None:
    """A push of eight blobs and three manifests, four blobs at a time: one token per
    scope set, however many requests (and however many in parallel) use it."""
    host, name = token_registry.host, f"team/{repo}"
    src = Layout.create(tmp_path / "src")
    images = [build_image(src, "tok-a", "amd64"), build_image(src, "tok-b", "arm64", "v8")]
    src.tag("multi", OCI_INDEX, build_index(src, images))
    before = token_registry.requests_from_berth()
    async with Client(credentials={host: alice()}) as client:
        result = await client.copy(f"oci:{src.root}:multi", f"{host}/{name}:multi")
    assert set(result.blobs.values()) == {"uploaded"} and len(result.blobs) == 8
    made = token_registry.requests_from_berth() - before
    fetched = len(tokens.requests)
    scope_sets = {tuple(sorted(r.scopes)) for r in tokens.requests}
    assert made >= 3 * 8  # HEAD, POST and PUT for each blob at least
    assert fetched * 3 <= made, f"{fetched} token requests for {made} registry requests"
    # concurrent requests needing the same scopes share one token request
    assert fetched == len(scope_sets), (
        f"{fetched} token requests for {len(scope_sets)} scope sets over {made} registry "
        f"requests: {[r.scopes for r in tokens.requests]}"
    )


async def test_token_short_lifetime_is_renewed(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, layout: Layout,
    tmp_path: Path,
) -> None:
    host, name = token_registry.host, f"team/{repo}"
    tokens.expires_in = 2
    async with Client(credentials={host: alice()}) as client:
        await client.copy(f"oci:{layout.root}:v1", f"{host}/{name}:v1")
        first = tokens.requests[0].token
        fetched = len(tokens.requests)
        await asyncio.sleep(3)
        pulled = await client.copy(f"{host}/{name}:v1", f"oci:{tmp_path / 'out'}:v1")
    assert pulled.digest == layout.resolve("v1")["digest"]
    assert len(tokens.requests) > fetched  # a new token, not a failure
    # and the old one really had expired at the registry
    stale = requests.get(f"{token_registry.url}/v2/{name}/tags/list", timeout=10,
                         headers={"Authorization": f"Bearer {first}"})
    assert stale.status_code == 401


async def test_token_refused_before_its_time_is_renewed(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, layout: Layout,
    tmp_path: Path,
) -> None:
    """The client is told 300 s, the registry stops taking the token after 3 s (a revoked
    token, a skewed clock): the 401 makes the client fetch a new one and carry on."""
    host, name = token_registry.host, f"team/{repo}"
    tokens.registry_lifetime = 3
    async with Client(credentials={host: alice()}) as client:
        await client.copy(f"oci:{layout.root}:v1", f"{host}/{name}:v1")
        fetched = len(tokens.requests)
        await asyncio.sleep(4.1)
        pulled = await client.copy(f"{host}/{name}:v1", f"oci:{tmp_path / 'out'}:v1")
    assert pulled.digest == layout.resolve("v1")["digest"]
    assert len(tokens.requests) > fetched


async def test_token_refused_during_an_upload_is_renewed(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str,
) -> None:
    """The same, while a blob upload waits for its source (which stalls once) between the
    POST that opens the upload and the PUT that sends the bytes: the PUT is refused with
    401, and a new token must be fetched for it rather than the push failing."""
    host, name = token_registry.host, f"team/{repo}"
    tokens.registry_lifetime = 2
    data = b"a blob from a source that stalls"
    desc = Descriptor("application/octet-stream", Digest.from_bytes(data), len(data))
    opened: list[int] = []

    async def slow_source(offset: int) -> AsyncIterator[bytes]:
        opened.append(offset)
        if len(opened) == 1:
            await asyncio.sleep(3.1)
        yield data[offset:]

    async with Client(credentials={host: alice()}) as client:
        repository = client.repository(Reference.parse(f"{host}/{name}:v1"))
        await asyncio.wait_for(repository.upload_blob(desc, slow_source), 30)
        assert await repository.blob_size(desc.digest) == len(data)


def test_cli_login_against_a_token_registry(token_registry: AuthDistribution,
                                            tokens: TokenServer, tmp_path: Path) -> None:
    host = token_registry.host
    authfile = tmp_path / "config.json"
    refused = run_berth("login", host, "-u", "bob", "--password-stdin", "--authfile", authfile,
                        stdin="wrong\n")
    one_line_error(refused, 3, host)
    assert not authfile.exists()
    login = run_berth("login", host, "-u", "bob", "--password-stdin", "--authfile", authfile,
                      stdin=USERS["bob"] + "\n")
    assert login.returncode == 0, login.stderr
    assert host in json.loads(authfile.read_text())["auths"]
    assert [r.user for r in tokens.requests] == ["bob"]


async def test_token_identity_token_from_the_config_file(
    token_registry: AuthDistribution, tokens: TokenServer, repo: str, layout: Layout,
    tmp_path: Path,
) -> None:
    """An `identitytoken` in config.json is an OAuth2 refresh token: the client POSTs the
    refresh-token grant and uses the `access_token` of the answer (no `token` field)."""
    host, name = token_registry.host, f"team/{repo}"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {host: {"identitytoken": "alice-refresh-token"}}}))
    async with Client(auth_file=config) as client:
        pushed = await client.copy(f"oci:{layout.root}:v1", f"{host}/{name}:v1")
    assert pushed.digest == layout.resolve("v1")["digest"]
    assert tokens.requests and {r.method for r in tokens.requests} == {"POST"}
    assert {r.user for r in tokens.requests} == {"alice"}
    assert f"repository:{name}:pull,push" in {s for r in tokens.requests for s in r.scopes}
    assert all(r.query.get("service") == [SERVICE] for r in tokens.requests)

    config.write_text(json.dumps({"auths": {host: {"identitytoken": "revoked"}}}))
    async with Client(auth_file=config) as client:
        with pytest.raises(AuthError) as refused:
            await asyncio.wait_for(client.tags(f"{host}/{name}"), 30)
    one_line_naming(str(refused.value), host)


# -- credential helpers ------------------------------------------------------------------------

HELPER = """\
#!{python}
import json, os, sys

action = sys.argv[1]
data = sys.stdin.read()
with open(os.environ["BERTHTEST_LOG"], "a") as log:
    log.write(json.dumps({{"action": action, "input": data}}) + "\\n")
path = os.environ["BERTHTEST_STORE"]
store = json.load(open(path)) if os.path.exists(path) else {{}}
if action == "get":
    server = data.strip()
    if server not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": server, **store[server]}}))
elif action == "store":
    request = json.loads(data)
    store[request["ServerURL"]] = {{"Username": request["Username"],
                                   "Secret": request["Secret"]}}
elif action == "erase":
    store.pop(data.strip(), None)
elif action == "list":
    print(json.dumps({{k: v["Username"] for k, v in store.items()}}))
else:
    print("unknown action", action)
    sys.exit(1)
json.dump(store, open(path, "w"))
"""


@dataclass
class Helper:
    store_file: Path
    log_file: Path

    def store(self) -> dict[str, dict[str, str]]:
        if not self.store_file.exists():
            return {}
        return dict(json.loads(self.store_file.read_text()))

    def calls(self) -> list[tuple[str, str]]:
        if not self.log_file.exists():
            return []
        return [(c["action"], c["input"]) for c in map(json.loads,
                                                         self.log_file.read_text().splitlines())]


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helper:
    """`docker-credential-berthtest` first on PATH, keeping its store in a JSON file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-berthtest"
    script.write_text(HELPER.format(python=sys.executable))
    script.chmod(0o755)
    found = Helper(tmp_path / "helper-store.json", tmp_path / "helper-calls.log")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("BERTHTEST_STORE", str(found.store_file))
    monkeypatch.setenv("BERTHTEST_LOG", str(found.log_file))
    return found


async def test_cred_helpers_entry_is_asked(basic_registry: AuthDistribution, helper: Helper,
                                           repo: str, layout: Layout, tmp_path: Path) -> None:
    host = basic_registry.host
    helper.store_file.write_text(json.dumps(
        {host: {"Username": "alice", "Secret": USERS["alice"]}}))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "auths": {host: {"auth": base64.b64encode(b"alice:stale").decode()}},
        "credHelpers": {host: "berthtest", "elsewhere.example": "absent"},
    }))
    async with Client(auth_file=config) as client:
        pushed = await client.copy(f"oci:{layout.root}:v1", f"{host}/{repo}:v1")
        pulled = await client.copy(f"{host}/{repo}:v1", f"oci:{tmp_path / 'out'}:v1")
    assert pushed.digest == pulled.digest == layout.resolve("v1")["digest"]
    assert helper.calls() == [("get", host)]  # asked once per registry, before `auths`

    # the helper's answer is what counts: a wrong secret there is refused
    helper.store_file.write_text(json.dumps({host: {"Username": "alice", "Secret": "no"}}))
    async with Client(auth_file=config) as client:
        with pytest.raises(AuthError) as refused:
            await asyncio.wait_for(client.tags(f"{host}/{repo}"), 30)
    one_line_naming(str(refused.value), host)


def test_creds_store_login_and_logout(basic_registry: AuthDistribution, helper: Helper,
                                      repo: str, layout: Layout, tmp_path: Path) -> None:
    host = basic_registry.host
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "berthtest"}))
    original = config.read_bytes()

    refused = run_berth("login", host, "-u", "alice", "--password-stdin", "--authfile", config,
                        stdin="wrong\n")
    one_line_error(refused, 3, host)
    assert [a for a, _ in helper.calls()] == [] and helper.store() == {}

    login = run_berth("login", host, "-u", "alice", "--password-stdin", "--authfile", config,
                      stdin=USERS["alice"] + "\n")
    assert login.returncode == 0, login.stderr
    assert "docker-credential-berthtest" in login.stdout
    stored = [json.loads(data) for action, data in helper.calls() if action == "store"]
    assert stored == [{"ServerURL": host, "Username": "alice", "Secret": USERS["alice"]}]
    assert helper.store() == {host: {"Username": "alice", "Secret": USERS["alice"]}}
    assert config.read_bytes() == original  # the password is not in the file

    pushed = run_berth("push", f"oci:{layout.root}:v1", f"{host}/{repo}:v1", "-q",
                       "--authfile", config)
    assert pushed.returncode == 0, pushed.stderr
    assert ("get", host) in helper.calls()

    logout = run_berth("logout", host, "--authfile", config)
    assert logout.returncode == 0, logout.stderr
    assert ("erase", host) in helper.calls()
    assert helper.store() == {}
    after = run_berth("copy", f"{host}/{repo}:v1", f"oci:{tmp_path / 'out'}:v1", "-q",
                      "--authfile", config)
    one_line_error(after, 3, host)
