"""OCI image layouts and images built by hand (standard library only, never the Berth
client), shared by the interoperability and client tests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, digest

REF_NAME = "org.opencontainers.image.ref.name"


class Layout:
    """An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, root: Path) -> Layout:
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        (root / "index.json").write_text(json.dumps(index))
        return cls(root)

    def add_blob(self, data: bytes) -> str:
        d = digest(data)
        (self.root / "blobs" / "sha256" / d.split(":", 1)[1]).write_bytes(data)
        return d

    def blob(self, d: str) -> bytes:
        algorithm, hex_ = d.split(":", 1)
        return (self.root / "blobs" / algorithm / hex_).read_bytes()

    def blobs(self) -> dict[str, bytes]:
        """Every blob file by digest, each checked to hash to its own name."""
        found: dict[str, bytes] = {}
        for path in (self.root / "blobs").glob("*/*"):
            d = f"{path.parent.name}:{path.name}"
            data = path.read_bytes()
            assert digest(data, path.parent.name) == d, f"{path} does not match its name"
            found[d] = data
        return found

    def index(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "index.json").read_text()))

    def tag(self, ref: str, media_type: str, data: bytes, **extra: Any) -> None:
        """Point `ref` at a manifest (or index) stored as a blob of this layout."""
        self.add_blob(data)
        index = self.index()
        desc = descriptor(media_type, data, **extra, annotations={REF_NAME: ref})
        index["manifests"].append(desc)
        (self.root / "index.json").write_text(json.dumps(index))

    def resolve(self, ref: str) -> dict[str, Any]:
        matches = [
            m for m in self.index()["manifests"] if m.get("annotations", {}).get(REF_NAME) == ref
        ]
        assert len(matches) == 1, self.index()
        return dict(matches[0])


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A deterministic tar archive (fixed mtime, owner and mode) of small regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@dataclass(frozen=True)
class Image:
    manifest: bytes
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def digest(self) -> str:
        return digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return digest(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [digest(layer) for layer in self.layers]

    @property
    def blobs(self) -> dict[str, bytes]:
        """Config and layers (not the manifest) by digest."""
        return {digest(b): b for b in (self.config, *self.layers)}


def build_image(layout: Layout, label: str, arch: str = "amd64",
                variant: str | None = None) -> Image:
    """Three gzip tar layers with different files, a config whose `rootfs.diff_ids` are the
    uncompressed layer digests, and an OCI manifest (pretty-printed, so any registry that
    re-serialised it would change its digest)."""
    layers: list[bytes] = []
    diff_ids: list[str] = []
    for n in range(3):
        tar = tar_bytes({
            f"{label}/layer-{n}.txt": f"{label}: layer {n}\n".encode(),
            f"etc/{label}-{n}.conf": f"value={n}\n".encode() * (n + 1),
        })
        layers.append(gzip.compress(tar, mtime=0))
        diff_ids.append(digest(tar))
    platform: dict[str, Any] = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    config = json.dumps({
        **platform,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {n}"}
                    for n in range(3)],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
        "annotations": {"org.opencontainers.image.title": label},
    }, indent=3).encode()
    for blob in (config, *layers):
        layout.add_blob(blob)
    return Image(manifest, config, tuple(layers))


def layout_image(root: Path, label: str, tag: str = "v1") -> tuple[Layout, Image]:
    """A new layout holding one image (content unique to `label`), tagged `tag`."""
    layout = Layout.create(root)
    image = build_image(layout, label)
    layout.tag(tag, OCI_MANIFEST, image.manifest)
    return layout, image


def platform_of(image: Image) -> dict[str, str]:
    config = json.loads(image.config)
    return {k: config[k] for k in ("architecture", "os", "variant") if k in config}


def build_index(layout: Layout, images: list[Image]) -> bytes:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(OCI_MANIFEST, image.manifest, platform=platform_of(image))
            for image in images
        ],
    }
    for image in images:
        layout.add_blob(image.manifest)
    return json.dumps(index, indent=2).encode()
