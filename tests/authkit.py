"""Material for the access-control tests: htpasswd files, policies, keys, certificates,
and tokens the tests sign themselves."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import time
import uuid
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

SERVICE = "berth-test"
ISSUER = "berth-test-issuer"

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

# alice administers everything; bob and carol work on team-a; public/* is open to all;
# carol may not touch team-a/vault/*.
POLICY: dict[str, Any] = {
    "groups": {"admins": ["alice"], "team-a": ["bob", "carol"]},
    "rules": [
        {"repositories": ["*"], "groups": ["admins"], "actions": ["*"]},
        {"repositories": ["team-a/*"], "groups": ["team-a"], "actions": ["pull", "push"]},
        {"repositories": ["public/*"], "anonymous": True, "actions": ["pull"]},
        {"repositories": ["team-a/vault/*"], "users": ["carol"], "actions": ["pull", "push"],
         "deny": True},
    ],
}


def write_htpasswd(path: Path, users: dict[str, str], cost: int = 4) -> Path:
    """Entries as `htpasswd -B` writes them (`$2y$`)."""
    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
        lines.append(f"{user}:$2y${hashed[4:]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_policy(path: Path, policy: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(policy))
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_key(path: Path, key: PrivateKeyTypes) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def certificate(key: PrivateKeyTypes, name: str = "berth test", ca: bool = True,
                issuer: tuple[x509.Certificate, PrivateKeyTypes] | None = None,
                hosts: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    signer = issuer[1] if issuer else key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)  # type: ignore[arg-type]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A TLS certificate for 127.0.0.1/localhost (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(key, "berth test registry", hosts=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key_file, key)
    return cert_file, key_file


def claims(subject: str | None, access: list[tuple[str, str, list[str]]], *,
           lifetime: float = 300, audience: str = SERVICE, issuer: str = ISSUER,
           **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer, "sub": subject or "", "aud": audience, "iat": now, "nbf": now,
        "exp": now + int(lifetime), "jti": uuid.uuid4().hex,
        "access": [{"type": t, "name": n, "actions": a} for t, n, a in access], **extra,
    }


def sign(payload: dict[str, Any], key: PrivateKeyTypes, algorithm: str = "ES256",
         **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers or None)  # type: ignore[arg-type]
