"""Access scopes of the Docker registry token specification: `type:name:action,action`.

Clients ask for them (`scope=` on the token request); registries name the one a request
needs in their `WWW-Authenticate` challenge; tokens grant them in their `access` claim.
"""

from __future__ import annotations

from dataclasses import dataclass

REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG_NAME = "catalog"
ALL = "*"


class ScopeError(ValueError):
    """Text that is not `type:name:actions`."""


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """`repository:team/app:pull,push`; the name may hold colons (`host:5000/app`)."""
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            raise ScopeError(f"not a scope (type:name:actions): {text!r}")
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def repository(name: str, *actions: str) -> str:
    """The scope text for actions on one repository: `repository:<name>:pull,push`."""
    return f"{REPOSITORY}:{name}:{','.join(actions)}"


# What listing the catalog (`GET /v2/_catalog`) needs: `registry:catalog:*`.
CATALOG_SCOPE = f"{REGISTRY}:{CATALOG_NAME}:{ALL}"
