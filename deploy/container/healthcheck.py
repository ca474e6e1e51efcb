"""The container image's HEALTHCHECK: GET /livez from the running `berth serve`.

The address is the one the server really listens on: its command line (`--config`,
`--listen`, read from /proc), then its config file and the container's `BERTH_*`
environment, read as `berth serve` reads them. The debug listener (`http.debug.addr`,
plain HTTP) is asked when there is one, else the main listener (HTTPS when `http.tls` is
set, without checking the certificate: this is the process's own address). Exit status 0
when /livez answers 200, 1 otherwise (Docker's healthy / unhealthy)."""

from __future__ import annotations

import logging
import ssl
import sys
import urllib.request
from pathlib import Path

from registry.commands import FLAGS
from registry.config import Config, load_config, split_address

DEFAULT_CONFIG = "/etc/berth/config.yml"
TIMEOUT = 5.0  # seconds; the HEALTHCHECK's own --timeout is longer


def serve_arguments() -> list[str]:
    """The arguments after `serve` of the container's server: PID 1, or the first
    `berth serve` when an init (`docker run --init`) runs first; never a worker."""
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if "serve" in argv and "--worker" not in argv:
            return argv[argv.index("serve") + 1:]
    return ["--config", DEFAULT_CONFIG]


def option(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` (the last one given)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def livez_url(config: Config) -> str:
    """Where a server on `config` answers /livez, as seen from inside its container."""
    debug = config.http.debug.addr
    host, port = split_address(debug or config.http.addr)
    if host == "0.0.0.0":  # every interface (split_address's answer for `:PORT` too)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if debug is None and config.http.tls is not None else "http"
    return f"{scheme}://{host}:{port}/livez"


def server_config() -> Config:
    """The running server's configuration, read as `berth serve` read it."""
    logging.disable(logging.WARNING)  # the server already said which keys it ignores
    args = serve_arguments()
    return load_config(option(args, "--config"), {"http.addr": option(args, "--listen")},
                       flags=FLAGS)


def main() -> int:
    try:
        url = livez_url(server_config())
    except Exception as exc:  # a config the server could not have started with either
        print(f"healthcheck: cannot read the server's config: {exc}", file=sys.stderr)
        return 1
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as answer:
            status = answer.status
    except Exception as exc:  # refused, timed out, or an HTTP error status
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"healthcheck: {url}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
