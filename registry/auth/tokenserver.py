"""The built-in token server (`/auth/token`), per the Docker registry token specification:

* GET with optional Basic credentials, `service`, one or more `scope`, `offline_token`;
* POST (the OAuth2 form) with `grant_type=password` (username, password) or
  `grant_type=refresh_token`, a space-separated `scope`, `access_type=offline`.

Each requested action is granted only if the policy allows it to the caller (scope
reduction: a request for more yields a token for less, never an error and never more).
Callers without credentials get anonymous tokens. Refresh tokens are signed JWTs bound to
the user's current password hash: a changed password or a removed user ends them.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from aiohttp import web

from client.oci.reference import is_valid_name
from client.oci.scope import CATALOG_NAME, REGISTRY, REPOSITORY, Scope, ScopeError

from .. import errors, metrics
from .guard import TOKEN_PATH, Auth, basic_credentials
from .policy import Policy
from .tokens import TokenError

log = logging.getLogger("registry.auth")


class _BadRequest(errors.RegistryError):
    code, status = "UNSUPPORTED", 400


def _scopes(texts: list[str]) -> list[Scope]:
    out = []
    for text in texts:
        for word in text.split():
            try:
                out.append(Scope.parse(word))
            except ScopeError as exc:
                raise _BadRequest(str(exc)) from None
    return out


def grants(policy: Policy, user: str | None, wanted: list[Scope]) -> list[Scope]:
    """What the token will carry: each scope cut down to what the policy allows."""
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in wanted:
        if scope.type == REPOSITORY and is_valid_name(scope.name):
            allowed = policy.grant(user, scope.name, scope.actions)
        elif scope.type == REGISTRY and scope.name == CATALOG_NAME:
            allowed = scope.actions & {"*"}  # the listing is filtered per caller
        else:
            allowed = frozenset()
        if allowed:
            merged.setdefault((scope.type, scope.name), set()).update(allowed)
    return [Scope(t, n, frozenset(a)) for (t, n), a in merged.items()]


class TokenServer:
    def __init__(self, auth: Auth, body_timeout: float) -> None:
        assert auth.signer is not None and auth.token is not None
        self.auth, self.signer, self.settings = auth, auth.signer, auth.token
        self.body_timeout = body_timeout  # a form that stops arriving (http.bodytimeout)

    def _check_service(self, service: str | None) -> None:
        if service and service != self.settings.service:
            raise _BadRequest(f"this token server serves {self.settings.service!r}, "
                              f"not {service!r}")

    def _issue(self, user: str | None, wanted: list[Scope], body: dict[str, Any]) -> web.Response:
        policy = self.auth.files.current.policy
        granted = grants(policy, user, wanted)
        lifetime = self.settings.expiration
        token = self.signer.access_token(user, granted, lifetime)
        metrics.TOKENS.labels("issued").inc()
        log.info("auth: token for %s: %s", user or "anonymous",
                 " ".join(map(str, granted)) or "(no access)")
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return web.json_response({**body, "token": token, "access_token": token,
                                  "expires_in": int(lifetime), "issued_at": now,
                                  "scope": " ".join(map(str, granted))})

    def _refresh_token(self, user: str) -> str:
        htpasswd = self.auth.files.current.htpasswd
        fingerprint = htpasswd.fingerprint(user) if htpasswd else None
        assert fingerprint is not None
        return self.signer.refresh_token(user, fingerprint, self.settings.refreshexpiration)

    async def get(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_service(request.query.get("service"))
            wanted = _scopes(request.query.getall("scope", []))
            user = await self._basic_user(request)
            body = {}
            if user and request.query.get("offline_token", "").lower() == "true":
                body["refresh_token"] = self._refresh_token(user)
            return self._issue(user, wanted, body)
        except errors.RegistryError as exc:
            metrics.TOKENS.labels("refused").inc()
            return exc.response()

    async def post(self, request: web.Request) -> web.StreamResponse:
        try:
            try:
                async with asyncio.timeout(self.body_timeout):
                    form = await request.post()
            except TimeoutError:
                raise errors.BodyStalled(f"no request body data for {self.body_timeout:g}s",
                                         detail={"timeout": self.body_timeout}) from None
            field = {k: v for k, v in form.items() if isinstance(v, str)}
            self._check_service(field.get("service"))
            wanted = _scopes([field.get("scope", "")])
            grant = field.get("grant_type")
            body: dict[str, Any] = {}
            if grant == "password":
                user = await self.auth.users.authenticate(
                    field.get("username", ""), field.get("password", ""), request.remote)
                if field.get("access_type") == "offline":
                    body["refresh_token"] = self._refresh_token(user)
            elif grant == "refresh_token":
                user = self._refreshed_user(field.get("refresh_token", ""))
                body["refresh_token"] = field.get("refresh_token", "")
            else:
                raise _BadRequest(f"unsupported grant_type {grant!r} "
                                  "(use password or refresh_token)")
            return self._issue(user, wanted, body)
        except errors.RegistryError as exc:
            metrics.TOKENS.labels("refused").inc()
            return exc.response()

    async def _basic_user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            return None
        if scheme.lower() != "basic":
            raise errors.Unauthorized("the token server takes Basic credentials")
        credentials = basic_credentials(value)
        if credentials is None:
            raise errors.Unauthorized("malformed Basic credentials")
        if credentials == ("", ""):
            return None  # what clients without credentials send
        return await self.auth.users.authenticate(*credentials, request.remote)

    def _refreshed_user(self, token: str) -> str:
        assert self.auth.verifier is not None
        try:
            claims = self.auth.verifier.verify(token, audience=self.signer.refresh_audience)
        except TokenError as exc:
            raise errors.Unauthorized(f"refresh token refused: {exc}") from None
        htpasswd = self.auth.files.current.htpasswd
        user = claims.subject
        if user is None or htpasswd is None \
                or htpasswd.fingerprint(user) != claims.raw.get("pwd"):
            raise errors.Unauthorized("refresh token refused: the user or password changed")
        return user

    def routes(self, app: web.Application) -> None:
        app.router.add_route("GET", TOKEN_PATH, self.get)
        app.router.add_route("POST", TOKEN_PATH, self.post)
