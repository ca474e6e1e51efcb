"""The gate in front of `/v2/`: who is calling (Basic credentials, a bearer token, or
nobody), whether they may do what the request needs, and the challenge when not.

Basic mode (`auth.htpasswd` alone) answers 401 with a Basic challenge to callers without
credentials and 403 DENIED to users the policy does not allow. Token mode (`auth.token`)
answers 401 with a Bearer challenge naming the scope the request needs, adding
`error="insufficient_scope"` when a valid token lacks it, so clients fetch a better one.
"""

from __future__ import annotations

import base64
import binascii
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import errors, metrics
from ..config import AuthSettings
from .access import ACCESS, Access, Need, PolicyAccess, TokenAccess, required
from .files import AuthFiles
from .throttle import LoginThrottle
from .tokens import KeyFileError, TokenError, TokenSigner, TokenVerifier
from .users import Users

log = logging.getLogger("registry.auth")

TOKEN_PATH = "/auth/token"


class Auth:
    """Everything auth needs at run time, built once from the config."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.files = AuthFiles(settings.htpasswd.path if settings.htpasswd else None,
                               settings.policy)
        limit = settings.loginlimit
        self.users = Users(self.files, LoginThrottle(limit.attempts, limit.window, limit.tracked))
        self.token = settings.token
        self.verifier: TokenVerifier | None = None
        self.signer: TokenSigner | None = None
        if self.token is not None:
            token = self.token
            self.verifier = TokenVerifier(service=token.service, issuer=token.issuer,
                                          leeway=token.leeway)
            if token.rootcertbundle:
                self.verifier.trust_certificates(token.rootcertbundle)
            if token.jwks:
                self.verifier.trust_jwks(token.jwks)
            if token.builtin:
                if token.signingkey:
                    self.signer = TokenSigner.load(token.signingkey, service=token.service,
                                                   issuer=token.issuer)
                else:
                    self.signer = TokenSigner.ephemeral(service=token.service,
                                                        issuer=token.issuer)
                    log.warning("auth: no auth.token.signingkey: tokens are signed with a key "
                                "made at start, so they die with this process and other "
                                "replicas do not accept them")
                self.verifier.trust_key(self.signer.public_key(), self.signer.kid)

    # -- who is calling --------------------------------------------------------------

    @property
    def policy_is_local(self) -> bool:
        return self.token is None or self.token.builtin or self.settings.policy is not None

    def realm(self, request: web.Request) -> str:
        if self.token is not None:
            return self.token.realm or f"{request.scheme}://{request.host}{TOKEN_PATH}"
        assert self.settings.htpasswd is not None
        return self.settings.htpasswd.realm

    def challenge(self, request: web.Request, need: Need | None, error: str | None = None,
                  message: str | None = None) -> errors.Unauthorized:
        realm = self.realm(request).replace('"', "")
        if self.token is None:
            header = f'Basic realm="{realm}",charset="UTF-8"'
        else:
            header = f'Bearer realm="{realm}",service="{self.token.service}"'
            if need is not None:
                header += f',scope="{need.scope}"'
            if error:
                header += f',error="{error}"'
        detail = [{"Type": need.kind, "Name": need.name, "Action": a}
                  for a in need.challenge_actions] if need else None
        return errors.Unauthorized(message, detail=detail, headers={"WWW-Authenticate": header})

    async def identify(self, request: web.Request, need: Need | None) -> Access:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        policy = self.files.current.policy
        if not header:
            return PolicyAccess(policy, None)
        if scheme.lower() == "basic" and self.settings.htpasswd is not None:
            credentials = basic_credentials(value)
            if credentials is None:
                raise self.challenge(request, need, message="malformed Basic credentials")
            user, password = credentials
            if not user and not password:  # what clients without credentials send
                return PolicyAccess(policy, None)
            try:
                name = await self.users.authenticate(user, password, request.remote)
            except errors.Unauthorized as exc:
                raise self.challenge(request, need, message=exc.message) from None
            return PolicyAccess(policy, name)
        if scheme.lower() == "bearer" and self.verifier is not None:
            try:
                claims = self.verifier.verify(value.strip())
            except TokenError as exc:
                raise self.challenge(request, need, "invalid_token", str(exc)) from None
            return TokenAccess(claims, policy if self.policy_is_local else None)
        raise self.challenge(request, need, message=f"unsupported authorization {scheme!r}")

    # -- the gate --------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == TOKEN_PATH and self.signer is not None:
            return await handler(request)  # the token server checks its own credentials
        need = required(request)
        try:
            self._check(request, need, await self.identify(request, need))
        except errors.RegistryError as exc:
            metrics.AUTH.labels(_OUTCOMES.get(exc.status, "refused")).inc()
            raise
        metrics.AUTH.labels("allowed").inc()
        return await handler(request)

    def _check(self, request: web.Request, need: Need | None, caller: Access) -> None:
        request[ACCESS] = caller
        if need is None:  # `/v2/` and the like: clients learn the challenge here
            if caller.user is None:
                raise self.challenge(request, None)
        elif not all(caller.allows(need.kind, need.name, a) for a in need.actions):
            if isinstance(caller, TokenAccess):
                raise self.challenge(request, need, "insufficient_scope",
                                     "the token does not grant this access")
            if caller.user is None:
                raise self.challenge(request, need)
            raise errors.Denied(detail={"Type": need.kind, "Name": need.name,
                                        "Action": sorted(need.actions)})


_OUTCOMES = {401: "challenged", 403: "denied", 429: "throttled"}


def basic_credentials(value: str) -> tuple[str, str] | None:
    """(user, password) from a Basic authorization value; None when malformed."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


__all__ = ["TOKEN_PATH", "Auth", "KeyFileError", "basic_credentials"]
