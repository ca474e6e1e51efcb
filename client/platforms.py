"""Choosing an image by platform, Windows `os.version` rules included; the one rule every
command applies (pull, copy, push --base, inspect).

A request is `os/arch[/variant]`, plus for Windows the *host's* version (`--os-version`,
or containerd's `windows(10.0.20348)/amd64`); a version alone means `windows/<host arch>`.

Windows follows containerd: same major.minor; a host below build 20348 (Server 2022) runs
only its own build; from 20348 on, images from the latest LTSC release at or below the host
build up to the host build run. Among matches: the host's own build first, then the highest
build, then the highest revision (the fourth number, compared numerically), then list
order. Without a host version every Windows entry of the architecture matches and the
newest (highest build, then revision) is chosen. The entry chosen is reported; a request
nothing matches is an error naming what the image has, also for a single-platform image
(its config says which platform it is).
"""

from __future__ import annotations

import platform as _host
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .content import ManifestBytes
from .errors import NotFoundError, UsageError
from .events import Events
from .image import ImageSource, manifest_of, read_config
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor, Platform
from .oci.manifest import Manifest

LTSC_2022 = 20348
COMPAT_LTSC_RELEASES = (LTSC_2022,)  # ascending; stable-ABI releases

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386", "i686": "386"}
_SPEC = re.compile(r"^(?P<os>[a-z0-9]+)(?:\((?P<version>[^)]*)\))?/(?P<arch>[a-z0-9_-]+)"
                   r"(?:/(?P<variant>[a-z0-9]+))?$")
_VERSION = re.compile(r"^(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?$")


def host_architecture() -> str:
    """This machine's architecture, in OCI terms (amd64, arm64, …)."""
    machine = _host.machine().lower()
    return _ARCH_ALIASES.get(machine, machine) or "amd64"


@dataclass(frozen=True, slots=True)
class WindowsVersion:
    major: int
    minor: int
    build: int
    revision: int = 0

    @classmethod
    def parse(cls, text: str | None) -> WindowsVersion | None:
        """`MAJOR.MINOR.BUILD[.REVISION]`, else None."""
        match = _VERSION.match(text or "")
        if match is None:
            return None
        major, minor, build, revision = match.groups()
        return cls(int(major), int(minor), int(build), int(revision or 0))


def check_os_version(text: str) -> str:
    """A Windows version as given on the command line, or a usage error."""
    if WindowsVersion.parse(text) is None:
        raise UsageError(f"invalid --os-version {text!r} "
                         "(expected MAJOR.MINOR.BUILD[.REVISION], e.g. 10.0.20348)")
    return text


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


def platform_text(platform: Platform | None, version: bool = True) -> str:
    """`os/arch[/variant]`, with ` os.version` when there is one (and `version`)."""
    if platform is None:
        return "unknown platform"
    text = f"{platform.os}/{platform.architecture}"
    if platform.variant:
        text += f"/{platform.variant}"
    if platform.os_version and version:
        text += f" {platform.os_version}"
    return text


def config_platform(config: dict[str, Any]) -> Platform:
    """The platform an image config says its image is for."""
    def text(key: str) -> str | None:
        value = config.get(key)
        return value if isinstance(value, str) and value else None

    return Platform(text("architecture") or "?", text("os") or "?", text("os.version"),
                    variant=text("variant"))


@dataclass(frozen=True, slots=True)
class PlatformMatcher:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None  # the host's, for Windows

    @classmethod
    def parse(cls, spec: str | None, os_version: str | None = None) -> PlatformMatcher:
        """`os/arch[/variant]`, or containerd's `windows(10.0.20348)/amd64`; `spec` None
        with an `os_version` means `windows/<host arch>`."""
        if spec is None:
            if os_version is None:
                raise UsageError("a platform needs OS/ARCH or an --os-version")
            spec = f"windows/{host_architecture()}"
        match = _SPEC.match(spec.strip().lower())
        if match is None:
            raise UsageError(f"invalid platform {spec!r} (expected os/arch[/variant])")
        version = os_version or match["version"]
        if version is not None:
            check_os_version(version)
            if match["os"] != "windows":
                raise UsageError(f"--os-version is the Windows host's version: it does not "
                                 f"apply to {match['os']}/{match['arch']}")
        return cls(match["os"], match["arch"], match["variant"], version)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")
        return text + (f" (host os.version {self.os_version})" if self.os_version else "")

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
            if image is None:
                return (2, 0, 0, position)
            own_build = 0 if host is not None and image.build == host.build else 1
            return (own_build, -image.build, -image.revision, position)

        matching = [(i, d) for i, d in enumerate(candidates) if self.matches(d.platform)]
        return min(matching, key=rank)[1] if matching else None


@dataclass(frozen=True)
class Selected:
    """The image a platform request leads to."""

    fetched: ManifestBytes
    manifest: Manifest
    platform: Platform | None  # the index entry chosen; None when the source is one image
    config: dict[str, Any] | None = None  # when it was read (a single image's check)


async def select_image(
    source: ImageSource, matcher: PlatformMatcher | None, events: Events | None = None, *,
    index_default: PlatformMatcher | None = None, what: str = "the image",
) -> Selected:
    """Narrow `source` to one image: from an index, the entry `matcher` (else
    `index_default`) selects, reported through `events`; a single image must match
    `matcher` (its config says what it is). Nothing matching is a NotFoundError that says
    what there is."""
    fetched = await source.root()
    manifest = manifest_of(fetched)
    chosen: Platform | None = None
    while manifest.is_index:
        wanted = matcher or index_default
        if wanted is None:
            raise UsageError(f"{what} is a multi-platform index: choose one with "
                             "--platform OS/ARCH[/VARIANT]")
        choice = wanted.select(manifest.manifests)
        if choice is None:
            available = ", ".join(platform_text(d.platform) for d in manifest.manifests)
            raise NotFoundError(f"no image for {wanted} in {what.replace('image', 'index')} "
                                f"(it has: {available or 'nothing'})")
        chosen = choice.platform
        if events is not None:
            events.message(f"{what.removeprefix('the ')} {platform_text(chosen)} chosen "
                           f"(manifest {choice.digest.hex[:12]})")
        fetched = await source.manifest(choice.digest)
        manifest = manifest_of(fetched)
    config = None
    if chosen is None and matcher is not None and manifest.config is not None \
            and manifest.config.media_type in mt.IMAGE_CONFIGS:
        config = await read_config(source, manifest.config)
        has = config_platform(config)
        if not matcher.matches(has):
            raise NotFoundError(f"{what} is {platform_text(has)} only, not {matcher}")
    return Selected(fetched, manifest, chosen, config)
