"""Many storage requests at once, but a bounded number: a manifest of 25,000 layers or a
push of 400 tags must neither run its requests one by one nor queue thousands of them in
front of every other request's storage work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def each(limit: int, items: Iterable[T], work: Callable[[T], Awaitable[R]]) -> list[R]:
    """`work(item)` for every item, at most `limit` running at once; results in order.
    The first failure cancels what has not finished and is raised."""
    pending = list(items)
    results: list[R | None] = [None] * len(pending)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(pending):
            index = position
            position += 1
            results[index] = await work(pending[index])

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(pending)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return results  # type: ignore[return-value]  # every slot was filled
