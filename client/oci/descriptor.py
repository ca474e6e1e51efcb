"""Content descriptors (image-spec `descriptor.md`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import mediatypes
from .digest import Digest, DigestError


class DescriptorError(ValueError):
    """A descriptor that does not follow the image-spec."""


@dataclass(frozen=True, slots=True)
class Platform:
    architecture: str
    os: str
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    variant: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> Platform:
        if not isinstance(value, Mapping):
            raise DescriptorError("platform must be an object")
        arch, os_ = value.get("architecture"), value.get("os")
        if not isinstance(arch, str) or not isinstance(os_, str):
            raise DescriptorError("platform needs string 'architecture' and 'os'")
        features = value.get("os.features") or ()
        if not isinstance(features, list | tuple) or not all(isinstance(f, str) for f in features):
            raise DescriptorError("platform 'os.features' must be a list of strings")
        version, variant = value.get("os.version"), value.get("variant")
        if version is not None and not isinstance(version, str):
            raise DescriptorError("platform 'os.version' must be a string")
        if variant is not None and not isinstance(variant, str):
            raise DescriptorError("platform 'variant' must be a string")
        return cls(arch, os_, version, tuple(features), variant)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Platform | None = None

    @property
    def foreign(self) -> bool:
        return mediatypes.is_foreign(self.media_type)

    @classmethod
    def from_json(cls, value: Any, where: str = "descriptor") -> Descriptor:
        if type(value) is not dict and not isinstance(value, Mapping):  # dict: the fast test
            raise DescriptorError(f"{where} must be an object")
        media_type = value.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise DescriptorError(f"{where}: 'mediaType' must be a non-empty string")
        try:
            digest = Digest.parse(value.get("digest"))  # type: ignore[arg-type]
        except DigestError as exc:
            raise DescriptorError(f"{where}: {exc}") from None
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DescriptorError(f"{where}: 'size' must be a non-negative integer")
        urls = value.get("urls") or ()
        if urls and (not isinstance(urls, list) or not all(isinstance(u, str) for u in urls)):
            raise DescriptorError(f"{where}: 'urls' must be a list of strings")
        annotations = value.get("annotations") or {}
        if annotations and (not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        )):
            raise DescriptorError(f"{where}: 'annotations' must map strings to strings")
        artifact_type = value.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise DescriptorError(f"{where}: 'artifactType' must be a string")
        platform = value.get("platform")
        try:
            parsed_platform = Platform.from_json(platform) if platform is not None else None
        except DescriptorError as exc:
            raise DescriptorError(f"{where}: {exc}") from None
        return cls(
            media_type, digest, size, tuple(urls), dict(annotations), artifact_type,
            parsed_platform,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            out["platform"] = self.platform.to_json()
        return out
