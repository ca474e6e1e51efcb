"""Parsing and checking image manifests and indexes (OCI and Docker schema 2).

The bytes of a manifest are what its digest covers, so parsing never re-serialises
them: `Manifest` keeps the parsed view beside the original bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import mediatypes as mt
from .descriptor import Descriptor, DescriptorError
from .jsondoc import JSONDocumentError, loads


class ManifestError(ValueError):
    """Bytes that are not an acceptable schema 2 manifest or index."""


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    data: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    declared: bool = True  # False: the bytes carry no `mediaType`; it came from elsewhere

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    def blobs(self) -> Iterator[Descriptor]:
        """Config and layers: the blobs an image manifest needs."""
        if self.config is not None:
            yield self.config
        yield from self.layers

    def effective_artifact_type(self) -> str | None:
        """The artifact type a referrers listing shows: `artifactType`, else the config's."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and not self.is_index:
            return self.config.media_type
        return None


def _descriptors(doc: Mapping[str, Any], key: str, required: bool) -> tuple[Descriptor, ...]:
    value = doc.get(key)
    if value is None:
        if required:
            raise ManifestError(f"'{key}' is required")
        return ()
    if not isinstance(value, list):
        raise ManifestError(f"'{key}' must be a list")
    return tuple(Descriptor.from_json(v, f"{key}[{i}]") for i, v in enumerate(value))


def parse_manifest(data: bytes, content_type: str | None = None) -> Manifest:
    """Parse manifest bytes; `content_type` is the Content-Type they were sent or stored with.

    The media type is the document's `mediaType`, else the Content-Type, else inferred
    from the shape (`manifests` → index, `config` → image manifest). A `mediaType` that
    disagrees with a manifest Content-Type is an error, as are schema 1 and unknown types.
    """
    try:
        doc = loads(data)
    except JSONDocumentError as exc:
        raise ManifestError(str(exc)) from None
    if not isinstance(doc, dict):
        raise ManifestError("a manifest must be a JSON object")
    header_type = mt.base_type(content_type)
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("'mediaType' must be a string")
    if header_type in mt.SCHEMA1 or declared in mt.SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ManifestError("Docker schema 1 manifests are not supported")
    if declared and header_type in mt.MANIFESTS and declared != header_type:
        raise ManifestError(f"mediaType {declared!r} does not match Content-Type {header_type!r}")
    media_type = declared or (header_type if header_type in mt.MANIFESTS else None)
    if media_type is None:
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type not in mt.MANIFESTS:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    version = doc.get("schemaVersion")
    if version != 2 or isinstance(version, bool):
        raise ManifestError("'schemaVersion' must be 2")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError("'artifactType' must be a string")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ManifestError("'annotations' must map strings to strings")
    try:
        subject = (
            Descriptor.from_json(doc["subject"], "subject") if doc.get("subject") is not None
            else None
        )
        if media_type in mt.INDEXES:
            if "config" in doc or "layers" in doc:
                raise ManifestError("an index must not have 'config' or 'layers'")
            return Manifest(
                media_type, data, manifests=_descriptors(doc, "manifests", required=True),
                subject=subject, artifact_type=artifact_type, annotations=annotations,
                declared=bool(declared),
            )
        if "manifests" in doc:
            raise ManifestError("an image manifest must not have 'manifests'")
        if doc.get("config") is None:
            raise ManifestError("'config' is required")
        config = Descriptor.from_json(doc["config"], "config")
        layers = _descriptors(doc, "layers", required=media_type == mt.DOCKER_MANIFEST)
    except DescriptorError as exc:
        raise ManifestError(str(exc)) from None
    return Manifest(
        media_type, data, config=config, layers=layers, subject=subject,
        artifact_type=artifact_type, annotations=annotations, declared=bool(declared),
    )


def declared_media_type(data: bytes) -> str:
    """A manifest's media type from its bytes alone (its `mediaType`, else its shape)."""
    try:
        doc = loads(data)
    except JSONDocumentError:
        return mt.OCI_MANIFEST
    if not isinstance(doc, dict):
        return mt.OCI_MANIFEST
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
