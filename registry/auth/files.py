"""The htpasswd and policy files, reloaded without a restart: on SIGHUP, and when a
periodic check sees a file change. A file that no longer parses is logged and the last
good contents stay in force, so a half-saved edit never locks everyone out.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .htpasswd import Htpasswd, HtpasswdError
from .policy import USERS_MAY_DO_ALL, Policy, PolicyError

log = logging.getLogger("registry.auth")


@dataclass(frozen=True)
class LoadedFiles:
    """What the htpasswd and policy files said, read together (one consistent view)."""

    htpasswd: Htpasswd | None
    policy: Policy
    generation: int = 0


def _signature(path: Path | None) -> tuple[float, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size, st.st_ino)


class AuthFiles:
    def __init__(self, htpasswd: Path | None, policy: Path | None) -> None:
        self.htpasswd_path, self.policy_path = htpasswd, policy
        self._signatures = self._now()
        self.current = self._load(0)  # at start, errors are fatal (a config error)
        self._lock = asyncio.Lock()

    def _now(self) -> tuple[object, object]:
        return (_signature(self.htpasswd_path), _signature(self.policy_path))

    def _load(self, generation: int) -> LoadedFiles:
        users = Htpasswd.load(self.htpasswd_path) if self.htpasswd_path else None
        policy = Policy.load(self.policy_path) if self.policy_path else USERS_MAY_DO_ALL
        return LoadedFiles(users, policy, generation)

    async def reload(self, force: bool = False) -> bool:
        """Re-read the files if they changed (or `force`); True when new contents took."""
        async with self._lock:
            signatures = self._now()
            if not force and signatures == self._signatures:
                return False
            self._signatures = signatures
            try:
                loaded = await asyncio.to_thread(self._load, self.current.generation + 1)
            except (HtpasswdError, PolicyError) as exc:
                log.error("auth: keeping the previous users and policy: %s", exc)
                return False
            self.current = loaded
            users = len(loaded.htpasswd.hashes) if loaded.htpasswd else 0
            log.info("auth: loaded %d users and %d policy rules", users, len(loaded.policy.rules))
            return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception:  # never let the watcher die
                log.exception("auth: reload failed")
