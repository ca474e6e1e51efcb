"""Immutable tags (`berth.immutabletags`): once such a tag exists, a push of another
digest to it and its deletion are refused with 403 DENIED naming the rule; pushing the
digest it already names succeeds (retries must). Retention never deletes one either."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import ImmutableTagRule, glob_regex


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    repositories: tuple[re.Pattern[str], ...]
    tags: tuple[re.Pattern[str], ...]
    text: str  # how messages name it

    def applies(self, name: str, tag: str) -> bool:
        return (any(r.fullmatch(name) for r in self.repositories)
                and any(t.search(tag) for t in self.tags))


class ImmutableTags:
    """The configured rules, compiled once. Repository globs match whole names; tag
    expressions are searched (anchor them with `^…$`), like the URL rules."""

    def __init__(self, rules: Sequence[ImmutableTagRule] = ()) -> None:
        self._rules = tuple(
            _Rule(i, tuple(glob_regex(g) for g in rule.repositories),
                  tuple(re.compile(t) for t in rule.tags),
                  f"berth.immutabletags[{i}]: repositories {' '.join(rule.repositories)}, "
                  f"tags {' '.join(rule.tags)}")
            for i, rule in enumerate(rules))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def rule(self, name: str, tag: str) -> str | None:
        """The first rule making `tag` of `name` immutable, as messages name it."""
        return next((r.text for r in self._rules if r.applies(name, tag)), None)
