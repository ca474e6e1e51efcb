"""The client's errors, all of them: each carries a one-line message fit for a terminal,
and its class the exit code of `berth` (docs/client.md)."""

from __future__ import annotations

from typing import Any


class BerthError(Exception):
    """Base of every error the client reports to its user."""

    exit_code = 1


class UsageError(BerthError):
    exit_code = 2


class AuthError(BerthError):
    exit_code = 3


class NotFoundError(BerthError):
    exit_code = 4


class RegistryResponseError(BerthError):
    """A registry answered with an error status (and usually the spec's JSON body)."""

    def __init__(self, status: int, method: str, url: str, body: Any = None) -> None:
        self.status, self.method, self.url = status, method, url
        self.errors: list[dict[str, Any]] = []
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            self.errors = [e for e in body["errors"] if isinstance(e, dict)]
        detail = "; ".join(
            f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ")
            + (f" ({e['detail']})" if e.get("detail") else "")
            for e in self.errors
        )
        super().__init__(f"{method} {url}: HTTP {status}" + (f": {detail}" if detail else ""))

    @property
    def codes(self) -> list[str]:
        return [str(e.get("code")) for e in self.errors]


class NetworkError(BerthError):
    exit_code = 5


class DigestMismatch(BerthError):
    """Downloaded content does not match the digest or size that named it."""


class ImageError(BerthError):
    """A manifest or config that is not what it must be (malformed, nested too deeply)."""


class PackError(BerthError):
    """A directory that cannot be packed into a layer (unreadable, changing, a device)."""


class UnpackError(BerthError):
    """A layer cannot be applied: corrupt data, or an entry unsafe or unsupported."""
