"""The registry's `berth` commands: `serve`, `gc` and `du`.

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

import click

from .config import Config, ConfigError, load_config, parse_duration

FLAGS = {"http.addr": "--listen", "storage.filesystem.rootdirectory": "--root"}


def _config(config_file: str | None, **overrides: str | None) -> Config:
    try:
        return load_config(config_file, overrides, flags=FLAGS)
    except ConfigError as exc:
        click.echo(f"berth: config error: {exc}", err=True)
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
def serve(config_file: str | None, listen: str | None, root: str | None) -> None:
    """Run the registry (defaults: 127.0.0.1:5000, disk storage under ./data)."""
    from .app import serve as run

    config = _config(config_file, **{
        "http.addr": listen, "storage.filesystem.rootdirectory": root,
    })
    try:
        run(config)
    except ConfigError as exc:
        click.echo(f"berth: config error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"berth: cannot serve on {config.http.addr}: {exc.strerror}", err=True)
        sys.exit(1)


@click.command()
@config_option
@root_option
@click.option("--dry-run", is_flag=True, help="report what would be deleted, delete nothing")
@click.option("--delete-untagged", is_flag=True, default=None,
              help="also forget manifests that no tag reaches (directly, by index or "
                   "referrer); default: berth.gc.deleteuntagged")
@click.option("--grace", metavar="DURATION",
              help="keep what is younger than this, or was named by a push within it: a "
                   "duration (30m, 1h) or seconds; default: berth.gc.grace (1h)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def gc(config_file: str | None, root: str | None, dry_run: bool,
       delete_untagged: bool | None, grace: str | None, as_json: bool) -> None:
    """Delete what no manifest references (safe while the registry serves: docs/gc.md)."""
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
            return await GarbageCollector(registry, grace_seconds).collect(dry_run, untagged)
        finally:
            await registry.close()

    report = asyncio.run(run())
    for warning in report.warnings:
        click.echo(f"berth: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
        return
    click.echo(("would have: " if dry_run else "") + report.summary())


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
                      str(row.blobs), str(row.tags), format_size(row.counted_bytes))
    table.add_row("total (stored once)", format_size(report.total), "", "",
                  str(report.total_blobs), "", "", style="bold")
    # (piped: as wide as it needs, never wrapped)
    Console(width=None if sys.stdout.isatty() else 1000).print(table)
