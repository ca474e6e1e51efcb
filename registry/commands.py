"""The registry's `berth` commands: `serve`, `gc`, `fsck` and `du`.

The `berth` entry point (client/cli.py) finds them through the `berth.commands` entry
points in pyproject.toml, so the client never imports the registry. Failures are one line
on stderr and a non-zero exit, as for every `berth` command: 2 for a bad configuration or
usage, 1 for a server that cannot start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

import click

from .config import Config, ConfigError, load_config, parse_duration

if TYPE_CHECKING:
    from .storage import Registry

FLAGS = {"http.addr": "--listen", "storage.filesystem.rootdirectory": "--root",
         "http.workers": "--workers"}


def _config(config_file: str | None, **overrides: str | None) -> Config:
    try:
        return load_config(config_file, overrides, flags=FLAGS)
    except ConfigError as exc:
        click.echo(f"berth: config error: {exc}", err=True)
        sys.exit(2)


async def _layout_known(registry: Registry) -> None:
    """A command refuses storage a newer Berth wrote (storage/layout.py): one line, exit 2."""
    from .storage import layout

    try:
        await layout.check(registry.driver, write=False)
    except layout.LayoutError as exc:
        click.echo(f"berth: error: {exc}", err=True)
        sys.exit(2)


config_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file"
)
root_option = click.option(
    "--root", type=click.Path(file_okay=False),
    help="storage directory (storage.filesystem.rootdirectory)",
)


@click.command()
@config_option
@click.option("--listen", metavar="HOST:PORT", help="address to serve on (http.addr)")
@root_option
@click.option("--workers", type=click.IntRange(1, 256),
              help="processes serving requests (http.workers; default: one per CPU)")
@click.option("--worker", "worker_spec", hidden=True)  # (set by the supervisor)
def serve(config_file: str | None, listen: str | None, root: str | None,
          workers: int | None, worker_spec: str | None) -> None:
    """Run the registry (defaults: 127.0.0.1:5000, disk storage under ./data)."""
    from .app import Worker
    from .app import serve as run
    from .storage.layout import LayoutError
    from .workers import WorkerSpec, supervise, worker_count

    overrides = {"http.addr": listen, "storage.filesystem.rootdirectory": root,
                 "http.workers": str(workers) if workers else None}
    config = _config(config_file, **overrides)
    worker = None
    try:
        if worker_spec is not None:
            spec = WorkerSpec.parse(worker_spec)
            worker = Worker(spec.index, spec.count, spec.sockets(), spec.parent, spec.ready)
        elif (count := worker_count(config)) > 1:
            argv = [sys.executable, "-m", "client.cli", "serve"]
            for flag, value in (("--config", config_file), ("--listen", listen),
                                ("--root", root)):
                if value is not None:
                    argv += [flag, value]
            sys.exit(supervise(config, argv, count))
        run(config, reload=lambda: load_config(config_file, overrides, flags=FLAGS),
            worker=worker)
    except ConfigError as exc:
        click.echo(f"berth: config error: {exc}", err=True)
        sys.exit(2)
    except LayoutError as exc:
        click.echo(f"berth: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"berth: cannot serve on {config.http.addr}: {exc.strerror}", err=True)
        sys.exit(1)


@click.command()
@config_option
@root_option
@click.option("--dry-run", is_flag=True,
              help="report what would be deleted (retention's tags and manifests by name), "
                   "delete nothing")
@click.option("--delete-untagged", is_flag=True, default=None,
              help="also forget manifests that no tag reaches (directly, by index or "
                   "referrer); default: berth.gc.deleteuntagged")
@click.option("--grace", metavar="DURATION",
              help="keep what is younger than this, or was named by a push within it: a "
                   "duration (30m, 1h) or seconds; default: berth.gc.grace (1h)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def gc(config_file: str | None, root: str | None, dry_run: bool,
       delete_untagged: bool | None, grace: str | None, as_json: bool) -> None:
    """Delete what no manifest references, and the tags berth.retention does not keep
    (safe while the registry serves: docs/gc.md, docs/retention.md)."""
    from .storage import open_registry
    from .storage.gc import GarbageCollector, GCReport

    config = _config(config_file, **{"storage.filesystem.rootdirectory": root})
    try:
        grace_seconds = parse_duration(grace) if grace is not None else config.berth.gc.grace
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from None
    untagged = config.berth.gc.deleteuntagged if delete_untagged is None else delete_untagged

    async def run() -> GCReport:
        registry = open_registry(config)
        try:
            await _layout_known(registry)
            return await GarbageCollector(registry, grace_seconds).collect(dry_run, untagged)
        finally:
            await registry.close()

    report = asyncio.run(run())
    for warning in report.warnings:
        click.echo(f"berth: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
        return
    if dry_run:  # what a policy would delete, by name
        for tag in report.retention_deleted_tags:
            click.echo(f"would delete tag {tag}")
        for manifest in report.deleted_manifests:
            click.echo(f"would forget manifest {manifest}")
    click.echo(("would have: " if dry_run else "") + report.summary())


# exit statuses (besides 2: usage or configuration, and 1: storage failed, check unfinished)
FSCK_CLEAN, FSCK_PROBLEMS, FSCK_REPAIRED = 0, 3, 4


@click.command()
@config_option
@root_option
@click.option("--repair", is_flag=True,
              help="move corrupt blobs aside, remove dangling links and tags, rebuild indexes")
@click.option("--min-age", metavar="DURATION", default="1m", show_default=True,
              help="leave alone links and index entries younger than this (a push may be "
                   "writing them)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.argument("repositories", nargs=-1, metavar="[REPO]...")
def fsck(config_file: str | None, root: str | None, repair: bool, min_age: str,
         as_json: bool, repositories: tuple[str, ...]) -> None:
    """Verify every blob's digest, link, tag, manifest and index (docs/fsck.md); with
    REPO, those repositories and the blobs they reference. Exit status: 0 clean, 3 problems
    remain, 4 problems found and all repaired (1: storage failed, 2: usage)."""
    from client.oci.reference import is_valid_name

    from .storage import open_registry
    from .storage.drivers.base import StorageError
    from .storage.fsck import Checker, FsckReport

    config = _config(config_file, **{"storage.filesystem.rootdirectory": root})
    try:
        min_age_seconds = parse_duration(min_age)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--min-age") from None
    for name in repositories:
        if not is_valid_name(name):
            raise click.BadParameter(f"not a repository name: {name!r}", param_hint="REPO")
    if config.storage.driver == "inmemory":
        click.echo("berth: error: in-memory storage lives inside its server: nothing to "
                   "check (the server's background scrub can: berth.scrub)", err=True)
        sys.exit(2)

    async def run() -> FsckReport:
        registry = open_registry(config)
        try:
            await _layout_known(registry)
            for name in repositories:
                if not await registry.repositories.exists(name):
                    click.echo(f"berth: error: no repository {name} in "
                               f"{registry.driver.location}", err=True)
                    sys.exit(2)
            with _ByteProgress() as progress:
                checker = Checker(registry, repair, min_age_seconds, progress=progress)
                return await checker.check(list(repositories) or None)
        finally:
            await registry.close()

    try:
        report = asyncio.run(run())
    except StorageError as exc:
        click.echo(f"berth: error: storage failed, the check is unfinished: {exc}", err=True)
        sys.exit(1)
    for warning in report.warnings:
        click.echo(f"berth: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        for problem in report.problems:
            click.echo(problem.line())
        click.echo(report.summary())
    if report.unrepaired:
        sys.exit(FSCK_PROBLEMS)
    sys.exit(FSCK_REPAIRED if report.problems else FSCK_CLEAN)


class _ByteProgress:
    """A bar of bytes verified on stderr, when stderr is a terminal (never in the way of
    --json on stdout)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        self._bar = Progress("verifying", BarColumn(), DownloadColumn(binary_units=True),
                             TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                             transient=True, disable=not console.is_terminal)
        self._task = self._bar.add_task("blobs", total=None)

    def __enter__(self) -> _ByteProgress:
        self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.stop()

    def start(self, total_bytes: int) -> None:
        self._bar.update(self._task, total=total_bytes)

    def advance(self, done_bytes: int) -> None:
        self._bar.advance(self._task, done_bytes)


