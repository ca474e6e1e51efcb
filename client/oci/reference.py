"""Repository names, tags, registry hosts and image references: the one parser and the
one printer every command uses.

An image reference is `[SCHEME]HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]` with Docker Hub
defaults (`busybox` is `docker.io/library/busybox:latest`). SCHEME is optional:
`docker://` (as skopeo writes it) changes nothing, `http://` means plain HTTP to that host
and `https://` TLS. A registry alone (catalog, login) is `[SCHEME]HOST[:PORT]`.
"""

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
# Docker's domain grammar (with bracketed IPv6), and an optional port.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
HOST_RE = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
SCHEMES = {"docker://": None, "http://": "http", "https://": "https"}


class InvalidReferenceError(ValueError):
    """An invalid repository name, tag or image reference."""


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and NAME_RE.match(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def _split_scheme(text: str) -> tuple[str | None, str]:
    """(the transport a leading scheme asks for, the rest)."""
    lowered = text.lower()
    for prefix, scheme in SCHEMES.items():
        if lowered.startswith(prefix):
            return scheme, text[len(prefix):]
    return None, text


def _api_host(host: str) -> str:
    """The host to talk HTTP to (Docker Hub's API lives on another name)."""
    return _DOCKER_HUB_API if host == DOCKER_HUB else host


def display(registry: str, repository: str, identifier: str | None = None,
            scheme: str | None = None) -> str:
    """The printed form of a repository, or of one of its manifests when `identifier` (a
    tag, or a digest, which is written after `@`) is given."""
    out = f"{scheme}://" if scheme else ""
    out += f"{registry}/{repository}"
    if identifier:
        out += ("@" if ":" in identifier else ":") + identifier
    return out


@dataclass(frozen=True, slots=True)
class Registry:
    """A registry host as a command names it."""

    host: str  # HOST[:PORT], as written (Docker Hub: docker.io)
    scheme: str | None = None  # "http" or "https" when written; None: the client decides

    @property
    def api_host(self) -> str:
        return _api_host(self.host)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" if self.scheme else self.host

    @classmethod
    def parse(cls, value: str) -> Registry:
        """`HOST[:PORT]`, `http://HOST[:PORT]`, `https://…` or `docker://…`; a trailing `/`
        (and Docker's `/v1/` or `/v2/` of `https://index.docker.io/v1/`) is ignored."""
        scheme, text = _split_scheme(value.strip())
        host, _, path = text.partition("/")
        if path.strip("/") not in ("", "v1", "v2"):
            raise InvalidReferenceError(f"{value!r}: a registry is HOST[:PORT], not a repository")
        if not HOST_RE.match(host):
            raise InvalidReferenceError(f"{value!r}: invalid registry host {host!r}")
        host = host.lower()
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = DOCKER_HUB
        return cls(host, scheme)


@dataclass(frozen=True, slots=True)
class Reference:
    """`host[:port]/repository[:tag][@digest]`, with Docker Hub defaults filled in."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None
    scheme: str | None = None  # "http" or "https" when the reference said so

    @property
    def api_host(self) -> str:
        """The host to talk HTTP to (Docker Hub's API lives on another name)."""
        return _api_host(self.registry)

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    @property
    def host(self) -> Registry:
        return Registry(self.registry, self.scheme)

    def __str__(self) -> str:
        out = display(self.registry, self.repository, self.tag, self.scheme)
        return out + (f"@{self.digest}" if self.digest else "")

    @classmethod
    def parse(cls, value: str) -> Reference:
        scheme, text = _split_scheme(value.strip())
        if not text:
            raise InvalidReferenceError("empty image reference")
        digest = None
        if "@" in text:
            text, _, digest_text = text.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except DigestError as exc:
                raise InvalidReferenceError(f"{value!r}: {exc}") from None
        # The first component is a registry host when it has '.', ':' or is 'localhost', or
        # when an http(s):// scheme says a host comes first.
        first, sep, rest = text.partition("/")
        if sep and (scheme is not None or "." in first or ":" in first
                    or first == "localhost"):
            if not HOST_RE.match(first):
                raise InvalidReferenceError(f"{value!r}: invalid registry host {first!r}")
            registry, remainder = first.lower(), rest
        elif scheme is not None:
            raise InvalidReferenceError(f"{value!r}: no repository after the registry host")
        else:
            registry, remainder = DOCKER_HUB, text
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = DOCKER_HUB
        tag = None
        last_slash = remainder.rfind("/")
        colon = remainder.rfind(":")
        if colon > last_slash:
            remainder, tag = remainder[:colon], remainder[colon + 1 :]
            if not is_valid_tag(tag):
                raise InvalidReferenceError(f"{value!r}: invalid tag {tag!r}")
        if registry == DOCKER_HUB and "/" not in remainder:
            remainder = f"library/{remainder}"
        if not is_valid_name(remainder):
            raise InvalidReferenceError(f"{value!r}: invalid repository name {remainder!r}")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, remainder, tag, digest, scheme)
