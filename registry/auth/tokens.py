"""Bearer tokens (Docker registry token specification): JWTs signed by an issuer's private
key, checked against trusted public keys. PyJWT does the JOSE work.

Trusted keys come from PEM certificates (`rootcertbundle`), a JWKS file, and the built-in
token server's own key. A token names its key by `kid` (the JWKS `kid`, or the RFC 7638
thumbprint for other keys) or carries its certificate in `x5c`, which must be one of the
trusted certificates or issued by one; a token naming neither is tried against each key.
Only asymmetric algorithms are accepted: never `none`, never HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from client.oci.scope import Scope

from ..config import ConfigError

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA"]
REFRESH = "refresh"  # the `typ` claim of refresh tokens; access tokens never carry it


class TokenError(Exception):
    """A token that is not valid here; the message says why (safe to show the client)."""


class KeyFileError(ConfigError):
    """A key or certificate file that cannot be used."""


def thumbprint(key: PublicKeyTypes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of keys without one."""
    members = {k: v for k, v in _to_jwk(key).items() if k in ("crv", "e", "kty", "n", "x", "y")}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _to_jwk(key: PublicKeyTypes) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPublicKey):
        return dict(jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ec.EllipticCurvePublicKey):
        return dict(jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return dict(jwt.algorithms.OKPAlgorithm.to_jwk(key, as_dict=True))
    raise KeyFileError(f"unsupported key type {type(key).__name__}")


def algorithm_for(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise KeyFileError(f"unsupported key type {type(key).__name__} (use RSA, EC or Ed25519)")


@dataclass(frozen=True)
class Claims:
    """What a verified token says: who, and which actions on which resources."""

    subject: str | None
    access: dict[tuple[str, str], frozenset[str]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def allows(self, kind: str, name: str, action: str) -> bool:
        return action in self.access.get((kind, name), frozenset())


def _access(claim: Any) -> dict[tuple[str, str], frozenset[str]]:
    if claim is None:
        return {}
    if not isinstance(claim, list):
        raise TokenError("the access claim is not a list")
    out: dict[tuple[str, str], frozenset[str]] = {}
    for entry in claim:
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) \
                or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("actions", []), list):
            raise TokenError("malformed entry in the access claim")
        key = (entry["type"], entry["name"])
        out[key] = out.get(key, frozenset()) | frozenset(map(str, entry.get("actions", [])))
    return out


class TokenVerifier:
    """Checks tokens; a token that passed is remembered (bounded) until it expires, since a
    signature check costs a few hundred microseconds and clients send the same token on
    every request."""

    MEMO_SIZE = 4096

    def __init__(self, *, service: str, issuer: str, leeway: float = 60.0) -> None:
        self.service, self.issuer, self.leeway = service, issuer, leeway
        self._by_kid: dict[str, Any] = {}
        self._certificates: list[x509.Certificate] = []
        self._memo: OrderedDict[str, Claims] = OrderedDict()

    def trust_key(self, key: PublicKeyTypes, kid: str | None = None) -> None:
        self._by_kid[kid or thumbprint(key)] = key

    def trust_certificates(self, path: Path) -> None:
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read certificates from {path}: {exc}") from None
        for certificate in certificates:
            self._certificates.append(certificate)
            self.trust_key(certificate.public_key())

    def trust_jwks(self, path: Path) -> None:
        try:
            keys = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise KeyFileError(f"cannot read a JWKS from {path}: {exc}") from None
        for jwk in keys.keys:
            if jwk.key_type in ("oct",):
                raise KeyFileError(f"{path}: symmetric keys cannot sign registry tokens")
            self.trust_key(jwk.key, jwk.key_id)

    def _candidates(self, header: dict[str, Any]) -> list[Any]:
        chain = header.get("x5c")
        if chain:
            return [self._from_chain(chain)]
        kid = header.get("kid")
        if kid is not None and kid in self._by_kid:
            return [self._by_kid[kid]]
        return list(self._by_kid.values())

    def _from_chain(self, chain: Any) -> Any:
        try:
            leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
        except (TypeError, ValueError, IndexError):
            raise TokenError("unreadable x5c certificate") from None
        now = time.time()
        if not leaf.not_valid_before_utc.timestamp() - self.leeway <= now \
                <= leaf.not_valid_after_utc.timestamp() + self.leeway:
            raise TokenError("the token's certificate is not valid now")
        for trusted in self._certificates:
            if leaf == trusted:
                return leaf.public_key()
            try:
                leaf.verify_directly_issued_by(trusted)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return leaf.public_key()
        raise TokenError("the token's certificate is not trusted")

    def verify(self, token: str, audience: str | None = None) -> Claims:
        if audience is None:
            known = self._memo.get(token)
            if known is not None and known.raw["exp"] + self.leeway > time.time():
                return known
            claims = self._verify(token, None)
            self._memo[token] = claims
            self._memo.move_to_end(token)
            while len(self._memo) > self.MEMO_SIZE:
                self._memo.popitem(last=False)
            return claims
        return self._verify(token, audience)

    def _verify(self, token: str, audience: str | None) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise TokenError(f"algorithm {header.get('alg')!r} is not accepted")
        failure = "no trusted key verifies the token's signature"
        for key in self._candidates(header):
            if not _fits(header["alg"], key):
                continue
            try:
                claims = jwt.decode(
                    token, key, algorithms=[header["alg"]], audience=audience or self.service,
                    issuer=self.issuer, leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except (jwt.PyJWTError, ValueError, TypeError) as exc:
                failure = _reason(exc)  # signed by this key, refused on its claims
                break
            if (claims.get("typ") == REFRESH) != (audience is not None):
                raise TokenError("a refresh token is not an access token, nor the reverse")
            subject = claims.get("sub")
            return Claims(subject if isinstance(subject, str) and subject else None,
                          _access(claims.get("access")), claims)
        raise TokenError(failure)


def _fits(algorithm: str, key: Any) -> bool:
    if algorithm[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and algorithm == algorithm_for(key)


def _reason(exc: Exception) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is for another service"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token is from an untrusted issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the {exc.claim} claim"
    return "invalid token"


class TokenSigner:
    """The built-in token server's key: signs access and refresh tokens."""

    def __init__(self, key: PrivateKeyTypes, *, service: str, issuer: str) -> None:
        self.key = key
        self.algorithm = algorithm_for(key)
        self.kid = thumbprint(key.public_key())
        self.service, self.issuer = service, issuer

    @classmethod
    def load(cls, path: Path, *, service: str, issuer: str) -> TokenSigner:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot read the signing key {path}: {exc}") from None
        return cls(key, service=service, issuer=issuer)

    @classmethod
    def ephemeral(cls, *, service: str, issuer: str) -> TokenSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()), service=service, issuer=issuer)

    def public_key(self) -> PublicKeyTypes:
        return self.key.public_key()

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm=self.algorithm,  # type: ignore[arg-type]
                          headers={"kid": self.kid, "typ": "JWT"})

    def access_token(self, subject: str | None, grants: list[Scope], lifetime: float,
                     now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        return self._sign({
            "iss": self.issuer, "sub": subject or "", "aud": self.service,
            "iat": issued, "nbf": issued, "exp": issued + int(lifetime),
            "jti": secrets.token_urlsafe(16),
            "access": [{"type": g.type, "name": g.name, "actions": sorted(g.actions)}
                       for g in grants],
        })

    @property
    def refresh_audience(self) -> str:
        return f"{self.service}#refresh"

    def refresh_token(self, subject: str, fingerprint: str, lifetime: float) -> str:
        issued = int(time.time())
        return self._sign({
            "iss": self.issuer, "sub": subject, "aud": self.refresh_audience, "typ": REFRESH,
            "iat": issued, "nbf": issued, "exp": issued + int(lifetime),
            "jti": secrets.token_urlsafe(16), "pwd": fingerprint,
        })
