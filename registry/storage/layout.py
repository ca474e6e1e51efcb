"""The storage layout's version, recorded in storage (`_layout`), so that a Berth meeting
a root written by a newer one refuses it instead of misreading it, and a later Berth can
tell what it must migrate. Version 1: distribution's v2 tree, which Berth reads and writes
as it is, plus Berth's own keys (indexes, use records, GC and fsck state, usage, pulls;
paths.py lists them). A root without the record (new, or written by distribution or an
older Berth) is version 1: it gets the record when a Berth that may write first serves it.
"""

from __future__ import annotations

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver

LAYOUT = 1  # the version this Berth reads and writes


class LayoutError(Exception):
    """Storage this Berth must not serve."""


async def check(driver: StorageDriver, write: bool) -> int:
    """The root's layout version; record ours where none is (when `write`); refuse one
    newer than this Berth knows."""
    try:
        text = (await driver.get(paths.LAYOUT_VERSION)).decode("ascii", "replace").strip()
    except PathNotFoundError:
        if write:
            await driver.put(paths.LAYOUT_VERSION, f"{LAYOUT}\n".encode())
        return LAYOUT
    if not text.isdigit():
        raise LayoutError(f"{driver.location}: the layout record ({paths.LAYOUT_VERSION}) "
                          f"holds {text[:40]!r}, not a version number")
    found = int(text)
    if found > LAYOUT:
        raise LayoutError(f"{driver.location} was written by a newer Berth (storage layout "
                          f"{found}; this one knows up to {LAYOUT}): upgrade this Berth")
    return found
