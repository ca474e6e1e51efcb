"""Password checks: throttled per user and address, bcrypt off the event loop, and a short
in-memory memo of recent successes so a client sending Basic credentials on every request
does not pay a bcrypt verification each time."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from .. import errors
from .files import AuthFiles
from .throttle import LoginThrottle

MEMO_SECONDS = 60.0
MEMO_SIZE = 4096


class LoginFailed(errors.Unauthorized):
    default_message = "authentication failed"


class Users:
    def __init__(self, files: AuthFiles, throttle: LoginThrottle) -> None:
        self.files, self.throttle = files, throttle
        self._memo_key = secrets.token_bytes(32)
        self._memo: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    def _memo_id(self, user: str, password: str) -> bytes:
        return hmac.new(self._memo_key, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    def _remembered(self, key: bytes, generation: int) -> bool:
        found = self._memo.get(key)
        return found is not None and found[0] > time.monotonic() and found[1] == generation

    async def authenticate(self, user: str, password: str, address: str | None) -> str:
        """The user's name when the password is right; raises Unauthorized (same message for
        unknown users and wrong passwords) or TooManyRequests."""
        directory = self.files.current
        if directory.htpasswd is None:
            raise LoginFailed("this registry has no password logins")
        key = self._memo_id(user, password)
        if self._remembered(key, directory.generation):
            return user
        wait = self.throttle.retry_after(user, address)
        if wait is not None:
            raise errors.TooManyRequests(
                "too many failed logins, try again later", headers={"Retry-After": str(wait)})
        if not await asyncio.to_thread(directory.htpasswd.check, user, password):
            self.throttle.failed(user, address)
            raise LoginFailed()
        self._memo[key] = (time.monotonic() + MEMO_SECONDS, directory.generation)
        self._memo.move_to_end(key)
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return user
