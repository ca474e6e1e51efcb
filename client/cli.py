"""The `berth` command line: the push/pull client's commands, and whatever commands other
installed packages add through the `berth.commands` entry points (the registry's `serve`
and `gc`, from registry/commands.py): the client never imports the registry.

Every failure a user can cause ends in one line on stderr (`berth: error: …`) and a
non-zero exit: 2 usage (Click's own errors included), 3 authentication, 4 not found,
5 network, 1 anything else, 130 interrupted (Ctrl-C); 70 is a bug, with the traceback only
under --debug.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from .errors import BerthError, UsageError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from .build import ImageFormat
    from .client import Client
    from .copy import CopyOptions, CopyResult
    from .events import Events
    from .pack import Compression
    from .platforms import PlatformMatcher

T = TypeVar("T")
INTERRUPTED = 130


class BerthGroup(click.Group):
    """Click's usage errors as one line, `berth: error: …` (exit 2), like every other
    error; Ctrl-C at a prompt is exit 130."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False,
                                **extra)
        except click.ClickException as exc:
            message = " ".join(exc.format_message().split())
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                message += f" (see {ctx.command_path} --help)"
            click.echo(f"berth: error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("berth: interrupted", err=True)
            sys.exit(INTERRUPTED)
        if isinstance(code, int) and code:
            sys.exit(code)
        return None


class BerthCommands(BerthGroup):
    """The client's commands plus those of the `berth.commands` entry points, each loaded
    only when it is run (or listed)."""

    GROUP = "berth.commands"

    def _plugins(self) -> dict[str, importlib.metadata.EntryPoint]:
        return {e.name: e for e in importlib.metadata.entry_points(group=self.GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in (plugins := self._plugins()):
            loaded = plugins[name].load()
            command = loaded if isinstance(loaded, click.Command) else None
        return command


@click.group(cls=BerthCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="berth")
def main() -> None:
    """Berth: an OCI registry and a push/pull client (Windows foreign layers included)."""


# -- the client ----------------------------------------------------------------------------


@dataclasses.dataclass
class ClientOptions:
    insecure: bool = False
    plain_http: bool = False
    ca_file: str | None = None
    authfile: str | None = None
    username: str | None = None
    password: str | None = None
    retries: int = 4
    as_json: bool = False
    quiet: bool = False
    debug: bool = False


def client_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., None]:
    """Add the connection and output options and run the coroutine with a `Client`."""

    @click.option("--insecure", is_flag=True,
                  help="skip TLS verification (and fall back to plain HTTP)")
    @click.option("--plain-http", is_flag=True,
                  help="talk plain HTTP (as http://HOST does for one host; loopback hosts "
                       "fall back to it after one TLS probe)")
    @click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                  help="CA bundle to verify registries with")
    @click.option("--authfile", type=click.Path(dir_okay=False),
                  help="credentials file (default: ~/.docker/config.json)")
    @click.option("--creds", metavar="USER[:PASSWORD]",
                  help="credentials for the registries of this command")
    @click.option("--retries", default=4, show_default=True, type=click.IntRange(0, 20),
                  help="retries of a failed request (connection errors, 429, 5xx)")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output on stdout")
    @click.option("-q", "--quiet", is_flag=True, help="no progress output")
    @click.option("--debug", is_flag=True,
                  help="log every request and its status (stderr); tracebacks for internal "
                       "errors")
    @functools.wraps(fn)
    def command(insecure: bool, plain_http: bool, ca_file: str | None, authfile: str | None,
                creds: str | None, retries: int, as_json: bool, quiet: bool, debug: bool,
                **kwargs: Any) -> None:
        username = password = None
        if creds:
            username, _, password = creds.partition(":")
            if not password:
                password = getpass.getpass(f"Password for {username}: ")
        options = ClientOptions(insecure, plain_http, ca_file, authfile, username, password,
                                retries, as_json, quiet, debug)
        if debug:
            logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        _run(options, lambda client: fn(client, options, **kwargs))

    return command


def _make_client(options: ClientOptions) -> Client:
    from .auth import Credentials
    from .client import Client
    from .session import TransportOptions

    transport = TransportOptions(
        insecure=options.insecure, plain_http=True if options.plain_http else None,
        ca_file=options.ca_file, retries=options.retries,
    )
    default = Credentials(options.username, options.password or "") if options.username else None
    auth_file = Path(options.authfile) if options.authfile else None
    return Client(transport, auth_file=auth_file, default_credentials=default)


@contextmanager
def _errors(debug: bool = False) -> Iterator[None]:
    """Every failure as one line on stderr and its exit code."""
    try:
        yield
    except BerthError as exc:
        click.echo(f"berth: error: {' '.join(str(exc).split())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("berth: interrupted", err=True)
        sys.exit(INTERRUPTED)
    except Exception as exc:
        if debug:
            raise
        click.echo(f"berth: internal error: {type(exc).__name__}: {exc} "
                   "(run with --debug for details)", err=True)
        sys.exit(70)


def _run(options: ClientOptions, body: Callable[[Client], Awaitable[Any]]) -> None:
    async def main_coroutine() -> Any:
        client = _make_client(options)
        try:
            return await body(client)
        finally:
            await client.close()

    with _errors(options.debug):
        asyncio.run(main_coroutine())


def _emit(options: ClientOptions, value: Any, text: str | None = None) -> None:
    if options.as_json:
        click.echo(json.dumps(value, indent=2))
    elif text is not None:
        click.echo(text)


def _events(options: ClientOptions) -> Events:
    from .progress import BarEvents, PlainEvents, QuietEvents

    if options.quiet or options.as_json:
        return QuietEvents()
    return BarEvents() if sys.stderr.isatty() else PlainEvents()


def _platform(platform: str | None, os_version: str | None) -> PlatformMatcher | None:
    """The platform request of --platform and --os-version (a version alone: Windows on
    this machine's architecture), or None."""
    from .platforms import PlatformMatcher

    if platform is None and os_version is None:
        return None
    return PlatformMatcher.parse(platform, os_version)


F = TypeVar("F", bound="DataclassInstance")


def _collected(flags: type[F], name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Gather the Click parameters named as the fields of the dataclass `flags` into one
    `flags` object, passed to the command as `name`."""
    names = {field.name for field in dataclasses.fields(flags)}

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def command(**params: Any) -> T:
            given = {key: params.pop(key) for key in names & params.keys()}
            return fn(**params, **{name: flags(**given)})

        return command

    return wrap


@dataclasses.dataclass(frozen=True)
class TransferFlags:
    """The transfer options of copy, push, pull and pack (`transfer_flags`)."""

    all_platforms: bool = False  # --all (pack has none)
    platform: str | None = None
    os_version: str | None = None
    include_foreign: bool = False
    convert_foreign: bool = False
    jobs: int = 4

    def copy_options(self) -> CopyOptions:
        from .copy import CopyOptions, ForeignMode

        if self.include_foreign and self.convert_foreign:
            raise UsageError("--include-foreign and --convert-foreign exclude each other")
        if self.all_platforms and (self.platform or self.os_version):
            raise UsageError("--all and --platform/--os-version exclude each other")
        foreign: ForeignMode = (
            "include" if self.include_foreign else "convert" if self.convert_foreign
            else "keep"
        )
        return CopyOptions(foreign=foreign, platform=_platform(self.platform, self.os_version),
                           concurrency=self.jobs)


Verb = Literal["copy", "push", "pull", "pack"]
_SELECTION = "(the best match: see 'Platforms' in docs/client.md)"
_ALL_HELP: dict[Verb, str] = {
    "copy": "copy every platform of an index (the default)",
    "push": "push every platform of an oci:/docker-archive: index (the default)",
    "pull": "pull every platform of an index (the default into oci:; a docker-archive: "
            "holds one image and needs --platform; --unpack takes linux/<host arch> "
            "unless --platform says otherwise)",
}
_PLATFORM_HELP: dict[Verb, str] = {
    "copy": f"only this platform of an index {_SELECTION}; a single image must be it",
    "pull": f"only this platform of an index {_SELECTION}; a single image must be it",
    "push": "oci:/docker-archive: sources: only this platform of an index; a directory: "
            f"the platform to build, and the variant of a --base index {_SELECTION}",
    "pack": f"the platform to build, and the variant of a --base index {_SELECTION}",
}
_OS_VERSION_COPY = ("the Windows host's version (e.g. 10.0.20348.1787): choose from an index "
                    "what such a host runs; without --platform: windows/<host arch>")
_OS_VERSION_BUILD = ("the Windows host's version (e.g. 10.0.20348.1787): choose the --base "
                     "variant such a host runs; the image records that base's exact os.version "
                     "(without --base: this one); implies --os windows")
_OS_VERSION_HELP: dict[Verb, str] = {
    "pack": _OS_VERSION_BUILD,
    "push": ("the Windows host's version (e.g. 10.0.20348.1787): choose the index variant (of "
             "--base, or of an oci:/docker-archive: source) such a host runs; a built image "
             "records its base's exact os.version (without --base: this one)"),
}
_FOREIGN_HELP: dict[Verb, tuple[str, str]] = {
    "copy": ("copy foreign layers unchanged (fetched from the source, else their urls; "
             "for air-gapped registries)",
             "copy foreign layers as ordinary layers (no urls; changes the manifest digest)"),
    "push": ("upload foreign layers unchanged (air-gapped registries)",
             "upload foreign layers as ordinary layers (no urls; changes the manifest digest)"),
    "pull": ("fetch foreign layers into the destination unchanged (from the registry, else "
             "their urls); --unpack always fetches them",
             "store foreign layers as ordinary layers (no urls; changes the manifest digest)"),
    "pack": ("store the base's foreign layers unchanged at the destination",
             "store the base's foreign layers as ordinary layers (no urls)"),
}


def transfer_flags(verb: Verb) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """The transfer options of `verb`, with help that says what they do there, given to
    the command as `transfer` (a TransferFlags)."""
    include, convert = _FOREIGN_HELP[verb]
    options = [
        click.option("--platform", metavar="OS/ARCH[/VARIANT]", help=_PLATFORM_HELP[verb]),
        click.option("--os-version", metavar="VERSION",
                     help=_OS_VERSION_HELP.get(verb, _OS_VERSION_COPY)),
        click.option("--include-foreign", is_flag=True, help=include),
        click.option("--convert-foreign", is_flag=True, help=convert),
        click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64),
                     help="blobs transferred in parallel"),
    ]
    if verb in _ALL_HELP:
        options.insert(0, click.option("--all", "all_platforms", is_flag=True,
                                       help=_ALL_HELP[verb]))

    def add(fn: Callable[..., T]) -> Callable[..., T]:
        fn = _collected(TransferFlags, "transfer")(fn)
        for decorator in reversed(options):
            fn = decorator(fn)
        return fn

    return add


async def _with_events(options: ClientOptions, run: Callable[[Events], Awaitable[T]]) -> T:
    """Run a transfer with the progress display the options and the terminal call for."""
    from .progress import BarEvents

    events = _events(options)
    if isinstance(events, BarEvents):
        with events:
            return await run(events)
    return await run(events)


async def _transfer(options: ClientOptions, destination: str,
                    run: Callable[[Events], Awaitable[CopyResult]]) -> None:
    """Run a copy or build, then report its result."""
    result = await _with_events(options, run)
    moved = sum(1 for a in result.blobs.values() if a in ("uploaded", "converted"))
    _emit(options, dataclasses.asdict(result),
          None if options.quiet else
          f"{destination}: {result.digest} ({moved} of {len(result.blobs)} blobs transferred)")


async def _do_copy(client: Client, options: ClientOptions, source: str, destination: str,
                   transfer: TransferFlags) -> None:
    copy_options = transfer.copy_options()
    await _transfer(options, destination,
                    lambda events: client.copy(source, destination, copy_options, events))


@main.command()
@click.argument("source")
@click.argument("destination")
@transfer_flags("copy")
@client_command
async def copy(client: Client, options: ClientOptions, source: str, destination: str,
               transfer: TransferFlags) -> None:
    """Copy an image between registries and OCI layouts, digests preserved.

    SOURCE and DESTINATION: a registry reference (host[:port]/repo[:tag][@digest], with
    docker://, http:// or https:// in front if you like), oci:PATH[:TAG] or
    docker-archive:FILE[:NAME:TAG]."""
    await _do_copy(client, options, source, destination, transfer)


_COMMAND_HELP = ("a JSON array (taken as it is) or a command line: split as a POSIX shell "
                 "would for Linux images, run unchanged by 'cmd /S /C' for Windows ones")


@dataclasses.dataclass(frozen=True)
class ImageFlags:
    """The image options of push and pack (`image_flags`): what to build from directories."""

    base: str | None = None
    compress: Compression = "gzip"
    level: int | None = None
    os_name: str | None = None
    arch: str | None = None
    os_features: tuple[str, ...] = ()
    image_format: ImageFormat | None = None
    env: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    entrypoint: str | None = None
    cmd: str | None = None
    workdir: str | None = None
    user: str | None = None
    delete: tuple[str, ...] = ()
    security_descriptor: str | None = None

    def given(self) -> set[str]:
        """The options set on the command line (--compress always has a value)."""
        return {field.name for field in dataclasses.fields(self)
                if getattr(self, field.name) and field.name != "compress"}


def image_flags(fn: Callable[..., T]) -> Callable[..., T]:
    """The image options, given to the command as `image` (an ImageFlags)."""
    fn = _collected(ImageFlags, "image")(fn)
    for decorator in reversed([
        click.option("--base", metavar="REF", help="build on this image (layers are reused)"),
        click.option("--compress", type=click.Choice(["gzip", "zstd", "none"]),
                     default="gzip", show_default=True, help="layer compression"),
        click.option("--level", type=int,
                     help="compression level: gzip 0-3 (ISA-L; default 2), zstd 1-22 "
                          "(default 3)"),
        click.option("--os", "os_name", type=click.Choice(["linux", "windows"]),
                     help="image OS and layer format (default: the base's, else linux)"),
        click.option("--arch", help="architecture (default: the base's, else amd64)"),
        click.option("--os-feature", "os_features", multiple=True, metavar="FEATURE",
                     help="an os.features entry, e.g. win32k (repeatable)"),
        click.option("--format", "image_format", type=click.Choice(["oci", "docker"]),
                     help="manifest format (default: the base's, else oci)"),
        click.option("--env", multiple=True, metavar="KEY=VALUE",
                     help="an environment variable (repeatable; added to the base's, "
                          "replacing one of the same name)"),
        click.option("--label", multiple=True, metavar="KEY=VALUE",
                     help="a label (repeatable; added to the base's)"),
        click.option("--entrypoint", metavar="COMMAND", help=_COMMAND_HELP),
        click.option("--cmd", metavar="COMMAND", help=_COMMAND_HELP),
        click.option("--workdir", metavar="DIR",
                     help="working directory of the container (replaces the base's)"),
        click.option("--user", metavar="USER[:GROUP]",
                     help="user the container runs as (replaces the base's)"),
        click.option("--delete", multiple=True, metavar="PATH",
                     help="delete PATH from the base's layers (a whiteout; repeatable)"),
        click.option("--security-descriptor", metavar="BASE64",
                     help="Windows: security descriptor for every file"),
    ]):
        fn = decorator(fn)
    return fn


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--{what} takes KEY=VALUE, not {value!r}")
        out[key] = val
    return out


async def _do_build(client: Client, options: ClientOptions, directories: tuple[str, ...],
                    destination: str, image: ImageFlags, transfer: TransferFlags) -> None:
    from .build import ImageSpec
    from .command import parse_command
    from .pack import PackOptions
    from .platforms import PlatformMatcher, check_os_version
    from .windows import DEFAULT_SECURITY_DESCRIPTOR, check_security_descriptor

    for directory in directories:
        if not await asyncio.to_thread(os.path.isdir, directory):
            raise UsageError(f"{directory} is not a directory")
    _pairs(image.env, "env")
    if transfer.all_platforms:
        raise UsageError("--all copies every platform of an index; a directory builds one "
                         "image (--platform says which)")
    os_name, arch, variant, os_version = image.os_name, image.arch, None, transfer.os_version
    if os_version is not None:
        check_os_version(os_version)
    if transfer.platform is not None:  # the image to build (and the base variant to build on)
        wanted = PlatformMatcher.parse(transfer.platform, os_version)
        for option, given, value in (("--os", os_name, wanted.os),
                                     ("--arch", arch, wanted.architecture)):
            if given and given != value:
                raise UsageError(f"{option} {given} contradicts --platform {transfer.platform}")
        os_name, arch, variant = wanted.os, wanted.architecture, wanted.variant
    if os_version is not None and os_name is None and image.base is None:
        os_name = "windows"
    pack = PackOptions.from_environment(
        compression=image.compress, os=os_name or "linux", level=image.level,
        deletions=image.delete,
        security_descriptor=check_security_descriptor(image.security_descriptor)
        if image.security_descriptor else DEFAULT_SECURITY_DESCRIPTOR,
    )
    spec = ImageSpec(
        os=os_name, architecture=arch, variant=variant, os_version=os_version,
        os_features=image.os_features, env=image.env, labels=_pairs(image.label, "label"),
        entrypoint=parse_command(image.entrypoint) if image.entrypoint is not None else None,
        cmd=parse_command(image.cmd) if image.cmd is not None else None,
        workdir=image.workdir, user=image.user, format=image.image_format,
        source_date_epoch=pack.source_date_epoch,
    )
    # the platform is the image's own: the copy takes it as it is
    copy_options = dataclasses.replace(transfer, platform=None, os_version=None).copy_options()
    paths = [Path(d) for d in directories]
    await _transfer(options, destination, lambda events: client.build(
        paths, destination, pack, spec, image.base, copy_options, events))


@main.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, metavar="DEST",
              help="oci:PATH[:TAG] for a local layout, or a registry reference to push to")
@image_flags
@transfer_flags("pack")
@client_command
async def pack(client: Client, options: ClientOptions, directories: tuple[str, ...],
               output: str, image: ImageFlags, transfer: TransferFlags) -> None:
    """Pack directories into layers (one each) and build an image from them.

    Deterministic: sorted entries, owners 0/0, timestamps clamped to SOURCE_DATE_EPOCH.
    --os windows writes Windows layers (Files/, Hives/, Win32 attributes)."""
    await _do_build(client, options, directories, output, image, transfer)


@main.command()
@click.argument("source")
@click.argument("destination")
@image_flags
@transfer_flags("push")
@client_command
async def push(client: Client, options: ClientOptions, source: str, destination: str,
               image: ImageFlags, transfer: TransferFlags) -> None:
    """Push a local image to a registry: an OCI layout (oci:PATH[:TAG]) or a docker save
    archive (docker-archive:FILE[:NAME:TAG]) as it is, or a directory packed into a layer
    (on --base, if given). Foreign layers stay references."""
    from .transports import is_local

    if is_local(destination):
        raise UsageError("push goes to a registry reference (host/repo:tag)")
    if is_local(source):
        if image.given():
            raise UsageError("image options (--base, --env, …) apply to a directory")
        await _do_copy(client, options, source, destination, transfer)
        return
    if not await asyncio.to_thread(os.path.isdir, source):
        raise UsageError(f"{source} is neither oci:PATH[:TAG], docker-archive:FILE nor a "
                         "directory")
    await _do_build(client, options, (source,), destination, image, transfer)


@main.command()
@click.argument("source")
@click.argument("destination", required=False)
@click.option("--unpack", "unpack_dir", type=click.Path(file_okay=False),
              help="unpack the layers into this directory (a root filesystem)")
@transfer_flags("pull")
@client_command
async def pull(client: Client, options: ClientOptions, source: str, destination: str | None,
               unpack_dir: str | None, transfer: TransferFlags) -> None:
    """Pull an image from a registry into oci:PATH[:TAG] or docker-archive:FILE[:NAME:TAG],
    or (--unpack DIR) unpack its layers into a directory, whiteouts applied."""
    from .transports import is_local

    if is_local(source):
        raise UsageError("pull takes a registry reference (host/repo:tag)")
    if unpack_dir is None:
        if destination is None or not is_local(destination):
            raise UsageError("pull goes to oci:… or docker-archive:…, or use --unpack DIR")
        await _do_copy(client, options, source, destination, transfer)
        return
    if destination is not None:
        raise UsageError("give either a destination or --unpack DIR, not both")
    await _do_unpack(client, options, source, Path(unpack_dir), transfer)


async def _do_unpack(client: Client, options: ClientOptions, source: str, target: Path,
                     transfer: TransferFlags) -> None:
    if transfer.all_platforms:
        raise UsageError("--unpack makes one root filesystem: choose a platform with "
                         "--platform, not --all")
    if transfer.include_foreign or transfer.convert_foreign:
        raise UsageError("--unpack always fetches foreign layers (they are part of the "
                         "filesystem): drop --include-foreign/--convert-foreign")
    copy_options = transfer.copy_options()
    result = await _with_events(
        options, lambda events: client.unpack(source, target, copy_options.platform, events))
    stats = result.stats
    _emit(options, {"digest": result.digest, "os": result.os, "layers": result.layers,
                    "platform": result.platform,
                    "target": str(target), "stats": dataclasses.asdict(stats)},
          None if options.quiet else
          f"{target}: {result.digest} unpacked ({result.layers} layers, {stats.files} files, "
          f"{stats.whiteouts} whiteouts)")


@main.command()
@click.argument("reference")
@click.option("--raw", is_flag=True, help="print the manifest bytes exactly as served")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help=f"show this platform's image of an index {_SELECTION}")
@click.option("--os-version", metavar="VERSION", help=_OS_VERSION_COPY)
@client_command
async def inspect(client: Client, options: ClientOptions, reference: str, raw: bool,
                  platform: str | None, os_version: str | None) -> None:
    """Show an image: manifest, platforms, config (entrypoint, command, environment,
    labels), layers (foreign ones marked).

    REFERENCE: a registry reference, oci:PATH[:TAG] or docker-archive:FILE[:NAME:TAG]."""
    from .inspect import describe
    from .transports import open_source

    source = await open_source(reference, client.repository)
    try:
        info = await describe(source, reference, _platform(platform, os_version),
                              _events(options))
    finally:
        await source.close()
    if raw:
        sys.stdout.buffer.write(info.data)
        return
    _emit(options, info.as_json(), info.as_text())


def _lines(options: ClientOptions, found: list[str], empty: str) -> None:
    """A listing, one per line; an empty one prints nothing on stdout (a note on stderr)."""
    if not found and not options.as_json:
        if not options.quiet:
            click.echo(empty, err=True)
        return
    _emit(options, found, "\n".join(found))


@main.command()
@click.argument("repository")
@client_command
async def tags(client: Client, options: ClientOptions, repository: str) -> None:
    """List a repository's tags (REPOSITORY: [SCHEME]HOST[:PORT]/NAME)."""
    found = await client.tags(repository)
    _lines(options, found, f"{repository}: no tags")


@main.command()
@click.argument("registry")
@client_command
async def catalog(client: Client, options: ClientOptions, registry: str) -> None:
    """List a registry's repositories (REGISTRY: HOST[:PORT], http://HOST[:PORT] for plain
    HTTP, https://HOST[:PORT] for TLS)."""
    found = await client.catalog(registry)
    _lines(options, found, f"{registry}: no repositories")


@main.command()
@click.argument("reference")
@client_command
async def rm(client: Client, options: ClientOptions, reference: str) -> None:
    """Delete a tag (host/repo:tag) or a manifest (host/repo@digest)."""
    removed = await client.delete(reference)
    _emit(options, {"deleted": removed}, f"deleted {removed}")


@main.command()
@click.argument("registry")
@click.option("-u", "--username", prompt=True)
@click.option("-p", "--password", help="(prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@client_command
async def login(client: Client, options: ClientOptions, registry: str, username: str,
                password: str | None, password_stdin: bool) -> None:
    """Check credentials against a registry and save them (docker config.json format).

    REGISTRY: HOST[:PORT], or http(s)://HOST[:PORT] to choose the scheme."""
    from .auth import Credentials, store_credentials
    from .transports import parse_registry

    host = parse_registry(registry)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        password = getpass.getpass("Password: ")
    creds = Credentials(username, password)
    client.credentials[host.api_host] = creds
    await client.check_login(registry)
    where = store_credentials(host.host, creds, client.auth_file)
    _emit(options, {"registry": host.host, "stored": where},
          f"Login succeeded (credentials stored in {where})")


@main.command()
@click.argument("registry")
@click.option("--authfile", type=click.Path(dir_okay=False),
              help="credentials file (default: ~/.docker/config.json)")
def logout(registry: str, authfile: str | None) -> None:
    """Remove saved credentials for a registry (nothing is sent to it)."""
    from .auth import erase_credentials
    from .transports import parse_registry

    with _errors():
        host = parse_registry(registry).host
        if not erase_credentials(host, Path(authfile) if authfile else None):
            raise BerthError(f"not logged in to {host}")
        click.echo(f"Removed credentials for {host}")


if __name__ == "__main__":
    main()
