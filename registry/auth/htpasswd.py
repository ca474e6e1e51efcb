"""Users and their bcrypt password hashes, from a file in the format `htpasswd -B` writes.

Checking a password costs one bcrypt verification (tens of milliseconds by design), so it
runs off the event loop, and an unknown user costs the same verification against a dummy
hash of the file's own cost: the answer time does not tell which users exist.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from ..config import ConfigError, read_file

_BCRYPT = re.compile(rb"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
DEFAULT_COST = 10


class HtpasswdError(ConfigError):
    """A file that cannot be used; the message names the line."""


@dataclass(frozen=True)
class Htpasswd:
    hashes: dict[str, bytes]
    dummy: bytes  # what an unknown user's password is checked against

    @classmethod
    def parse(cls, text: str, where: str = "htpasswd") -> Htpasswd:
        hashes: dict[str, bytes] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            encoded = hashed.strip().encode()
            if not sep or not user:
                raise HtpasswdError(f"{where}:{number}: expected user:hash")
            if not _BCRYPT.match(encoded):
                raise HtpasswdError(
                    f"{where}:{number}: {user}'s entry is not bcrypt (write it with htpasswd -B)")
            hashes[user] = encoded
        costs = [int(m.group(1)) for h in hashes.values() if (m := _BCRYPT.match(h))]
        cost = max(costs, default=DEFAULT_COST)
        dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        return cls(hashes, dummy)

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        return cls.parse(read_file(path, HtpasswdError), str(path))

    def check(self, user: str, password: str) -> bool:
        """Blocking (bcrypt): True when the password is the user's."""
        hashed = self.hashes.get(user)
        try:  # bcrypt reads 72 bytes at most; `htpasswd -B` hashed no more than that
            matches = bcrypt.checkpw(password.encode()[:72], hashed or self.dummy)
        except ValueError:  # e.g. a NUL in the password
            matches = False
        return matches and hashed is not None

    def fingerprint(self, user: str) -> str | None:
        """Changes when the user's password does (refresh tokens carry it), None when the
        user is gone."""
        hashed = self.hashes.get(user)
        return hashlib.sha256(hashed).hexdigest()[:16] if hashed else None
