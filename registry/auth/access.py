"""What a request needs (a scope) and what its caller may do (an Access).

Handlers ask the request's Access; without auth configured it is `OPEN`, which allows all.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from client.oci.scope import CATALOG_NAME, REGISTRY, REPOSITORY

from .policy import DELETE, PULL, PUSH, Policy
from .tokens import Claims


@dataclass(frozen=True, slots=True)
class Need:
    """The access one request needs, and the scope to name in a challenge for it."""

    kind: str
    name: str
    actions: frozenset[str]
    challenge_actions: tuple[str, ...]

    @property
    def scope(self) -> str:
        return f"{self.kind}:{self.name}:{','.join(self.challenge_actions)}"


CATALOG_LISTING = Need(REGISTRY, CATALOG_NAME, frozenset({"*"}), ("*",))  # `_catalog`


def required(request: web.Request) -> Need | None:
    """None for requests any signed-in caller may make (`/v2/`, unknown paths)."""
    route = request.match_info.route.resource
    path = route.canonical if route is not None else ""
    name = request.match_info.get("name")
    if path == "/v2/_catalog":
        return CATALOG_LISTING
    if name is None:
        return None
    if "/blobs/uploads" in path:  # every upload step: push (clients ask for pull too)
        return Need(REPOSITORY, name, frozenset({PUSH}), (PULL, PUSH))
    if request.method in ("GET", "HEAD"):
        return Need(REPOSITORY, name, frozenset({PULL}), (PULL,))
    if request.method == "DELETE":
        return Need(REPOSITORY, name, frozenset({DELETE}), (DELETE,))
    return Need(REPOSITORY, name, frozenset({PUSH}), (PULL, PUSH))


class Access:
    """No auth configured: everything is allowed, and unrestricted extras (such as a mount
    without `from`) stay on."""

    user: str | None = None
    unrestricted = True

    def allows(self, kind: str, name: str, action: str) -> bool:
        return True

    def lists(self, repository: str) -> bool:
        """Whether `_catalog` shows this repository to the caller."""
        return True

    def may_mount_from(self, source: str | None) -> bool:
        """Whether a cross-repository mount may link a blob from `source`: one the caller
        can pull; without `from` (any repository holding the blob) only when access is
        unrestricted (no auth)."""
        if source is None:
            return self.unrestricted
        return self.allows(REPOSITORY, source, PULL)


OPEN = Access()
ACCESS = web.RequestKey("access", Access)


class PolicyAccess(Access):
    """A caller known by name (or anonymous), judged by the policy on each request."""

    unrestricted = False

    def __init__(self, policy: Policy, user: str | None) -> None:
        self.policy, self.user = policy, user

    def allows(self, kind: str, name: str, action: str) -> bool:
        if kind == REGISTRY and name == CATALOG_NAME:  # the listing itself is filtered
            return self.user is not None or self.policy.anonymous_allowed
        return kind == REPOSITORY and action in self.policy.actions(self.user, name)

    def lists(self, repository: str) -> bool:
        return PULL in self.policy.actions(self.user, repository)


class TokenAccess(Access):
    """A bearer token: its `access` claim is what it may do, plus what anyone may do.
    The catalog is filtered by the local policy when there is one."""

    unrestricted = False

    def __init__(self, claims: Claims, policy: Policy | None) -> None:
        self.claims, self.policy, self.user = claims, policy, claims.subject

    def allows(self, kind: str, name: str, action: str) -> bool:
        if self.claims.allows(kind, name, action) or self.claims.allows(kind, name, "*"):
            return True
        return (self.policy is not None and kind == REPOSITORY
                and action in self.policy.actions(None, name))

    def lists(self, repository: str) -> bool:
        if self.policy is None:
            return True
        return PULL in self.policy.actions(self.user, repository)


def access(request: web.BaseRequest) -> Access:
    found = request.get(ACCESS)
    return found if isinstance(found, Access) else OPEN
