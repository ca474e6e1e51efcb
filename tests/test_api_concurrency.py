"""Many clients at once against one repository: every request gets its answer."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os

import aiohttp

from .servers import BerthServer


async def _push_many(base: str, repo: str, count: int, concurrency: int) -> dict[int, int]:
    gate = asyncio.Semaphore(concurrency)
    statuses: collections.Counter[int] = collections.Counter()

    async with aiohttp.ClientSession() as session:
        async def push(data: bytes) -> None:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            async with gate, session.post(f"{base}/v2/{repo}/blobs/uploads/",
                                          params={"digest": digest}, data=data) as response:
                statuses[response.status] += 1

        await asyncio.gather(*(push(os.urandom(64 * 1024)) for _ in range(count)))
    return dict(statuses)


async def test_concurrent_monolithic_pushes_into_a_new_repository(berth: BerthServer,
                                                                  repo: str) -> None:
    """Issue 9, item 0: sessions finishing pruned `_uploads/` while others were creating
    theirs under it, and 1-3% of pushes answered 503 (every round, before the fix)."""
    for round_ in range(3):
        statuses = await _push_many(berth.url, f"{repo}-{round_}", 300, 16)
        assert statuses == {201: 300}, statuses
    assert "storage failed" not in berth.log.read_text()
