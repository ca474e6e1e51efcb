"""What `berth inspect` shows: an image's manifest, platforms, config and layers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .oci.manifest import parse_manifest
from .remote import FetchedManifest

if TYPE_CHECKING:
    from .client import Client


@dataclass
class ImageInfo:
    reference: str
    digest: str
    media_type: str
    size: int
    platforms: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "digest": self.digest,
                               "mediaType": self.media_type, "size": self.size}
        if self.platforms:
            out["platforms"] = self.platforms
        else:
            out["config"] = self.config
            out["layers"] = self.layers
        return out

    def as_text(self) -> str:
        lines = [f"{self.reference}", f"  digest:     {self.digest}",
                 f"  media type: {self.media_type} ({self.size} bytes)"]
        if self.platforms:
            lines.append("  platforms:")
            for p in self.platforms:
                version = f" {p['os.version']}" if p.get("os.version") else ""
                lines.append(f"    {p['platform']}{version}  {p['digest']}")
            return "\n".join(lines)
        cfg = self.config
        platform = f"{cfg.get('os', '?')}/{cfg.get('architecture', '?')}"
        if cfg.get("variant"):
            platform += f"/{cfg['variant']}"
        lines.append(f"  platform:   {platform}"
                     + (f" (os.version {cfg['os.version']})" if cfg.get("os.version") else ""))
        if cfg.get("created"):
            lines.append(f"  created:    {cfg['created']}")
        total = sum(layer["size"] for layer in self.layers)
        lines.append(f"  layers:     {len(self.layers)}, {total} bytes")
        for layer in self.layers:
            mark = "  [foreign: " + ", ".join(layer["urls"]) + "]" if layer["foreign"] else ""
            lines.append(f"    {layer['digest']}  {layer['size']:>12}  {layer['mediaType']}{mark}")
        return "\n".join(lines)


async def describe(client: Client, reference: str, fetched: FetchedManifest) -> ImageInfo:
    manifest = parse_manifest(fetched.data, fetched.media_type)
    info = ImageInfo(reference, str(fetched.digest), fetched.media_type, len(fetched.data))
    if manifest.is_index:
        for desc in manifest.manifests:
            p = desc.platform
            text = f"{p.os}/{p.architecture}" + (f"/{p.variant}" if p and p.variant else "") \
                if p else "unknown"
            entry: dict[str, Any] = {"platform": text, "digest": str(desc.digest),
                                     "mediaType": desc.media_type, "size": desc.size}
            if p and p.os_version:
                entry["os.version"] = p.os_version
            info.platforms.append(entry)
        return info
    if manifest.config is not None:
        raw = await client.blob(reference, manifest.config.digest)
        try:
            config = json.loads(raw)
        except ValueError:
            config = {}
        info.config = config if isinstance(config, dict) else {}
    for layer in manifest.layers:
        info.layers.append({"digest": str(layer.digest), "size": layer.size,
                            "mediaType": layer.media_type, "foreign": layer.foreign,
                            "urls": list(layer.urls)})
    return info