@click.command()
@config_option
@root_option
@click.argument("repositories", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="print exact bytes as JSON")
def du(config_file: str | None, root: str | None, repositories: tuple[str, ...],
       as_json: bool) -> None:
    """Per repository: logical, unique and shared size (a walk of storage; docs/quotas.md)."""
    from .storage.du import DiskUsage, disk_usage
    from .storage.quotas import format_size

    config = _config(config_file, **{"storage.filesystem.rootdirectory": root})

    async def run() -> DiskUsage | str:
        from .storage import open_registry

        registry = open_registry(config)
        try:
            await _layout_known(registry)
            names = await registry.repositories.walk_names()
            missing = [r for r in repositories if r not in names]
            if missing:
                return f"no repository {missing[0]} in {registry.driver.location}"
            return await disk_usage(registry.driver, names, list(repositories) or None,
                                    registry.usage)
        finally:
            await registry.close()

    report = asyncio.run(run())
    if isinstance(report, str):
        click.echo(f"berth: error: {report}", err=True)
        sys.exit(1)
    if not report.repositories and not report.total_blobs:
        click.echo("berth: warning: no repositories (and no blobs) there: is that the "
                   "registry's storage root?", err=True)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    table.add_column("repository", no_wrap=True)
    for heading in ("logical", "unique", "shared", "blobs", "tags", "counted (quotas)"):
        table.add_column(heading, justify="right", no_wrap=True)
    for row in report.repositories:
        table.add_row(row.name, *map(format_size, (row.logical, row.unique, row.shared)),
                      str(row.blobs), str(row.tags),
                      "-" if row.counted_bytes is None else format_size(row.counted_bytes))
    table.add_row("total (stored once)", format_size(report.total), "", "",
                  str(report.total_blobs), "", "", style="bold")
    # (piped: as wide as it needs, never wrapped)
    Console(width=None if sys.stdout.isatty() else 1000).print(table)
