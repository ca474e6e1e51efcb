"""Quota decisions: whether a push may add bytes or tags to a repository (docs/quotas.md).

The first `berth.quotas` rule whose glob matches the repository applies (globs as in
retention rules: `*` stays within a path component, `**` crosses `/`). A push that would
go over is refused with 403 DENIED before anything of it becomes visible; one that adds
nothing (the same blob, manifest or tag again) is always accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

from client.oci.digest import Digest

from .. import errors, metrics
from ..config import QuotaRule, glob_regex
from . import paths
from .drivers.base import StorageDriver
from .examine import Reference
from .links import link_exists
from .usage import Usage, UsageCounter, held

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(size: int) -> str:
    """`999 B`, `12.3 MiB`, `9.99 GiB`: three significant digits, binary units."""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{size} B"
    decimals = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{decimals}f} {_UNITS[unit]}"


class Quotas:
    def __init__(self, driver: StorageDriver, rules: Iterable[QuotaRule],
                 usage: UsageCounter) -> None:
        self.driver = driver
        self.rules = tuple(rules)
        self.usage = usage
        self._globs = [glob_regex(r.repositories) for r in self.rules]

    def publish(self, counted: dict[str, Usage]) -> None:
        """Set the quota gauges from an exact recount: the repositories a rule covers."""
        gauges = (metrics.QUOTA_USED_BYTES, metrics.QUOTA_LIMIT_BYTES, metrics.QUOTA_USED_TAGS,
                  metrics.QUOTA_LIMIT_TAGS)
        for gauge in gauges:
            gauge.clear()  # (repositories gone since drop out)
        for name, usage in counted.items():
            found = self.rule(name)
            if found is None:
                continue
            rule = found[1]
            metrics.QUOTA_USED_BYTES.labels(name).set(usage.bytes)
            metrics.QUOTA_USED_TAGS.labels(name).set(usage.tags)
            if rule.maxbytes is not None:
                metrics.QUOTA_LIMIT_BYTES.labels(name).set(rule.maxbytes)
            if rule.maxtags is not None:
                metrics.QUOTA_LIMIT_TAGS.labels(name).set(rule.maxtags)

    def rule(self, name: str) -> tuple[int, QuotaRule] | None:
        """The rule that applies to `name` (with its position in `berth.quotas`)."""
        for number, (rule, glob) in enumerate(zip(self.rules, self._globs, strict=True)):
            if glob.fullmatch(name):
                return number, rule
        return None

    async def admit_blob(self, name: str, digest: Digest, size: int) -> None:
        """Before a blob is linked into `name` (upload commit, mount)."""
        found = self.rule(name)
        if found is None or found[1].maxbytes is None or await held(self.driver, name, digest):
            return
        await self._check_bytes(name, found, size)

    async def admit_manifest(self, name: str, digest: Digest, size: int,
                             blobs: Iterable[Reference], tags: Iterable[str]) -> None:
        """Before a manifest push stores anything: its own bytes and those of the blobs it
        names that `name` does not hold yet (foreign layers at their URLs are not stored),
        and the tags it would create."""
        found = self.rule(name)
        if found is None:
            return
        rule = found[1]
        if rule.maxbytes is not None:
            needed = 0 if await held(self.driver, name, digest) else size
            for ref in blobs:
                if ref.digest != digest and not ref.at_urls and not await held(
                        self.driver, name, ref.digest):
                    needed += max(ref.sizes, default=0)
            await self._check_bytes(name, found, needed)
        if rule.maxtags is not None:
            new = [t for t in dict.fromkeys(tags)
                   if not await link_exists(self.driver, paths.tag_link(name, t))]
            used = (await self.usage.current(name)).tags
            if new and used + len(new) > rule.maxtags:
                raise errors.Denied(
                    f"{_which(found)}: {rule.maxtags} tags; this push adds {len(new)} more, "
                    f"{used} used", detail=_detail(found, "tags", rule.maxtags, used, len(new)))

    async def _check_bytes(self, name: str, found: tuple[int, QuotaRule], needed: int) -> None:
        limit = found[1].maxbytes
        if limit is None or needed <= 0:
            return
        used = (await self.usage.current(name)).bytes
        if used + needed > limit:
            raise errors.Denied(
                f"{_which(found)}: {format_size(limit)} stored bytes; this push needs "
                f"{format_size(needed)} more, {format_size(used)} used",
                detail=_detail(found, "bytes", limit, used, needed))


def _which(found: tuple[int, QuotaRule]) -> str:
    return f"quota of {found[1].repositories} (berth.quotas[{found[0]}])"


def _detail(found: tuple[int, QuotaRule], what: str, limit: int, used: int,
            needed: int) -> dict[str, object]:
    return {"quota": f"berth.quotas[{found[0]}]", "repositories": found[1].repositories,
            "of": what, "max": limit, "used": used, "needed": needed}
