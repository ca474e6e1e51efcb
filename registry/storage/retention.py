"""Retention (`berth.retention`): which tags a garbage collection deletes, and in which
repositories it forgets untagged manifests (docs/retention.md).

A repository follows the first policy whose `repositories` globs match it; one no policy
matches keeps every tag. With `keeptags` rules, a tag is kept when any rule keeps it and
deleted otherwise; a policy without rules keeps every tag. A tag's push time is the
modification time of its link on storage: the last push that wrote it, a re-push of the
same digest included. Never deleted, whatever the rules say: a tag an immutable rule
covers, and a tag written within the GC grace period (a push may be using it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import KeepTags, RetentionPolicy, RetentionSettings, glob_regex
from . import paths
from .drivers.base import PathNotFoundError
from .links import read_link
from .parallel import each

if TYPE_CHECKING:
    from client.oci.digest import Digest

    from . import Registry

IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class TagState:
    tag: str
    digest: Digest
    pushed: float  # the link's modification time, storage's clock
    pulled: float | None = field(default=None, compare=False)  # its manifest's, from here


@dataclass
class RepositoryPlan:
    """What retention decided for one repository."""

    policy: int  # index in berth.retention.policies
    delete: list[TagState] = field(default_factory=list)
    immutable: list[str] = field(default_factory=list)  # would go, but are immutable
    young: list[str] = field(default_factory=list)  # would go, but written within the grace
    delete_untagged: bool = False


def kept_by(rules: tuple[KeepTags, ...], tags: list[TagState], now: float) -> set[str]:
    """The tags `rules` keep (zot's keepTags semantics: any rule keeping a tag keeps it)."""
    if not rules:
        return {t.tag for t in tags}
    kept: set[str] = set()
    newest_first = sorted(tags, key=lambda t: (-t.pushed, t.tag))
    for rule in rules:
        patterns = [re.compile(p) for p in rule.patterns]
        matching = [t for t in newest_first
                    if not patterns or any(p.search(t.tag) for p in patterns)]
        if rule.mostrecentlypushedcount is None and rule.pushedwithin is None and (
                not rule.by_pulls):
            kept.update(t.tag for t in matching)
            continue
        if rule.mostrecentlypushedcount is not None:
            kept.update(t.tag for t in matching[:rule.mostrecentlypushedcount])
        if rule.pushedwithin is not None:
            kept.update(t.tag for t in matching if t.pushed >= now - rule.pushedwithin)
        pulled = sorted((t for t in matching if t.pulled is not None),
                        key=lambda t: (-(t.pulled or 0.0), t.tag))  # (never pulled: not)
        if rule.mostrecentlypulledcount is not None:
            kept.update(t.tag for t in pulled[:rule.mostrecentlypulledcount])
        if rule.pulledwithin is not None:
            kept.update(t.tag for t in pulled if (t.pulled or 0.0) >= now - rule.pulledwithin)
    return kept


class Retention:
    def __init__(self, registry: Registry, settings: RetentionSettings) -> None:
        self.registry = registry
        self.settings = settings
        self._globs = [tuple(glob_regex(g) for g in p.repositories) for p in settings.policies]

    def policy_for(self, name: str) -> tuple[int, RetentionPolicy] | None:
        for index, globs in enumerate(self._globs):
            if any(g.fullmatch(name) for g in globs):
                return index, self.settings.policies[index]
        return None

    async def tag_states(self, name: str) -> list[TagState]:
        async def state(tag: str) -> TagState | None:
            return await self._state(name, tag)

        found = await each(IN_FLIGHT, await self.registry.tags.linked(name), state)
        return [s for s in found if s is not None]

    async def _state(self, name: str, tag: str) -> TagState | None:
        driver = self.registry.driver
        link = paths.tag_link(name, tag)
        try:
            pushed = (await driver.stat(link)).modified
        except PathNotFoundError:
            return None
        digest = await read_link(driver, link)
        if digest is None:
            return None
        pulls = self.registry.pulls
        pulled = await pulls.last_pulled(name, digest) if pulls.enabled else None
        return TagState(tag, digest, pushed, pulled)

    async def plan(self, name: str, now: float, cutoff: float) -> RepositoryPlan | None:
        """Decide for `name` at `now`; tags written after `cutoff` (the grace) stay."""
        found = self.policy_for(name)
        if found is None:
            return None
        index, policy = found
        plan = RepositoryPlan(index, delete_untagged=policy.deleteuntagged)
        if not policy.keeptags:
            return plan
        tags = await self.tag_states(name)
        kept = kept_by(policy.keeptags, tags, now)
        immutable = self.registry.tags.immutable
        for state in sorted(tags, key=lambda t: t.tag):
            if state.tag in kept:
                continue
            if immutable.rule(name, state.tag) is not None:
                plan.immutable.append(state.tag)
            elif state.pushed > cutoff:
                plan.young.append(state.tag)
            else:
                plan.delete.append(state)
        return plan

    async def apply(self, name: str, plan: RepositoryPlan) -> list[str]:
        """Delete the planned tags that are still as they were when decided (a tag
        pushed again since is left alone); the tags deleted."""
        deleted = []
        for state in plan.delete:
            if await self._state(name, state.tag) != state:
                continue
            await self.registry.tags.forget(name, state.tag)
            deleted.append(state.tag)
        return deleted
