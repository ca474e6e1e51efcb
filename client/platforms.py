"""Choosing a platform from an index, Windows `os.version` rules included.

Windows follows containerd: same major.minor; a host below build 20348 (Server 2022) runs
only its own build; from 20348 on, images from the latest LTSC release at or below the host
build up to the host build run. Among matches: the exact build first, then the highest
revision (the fourth number, compared numerically), then list order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .oci.descriptor import Descriptor, Platform

LTSC_2022 = 20348
COMPAT_LTSC_RELEASES = (LTSC_2022,)  # ascending; stable-ABI releases

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386"}
_SPEC = re.compile(r"^(?P<os>[a-z0-9]+)(?:\((?P<version>[0-9.]+)\))?/(?P<arch>[a-z0-9_-]+)"
                   r"(?:/(?P<variant>[a-z0-9]+))?$")


@dataclass(frozen=True, slots=True)
class WindowsVersion:
    major: int
    minor: int
    build: int
    revision: int = 0

    @classmethod
    def parse(cls, text: str | None) -> WindowsVersion | None:
        if not text:
            return None
        parts = text.split(".")
        if len(parts) < 3 or not all(p.isdigit() for p in parts[:4]):
            return None
        numbers = [int(p) for p in parts[:4]]
        return cls(numbers[0], numbers[1], numbers[2], numbers[3] if len(numbers) > 3 else 0)


def windows_compatible(host: WindowsVersion, image: WindowsVersion) -> bool:
    if (host.major, host.minor) != (image.major, image.minor):
        return False
    if host.build < LTSC_2022:
        return host.build == image.build
    floor = max(r for r in COMPAT_LTSC_RELEASES if r <= host.build)
    return floor <= image.build <= host.build


def _normalise(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "arm64" and variant in (None, "", "v8"):
        variant = None
    return arch, variant or None


@dataclass(frozen=True, slots=True)
class PlatformMatcher:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None  # the host's, for Windows

    @classmethod
    def parse(cls, spec: str, os_version: str | None = None) -> PlatformMatcher:
        """`os/arch[/variant]`, or containerd's `windows(10.0.20348)/amd64`."""
        match = _SPEC.match(spec.strip().lower())
        if match is None:
            raise UsageError(f"invalid platform {spec!r} (expected os/arch[/variant])")
        version = os_version or match["version"]
        if version and WindowsVersion.parse(version) is None:
            raise UsageError(f"invalid os.version {version!r} (expected e.g. 10.0.20348)")
        return cls(match["os"], match["arch"], match["variant"], version)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")
        return text + (f" (os.version {self.os_version})" if self.os_version else "")

    def matches(self, platform: Platform | None) -> bool:
        if platform is None:
            return False
        want = _normalise(self.architecture, self.variant)
        have = _normalise(platform.architecture, platform.variant)
        if platform.os != self.os or want[0] != have[0]:
            return False
        if want[1] is not None and want[1] != have[1]:
            return False
        if self.os == "windows":
            host = WindowsVersion.parse(self.os_version)
            image = WindowsVersion.parse(platform.os_version)
            if host is not None and image is not None:
                return windows_compatible(host, image)
        return True

    def select(self, candidates: Sequence[Descriptor]) -> Descriptor | None:
        """The best match among an index's manifests, or None."""
        host = WindowsVersion.parse(self.os_version) if self.os == "windows" else None

        def rank(item: tuple[int, Descriptor]) -> tuple[int, int, int, int]:
            position, desc = item
            image = WindowsVersion.parse(desc.platform.os_version if desc.platform else None)
            if host is None or image is None:
                return (1, 0, 0, position)
            exact = 0 if image.build == host.build else 1
            return (exact, -image.build, -image.revision, position)

        matching = [(i, d) for i, d in enumerate(candidates) if self.matches(d.platform)]
        return min(matching, key=rank)[1] if matching else None
