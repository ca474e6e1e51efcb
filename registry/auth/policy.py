"""Who may do what: the access policy file (YAML).

    groups:
      team-a: [bob, carol]
    rules:
      - repositories: ["team-a/*"]        # glob patterns; `*` crosses `/`
        groups: [team-a]
        actions: [pull, push]
      - repositories: ["public/*"]
        users: ["*"]                      # every signed-in user
        anonymous: true                   # callers without credentials (and so everyone)
        actions: [pull]
      - repositories: ["team-a/vault/*"]
        users: [carol]
        actions: [delete]
        deny: true                        # deny wins, whatever the order

A caller's actions on a repository are the union of the allow rules that name it (by user,
group, `*` or `anonymous`) and the repository, minus the union of the deny rules that do.
Without a policy file every signed-in user may do everything and anonymous callers nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import ConfigError, read_file

PULL, PUSH, DELETE = "pull", "push", "delete"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})
EVERYONE = "*"


class PolicyError(ConfigError):
    """A policy file that cannot be used; the message names the rule."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    repositories: tuple[str, ...] = Field(min_length=1)
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    anonymous: bool = False
    actions: frozenset[Literal["pull", "push", "delete", "*"]] = Field(min_length=1)
    deny: bool = False

    def names(self, user: str | None, groups: frozenset[str]) -> bool:
        """Whether the rule is about this caller. What anonymous callers are allowed, every
        signed-in user is allowed too; a deny rule marked `anonymous` denies them only."""
        if user is None:
            return self.anonymous
        return (EVERYONE in self.users or user in self.users or bool(self.groups & groups)
                or (self.anonymous and not self.deny))

    def covers(self, repository: str) -> bool:
        return any(fnmatchcase(repository, pattern) for pattern in self.repositories)

    @property
    def granted(self) -> frozenset[str]:
        return REPOSITORY_ACTIONS if "*" in self.actions else frozenset(self.actions)


class Policy(_Model):
    groups: dict[str, frozenset[str]] = {}
    rules: tuple[Rule, ...] = ()

    def groups_of(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset()
        return frozenset(g for g, members in self.groups.items() if user in members)

    def actions(self, user: str | None, repository: str) -> frozenset[str]:
        groups = self.groups_of(user)
        allowed: set[str] = set()
        denied: set[str] = set()
        for rule in self.rules:
            if rule.names(user, groups) and rule.covers(repository):
                (denied if rule.deny else allowed).update(rule.granted)
        return frozenset(allowed - denied)

    def grant(self, user: str | None, repository: str, wanted: Iterable[str]) -> frozenset[str]:
        """The part of `wanted` the policy allows (never more)."""
        return self.actions(user, repository) & frozenset(wanted)

    @property
    def anonymous_allowed(self) -> bool:
        return any(rule.anonymous and not rule.deny for rule in self.rules)

    @classmethod
    def parse(cls, text: str, where: str = "policy") -> Policy:
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise PolicyError(f"{where}: not valid YAML: {exc}".replace("\n", " ")) from None
        try:
            return cls.model_validate(tree)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "(top level)"
            message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
            raise PolicyError(f"{where}: {key}: {message}") from None

    @classmethod
    def load(cls, path: Path) -> Policy:
        return cls.parse(read_file(path, PolicyError), str(path))


# No policy file: signed-in users may do everything, anonymous callers nothing.
USERS_MAY_DO_ALL = Policy(rules=(Rule(repositories=("*",), users=frozenset({EVERYONE}),
                                      actions=frozenset({"*"})),))
