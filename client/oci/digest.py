"""Content digests (`algorithm:hex`) as defined by the OCI image-spec."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

# The algorithms Berth accepts everywhere: the two the image-spec registers.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"

# Grammar from the image-spec: algorithm ":" encoded.
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# What a valid digest of a supported algorithm looks like, as one match (manifests carry
# thousands of descriptors: the checks below name what is wrong only when this fails).
_VALID = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


class Hasher(Protocol):
    """The subset of hashlib objects Berth relies on."""

    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


class DigestError(ValueError):
    """A string that is not a valid digest of a supported algorithm."""


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate `sha256:<64 hex>` / `sha512:<128 hex>`."""
        valid = _VALID.fullmatch(value) if isinstance(value, str) else None
        if valid is not None:
            return cls(valid[1], valid[2]) if valid[1] else cls(valid[3], valid[4])
        if not isinstance(value, str) or not _GRAMMAR.match(value):
            raise DigestError(f"invalid digest {value!r}")
        algorithm, _, encoded = value.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != length or not all(c in "0123456789abcdef" for c in encoded):
            raise DigestError(f"invalid {algorithm} digest {value!r}")
        return cls(algorithm, encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        h = new_hasher(algorithm)
        h.update(data)
        return cls(algorithm, h.hexdigest())

    @classmethod
    def from_hasher(cls, algorithm: str, hasher: Hasher) -> Digest:
        return cls(algorithm, hasher.hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def new_hasher(algorithm: str = CANONICAL) -> Hasher:
    if algorithm not in ALGORITHMS:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)
