"""Failed-login throttling: after `attempts` failures within `window` seconds, a user name
or a client address is refused (429 with Retry-After) until its oldest failure ages out.

State is bounded: at most `tracked` keys, the least recently failed forgotten first, so a
flood of made-up user names cannot grow memory without limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque


class LoginThrottle:
    def __init__(self, attempts: int, window: float, tracked: int = 10_000) -> None:
        self.attempts, self.window, self.tracked = attempts, window, tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @staticmethod
    def keys(user: str | None, address: str | None) -> list[str]:
        return [k for k in (f"user:{user}" if user else None,
                            f"addr:{address}" if address else None) if k]

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, user: str | None, address: str | None) -> int | None:
        """Seconds until another attempt is allowed, or None when it is allowed now."""
        now = time.monotonic()
        wait = 0.0
        for key in self.keys(user, address):
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.attempts:
                wait = max(wait, failures[0] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, user: str | None, address: str | None) -> None:
        now = time.monotonic()
        for key in self.keys(user, address):
            failures = self._recent(key, now) or deque(maxlen=self.attempts)
            failures.append(now)
            self._failures[key] = failures
            self._failures.move_to_end(key)
        while len(self._failures) > self.tracked:
            self._failures.popitem(last=False)
