"""Real clients negotiate Berth's access control on their own: skopeo (with --creds and
with an auth file) and the `berth` CLI through the built-in token flow over TLS, skopeo
with Basic auth; and the TLS listener itself (versions, keep-alive, client certificates)."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .authkit import (
    POLICY,
    USERS,
    certificate,
    self_signed,
    write_htpasswd,
    write_key,
    write_policy,
)
from .conftest import MakeBerth
from .layouts import layout_image
from .servers import ROOT, BerthServer
from .skopeo import Skopeo

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None,
                                  reason="skopeo is not installed (CI installs it)")


@pytest.fixture(scope="module")
def tls_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """HTTPS, the built-in token server, htpasswd users and the shared test policy."""
    directory = tmp_path_factory.mktemp("tls-token-registry")
    cert, key = self_signed(directory)
    server = BerthServer(directory, {
        "http": {"tls": {"certificate": str(cert), "key": str(key)}},
        "auth": {
            "htpasswd": {"path": str(write_htpasswd(directory / "htpasswd", USERS))},
            "policy": str(write_policy(directory / "policy.yml", POLICY)),
            "token": {"signingkey": str(write_key(directory / "signing.pem",
                                                   ec.generate_private_key(ec.SECP256R1())))},
        },
    }).start()
    certs = directory / "certs.d"  # what containers/image reads CAs from (*.crt)
    certs.mkdir()
    shutil.copy(cert, certs / "ca.crt")
    yield server
    server.stop()


def cert_dir(server: BerthServer) -> Path:
    return server.workdir / "certs.d"


def manifest_digest(layout_root: Path) -> str:
    index = json.loads((layout_root / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


@needs_skopeo
def test_skopeo_with_creds_pushes_and_pulls_through_tokens_over_tls(
    skopeo: Skopeo, tls_token_registry: BerthServer, tmp_path: Path,
) -> None:
    server = tls_token_registry
    layout, image = layout_image(tmp_path / "src", "skopeo-creds")
    ref = f"docker://{server.host}/team-a/skopeo-creds:v1"
    skopeo.run("copy", "--retry-times", "0", "--preserve-digests",
               "--dest-cert-dir", str(cert_dir(server)), "--dest-creds", "bob:" + USERS["bob"],
               f"oci:{layout.root}:v1", ref)
    out = tmp_path / "out"
    skopeo.run("copy", "--retry-times", "0", "--src-cert-dir", str(cert_dir(server)),
               "--src-creds", "carol:" + USERS["carol"], ref, f"oci:{out}:v1")
    assert manifest_digest(out) == image.digest
    # The policy holds: carol may not write into the vault, and says so.
    denied = skopeo.run("copy", "--retry-times", "0", "--dest-cert-dir", str(cert_dir(server)),
                        "--dest-creds", "carol:" + USERS["carol"], f"oci:{layout.root}:v1",
                        f"docker://{server.host}/team-a/vault/x:v1", check=False)
    assert denied.returncode != 0
    assert b"unauthorized" in denied.stderr.lower() or b"denied" in denied.stderr.lower()
    wrong = skopeo.run("inspect", "--retry-times", "0", "--cert-dir", str(cert_dir(server)),
                       "--creds", "bob:wrong", ref, check=False)
    assert wrong.returncode != 0
    assert b"401" in wrong.stderr or b"unauthorized" in wrong.stderr.lower(), wrong.stderr


@needs_skopeo
def test_skopeo_with_an_auth_file(skopeo: Skopeo, tls_token_registry: BerthServer,
                                  tmp_path: Path) -> None:
    server = tls_token_registry
    auth_file = tmp_path / "config.json"
    encoded = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {server.host: {"auth": encoded}}}))
    layout, image = layout_image(tmp_path / "src", "skopeo-authfile")
    ref = f"docker://{server.host}/public/skopeo-authfile:v1"
    skopeo.run("copy", "--retry-times", "0", "--preserve-digests", "--authfile", str(auth_file),
               "--dest-cert-dir", str(cert_dir(server)), f"oci:{layout.root}:v1", ref)
    tags = skopeo.run("list-tags", "--authfile", str(auth_file), "--cert-dir",
                      str(cert_dir(server)), ref.rsplit(":", 1)[0])
    assert json.loads(tags.stdout)["Tags"] == ["v1"]
    # public/* is open to anonymous pulls: skopeo fetches an anonymous token by itself.
    raw = skopeo.run("inspect", "--raw", "--retry-times", "0", "--no-creds", "--cert-dir",
                     str(cert_dir(server)), ref)
    assert json.loads(raw.stdout)["config"]["digest"] == image.config_digest


def run_berth(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, input=stdin, check=False)


def test_berth_client_logs_in_and_pushes(tls_token_registry: BerthServer,
                                         tmp_path: Path) -> None:
    server = tls_token_registry
    auth_file, ca = tmp_path / "auth.json", str(server.workdir / "cert.pem")
    common = ["--authfile", str(auth_file), "--ca-file", ca]
    refused = run_berth("login", server.host, "-u", "bob", "--password-stdin", *common,
                        stdin="not-the-password\n")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not auth_file.exists() or server.host not in auth_file.read_text()
    logged_in = run_berth("login", server.host, "-u", "bob", "--password-stdin", *common,
                          stdin=USERS["bob"] + "\n")
    assert logged_in.returncode == 0, logged_in.stderr
    layout, image = layout_image(tmp_path / "src", "berth-login")
    ref = f"{server.host}/team-a/berth-login:v1"
    pushed = run_berth("push", f"oci:{layout.root}:v1", ref, "-q", *common)
    assert pushed.returncode == 0, pushed.stderr
    out = tmp_path / "out"
    pulled = run_berth("pull", ref, f"oci:{out}:v1", "-q", *common)
    assert pulled.returncode == 0, pulled.stderr
    assert manifest_digest(out) == image.digest
    denied = run_berth("push", f"oci:{layout.root}:v1", f"{server.host}/elsewhere/x:v1", "-q",
                       *common)
    assert denied.returncode != 0 and "Traceback" not in denied.stderr


@needs_skopeo
def test_skopeo_with_basic_auth(skopeo: Skopeo, make_berth: MakeBerth, tmp_path: Path) -> None:
    server = make_berth({"auth": {
        "htpasswd": {"path": str(write_htpasswd(tmp_path / "htpasswd", USERS))},
        "policy": str(write_policy(tmp_path / "policy.yml", POLICY)),
    }})
    layout, image = layout_image(tmp_path / "src", "skopeo-basic")
    ref = f"docker://{server.host}/team-a/skopeo-basic:v1"
    skopeo.copy(f"oci:{layout.root}:v1", ref, "--preserve-digests",
                "--dest-creds", "bob:" + USERS["bob"])
    out = tmp_path / "out"
    skopeo.copy(ref, f"oci:{out}:v1", "--src-creds", "carol:" + USERS["carol"])
    assert manifest_digest(out) == image.digest
    anonymous = skopeo.run("inspect", "--tls-verify=false", "--no-creds", ref, check=False)
    assert anonymous.returncode != 0


# -- the TLS listener ------------------------------------------------------------------


def tls_server(make_berth: MakeBerth, directory: Path, **tls: Any) -> tuple[BerthServer, Path]:
    cert, key = self_signed(directory)
    return make_berth({"http": {"tls": {"certificate": str(cert), "key": str(key), **tls}}}), cert


def test_tls_keeps_connections_alive_and_refuses_old_versions(
    make_berth: MakeBerth, tmp_path: Path,
) -> None:
    server, cert = tls_server(make_berth, tmp_path, minimumtls="tls1.3")
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context)
    connection.request("GET", "/v2/")
    first = connection.getresponse()
    first.read()
    sock = connection.sock
    connection.request("GET", "/v2/_catalog")
    second = connection.getresponse()
    second.read()
    assert first.status == second.status == 200
    assert connection.sock is sock  # HTTP/1.1 keep-alive: one connection, two requests
    assert sock is not None and sock.version() == "TLSv1.3"  # type: ignore[attr-defined]
    connection.close()
    old = ssl.create_default_context(cafile=str(cert))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        requests_over(old, server)
    assert requests.get(server.url + "/v2/", verify=str(cert), timeout=10).status_code == 200


def requests_over(context: ssl.SSLContext, server: BerthServer) -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context,
                                             timeout=10)
    try:
        connection.request("GET", "/v2/")
        return connection.getresponse().status
    finally:
        connection.close()


def test_tls12_is_the_default_minimum(make_berth: MakeBerth, tmp_path: Path) -> None:
    server, cert = tls_server(make_berth, tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert requests_over(context, server) == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{server.host}/v2/", timeout=10)  # no plain HTTP, no redirect


def test_client_certificates_when_clientcas_is_set(make_berth: MakeBerth,
                                                   tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(ca_key, "client CA")
    (tmp_path / "clients.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = certificate(client_key, "a client", ca=False, issuer=(ca, ca_key))
    (tmp_path / "client.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    write_key(tmp_path / "client-key.pem", client_key)
    server, cert = tls_server(make_berth, tmp_path, clientcas=[str(tmp_path / "clients.pem")])
    anonymous = ssl.create_default_context(cafile=str(cert))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        requests_over(anonymous, server)
    known = ssl.create_default_context(cafile=str(cert))
    known.load_cert_chain(tmp_path / "client.pem", tmp_path / "client-key.pem")
    assert requests_over(known, server) == 200


def test_auth_on_a_public_address_needs_tls(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", USERS)
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"http": {"addr": "0.0.0.0:0"},
                                  "auth": {"htpasswd": {"path": str(htpasswd)}}}))
    result = run_berth("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "http.tls" in result.stderr


def test_berth_pulls_anonymously_where_the_policy_allows(make_berth: MakeBerth,
                                                          tmp_path: Path) -> None:
    server = make_berth({"auth": {
        "htpasswd": {"path": str(write_htpasswd(tmp_path / "htpasswd", USERS))},
        "policy": str(write_policy(tmp_path / "policy.yml", POLICY)),
    }})
    layout, image = layout_image(tmp_path / "src", "anonymous-pull")
    pushed = run_berth("push", f"oci:{layout.root}:v1", f"{server.host}/public/app:v1", "-q",
                       "--creds", "alice:" + USERS["alice"])
    assert pushed.returncode == 0, pushed.stderr
    run_berth("push", f"oci:{layout.root}:v1", f"{server.host}/team-a/app:v1", "-q",
              "--creds", "alice:" + USERS["alice"])
    empty_auth = ["--authfile", str(tmp_path / "none.json")]
    out = tmp_path / "out"
    pulled = run_berth("pull", f"{server.host}/public/app:v1", f"oci:{out}:v1", "-q",
                       *empty_auth)
    assert pulled.returncode == 0, pulled.stderr
    assert manifest_digest(out) == image.digest
    refused = run_berth("pull", f"{server.host}/team-a/app:v1", f"oci:{tmp_path / 'x'}:v1",
                        "-q", *empty_auth)
    assert refused.returncode != 0 and "berth login" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
