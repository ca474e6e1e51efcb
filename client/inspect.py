"""What `berth inspect` shows: an image's manifest, platforms, config (the runtime part
too: entrypoint, command, environment) and layers; with a platform, the index entry the
selection rule of `client.platforms` chooses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .content import ManifestBytes
from .image import ImageSource, manifest_of, read_config
from .oci import mediatypes as mt
from .platforms import PlatformMatcher, platform_text, select_image

if TYPE_CHECKING:
    from .events import Events

_RUNTIME = (("Entrypoint", "entrypoint"), ("Cmd", "cmd"), ("WorkingDir", "workdir"),
            ("User", "user"))


@dataclass
class ImageInfo:
    reference: str
    digest: str
    media_type: str
    size: int
    platforms: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    data: bytes = b""  # the manifest's bytes, as served
    chosen: str | None = None  # the index entry a platform request chose

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "digest": self.digest,
                               "mediaType": self.media_type, "size": self.size}
        if self.chosen:
            out["platform"] = self.chosen
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
        found = cfg.get("config")
        runtime: dict[str, Any] = found if isinstance(found, dict) else {}
        for key, label in _RUNTIME:
            if runtime.get(key):
                value = runtime[key]
                shown = json.dumps(value) if isinstance(value, list) else str(value)
                lines.append(f"  {label + ':':<11} {shown}")
        for key, label in (("Env", "env"), ("Labels", "labels")):
            value = runtime.get(key)
            items = (value if isinstance(value, list) else
                     [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else [])
            if items:
                lines.append(f"  {label}:")
                lines.extend(f"    {item}" for item in items)
        total = sum(layer["size"] for layer in self.layers)
        lines.append(f"  layers:     {len(self.layers)}, {total} bytes")
        for layer in self.layers:
            mark = "  [foreign: " + ", ".join(layer["urls"]) + "]" if layer["foreign"] else ""
            lines.append(f"    {layer['digest']}  {layer['size']:>12}  {layer['mediaType']}{mark}")
        return "\n".join(lines)


async def describe(source: ImageSource, reference: str,
                   platform: PlatformMatcher | None = None,
                   events: Events | None = None) -> ImageInfo:
    """What `reference` (opened as `source`) is; with `platform`, the image it selects."""
    if platform is not None:
        selected = await select_image(source, platform, events)
        fetched, manifest = selected.fetched, selected.manifest
        chosen = platform_text(selected.platform) if selected.platform else None
    else:
        fetched = await source.root()
        manifest, chosen = manifest_of(fetched), None
    info = _info(reference, fetched, chosen)
    if manifest.is_index:
        for desc in manifest.manifests:
            p = desc.platform
            text = platform_text(p, version=False) if p else "unknown"
            entry: dict[str, Any] = {"platform": text, "digest": str(desc.digest),
                                     "mediaType": desc.media_type, "size": desc.size}
            if p and p.os_version:
                entry["os.version"] = p.os_version
            info.platforms.append(entry)
        return info
    if manifest.config is not None and manifest.config.media_type in mt.IMAGE_CONFIGS:
        info.config = await read_config(source, manifest.config)
    for layer in manifest.layers:
        info.layers.append({"digest": str(layer.digest), "size": layer.size,
                            "mediaType": layer.media_type, "foreign": layer.foreign,
                            "urls": list(layer.urls)})
    return info


def _info(reference: str, fetched: ManifestBytes, chosen: str | None) -> ImageInfo:
    return ImageInfo(reference, str(fetched.digest), fetched.media_type, len(fetched.data),
                     data=fetched.data, chosen=chosen)
