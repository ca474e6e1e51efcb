"""Repository names, tags and image references (distribution-spec and Docker grammar)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digest import Digest, DigestError

# distribution-spec: <name> components separated by '/'.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# Many clients limit host + '/' + name to 255 characters; the name alone may not exceed it.
NAME_MAX_LENGTH = 255

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"


class ReferenceError(ValueError):
    """An invalid repository name, tag or image reference."""


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and NAME_RE.match(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


@dataclass(frozen=True, slots=True)
class Reference:
    """`host[:port]/repository[:tag][@digest]`, with Docker Hub defaults filled in."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def api_host(self) -> str:
        """The host to talk HTTP to (Docker Hub's API lives on another name)."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @classmethod
    def parse(cls, value: str) -> Reference:
        text = value.strip()
        if not text:
            raise ReferenceError("empty image reference")
        digest = None
        if "@" in text:
            text, _, digest_text = text.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except DigestError as exc:
                raise ReferenceError(f"{value!r}: {exc}") from None
        # The first component is a registry host when it has '.', ':' or is 'localhost'.
        first, sep, rest = text.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, remainder = first, rest
        else:
            registry, remainder = DOCKER_HUB, text
        tag = None
        last_slash = remainder.rfind("/")
        colon = remainder.rfind(":")
        if colon > last_slash:
            remainder, tag = remainder[:colon], remainder[colon + 1 :]
            if not is_valid_tag(tag):
                raise ReferenceError(f"{value!r}: invalid tag {tag!r}")
        if registry == DOCKER_HUB and "/" not in remainder:
            remainder = f"library/{remainder}"
        if not is_valid_name(remainder):
            raise ReferenceError(f"{value!r}: invalid repository name {remainder!r}")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, remainder, tag, digest)
