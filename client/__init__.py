"""Berth's client library: copy, build, pull and inspect images between registries, OCI
layouts and `docker save` archives (docs/client.md). Programs import from here only:

    from client import Client, CopyOptions, ImageSpec

These names are the library's face and stay; the modules behind them may move. Each is
imported on first use, so `import client` (and the `berth` command, which lives in this
package) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "AuthError",
    "BerthError",
    "BlobAction",
    "Client",
    "CopyOptions",
    "CopyResult",
    "Credentials",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "Events",
    "ForeignMode",
    "ImageError",
    "ImageSpec",
    "InvalidReferenceError",
    "LayerStats",
    "ManifestBytes",
    "NetworkError",
    "NotFoundError",
    "PackError",
    "PackOptions",
    "PlatformMatcher",
    "Reference",
    "Registry",
    "RegistryResponseError",
    "ShellCommand",
    "SyncClient",
    "TransportOptions",
    "UnpackError",
    "UnpackResult",
    "UsageError",
]

if TYPE_CHECKING:
    from .auth import Credentials
    from .build import ImageSpec
    from .client import Client
    from .command import ShellCommand
    from .content import ManifestBytes
    from .copy import CopyOptions, CopyResult, ForeignMode
    from .errors import (
        AuthError,
        BerthError,
        DigestMismatch,
        ImageError,
        NetworkError,
        NotFoundError,
        PackError,
        RegistryResponseError,
        UnpackError,
        UsageError,
    )
    from .events import BlobAction, Events
    from .oci.descriptor import Descriptor
    from .oci.digest import Digest
    from .oci.reference import InvalidReferenceError, Reference, Registry
    from .pack import PackOptions
    from .platforms import PlatformMatcher
    from .pull import UnpackResult
    from .session import TransportOptions
    from .sync import SyncClient
    from .unpack import LayerStats
else:
    # Where each name lives (the module, under this package).
    _HOMES = {
        "Client": "client", "SyncClient": "sync", "Credentials": "auth",
        "TransportOptions": "session",
        "Reference": "oci.reference", "Registry": "oci.reference", "Digest": "oci.digest",
        "Descriptor": "oci.descriptor", "ManifestBytes": "content",
        "CopyOptions": "copy", "ForeignMode": "copy", "PlatformMatcher": "platforms",
        "ImageSpec": "build", "ShellCommand": "command", "PackOptions": "pack",
        "CopyResult": "copy", "UnpackResult": "pull", "LayerStats": "unpack",
        "Events": "events", "BlobAction": "events",
        "InvalidReferenceError": "oci.reference",
        **dict.fromkeys(["BerthError", "UsageError", "AuthError", "NotFoundError",
                         "NetworkError", "RegistryResponseError", "DigestMismatch",
                         "ImageError", "PackError", "UnpackError"], "errors"),
    }

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
