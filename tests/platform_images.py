"""Images for the platform tests, built by hand (standard library only): a Linux image and
Windows images of several `os.version`s in one index, in an OCI layout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from .helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, digest
from .layouts import Layout, tar_bytes

WINDOWS_VERSIONS = ("10.0.17763.5000", "10.0.20348.1000", "10.0.20348.2000",
                    "10.0.26100.100")


def platform_image(layout: Layout, os_name: str, arch: str = "amd64",
                   os_version: str | None = None, runtime: dict[str, Any] | None = None
                   ) -> tuple[bytes, dict[str, str]]:
    """An image manifest (its blobs added to `layout`) and its platform."""
    label = f"{os_name}-{arch}-{os_version or 'any'}"
    files = {"Files/app/id.txt" if os_name == "windows" else "app/id.txt": label.encode()}
    tar = tar_bytes(files)
    layer = gzip.compress(tar, mtime=0)
    platform = {"architecture": arch, "os": os_name}
    if os_version:
        platform["os.version"] = os_version
    config = json.dumps({**platform, "config": runtime or {"Env": [f"IMAGE={label}"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(tar)]}}).encode()
    for blob in (layer, config):
        layout.add_blob(blob)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config),
                           "layers": [descriptor(OCI_LAYER, layer)]}, indent=2).encode()
    layout.add_blob(manifest)
    return manifest, platform


def mixed_index(root: Path, arch: str = "amd64") -> tuple[Layout, dict[str, str]]:
    """A layout tagged `multi`: an index of linux/amd64 first, then Windows images of
    WINDOWS_VERSIONS (oldest first). Returns the layout and manifest digest by entry
    (`linux`, or the os.version)."""
    layout = Layout.create(root)
    entries, found = [], {}
    for os_name, version in [("linux", None), *(("windows", v) for v in WINDOWS_VERSIONS)]:
        manifest, platform = platform_image(layout, os_name, arch, version)
        entries.append(descriptor(OCI_MANIFEST, manifest, platform=platform))
        found[version or "linux"] = digest(manifest)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                       indent=2).encode()
    layout.tag("multi", OCI_INDEX, index)
    return layout, found


def single_image(root: Path, os_name: str = "linux", arch: str = "amd64",
                 os_version: str | None = None) -> Layout:
    """A layout tagged `one`: a single image (no index) of that platform."""
    layout = Layout.create(root)
    manifest, _ = platform_image(layout, os_name, arch, os_version)
    layout.tag("one", OCI_MANIFEST, manifest)
    return layout
