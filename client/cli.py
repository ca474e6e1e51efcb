"""The `berth` command line."""

from __future__ import annotations

import sys

import click

from registry.config import ConfigError, load_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="berth")
def main() -> None:
    """Berth: an OCI registry and a push/pull client."""


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--listen", metavar="HOST:PORT", help="address to serve on (http.addr)")
@click.option("--root", type=click.Path(file_okay=False),
              help="storage directory (storage.filesystem.rootdirectory)")
def serve(config_file: str | None, listen: str | None, root: str | None) -> None:
    """Run the registry (defaults: 127.0.0.1:5000, disk storage under ./data)."""
    from registry.app import serve as run

    try:
        config = load_config(config_file, {
            "http.addr": listen, "storage.filesystem.rootdirectory": root,
        })
    except ConfigError as exc:
        click.echo(f"berth: config error: {exc}", err=True)
        sys.exit(2)
    try:
        run(config)
    except OSError as exc:
        click.echo(f"berth: cannot serve on {config.http.addr}: {exc.strerror}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
