"""`--cmd` and `--entrypoint`: a JSON array (exec form, taken as it is) or one command line
(shell form), which becomes an argv by the rules of the image's OS.

* Linux: the line is split as a POSIX shell would (`shlex`), quotes and backslash escapes
  included; no shell is added.
* Windows: as Docker's builder does, the line goes unchanged to `cmd /S /C` (no escape
  processing, so `C:\\app\\hello.exe` keeps its backslashes).

Each rule warns when the line looks written for the other one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .errors import UsageError
from .oci.jsondoc import JSONDocumentError, loads

WINDOWS_SHELL = ("cmd", "/S", "/C")
_DROPPED_ESCAPE = re.compile(r"\\[A-Za-z0-9]")  # `\a`: POSIX drops the backslash
_POSIX_PATH = re.compile(r"^/[^/\s]+/")  # `/usr/bin/…`, `/app/run`


@dataclass(frozen=True, slots=True)
class ShellCommand:
    """A command given as one line (Dockerfile's shell form)."""

    line: str

    def argv(self, os: str) -> tuple[tuple[str, ...], str | None]:
        """The argv for an image of `os`, and a warning when the result looks wrong."""
        if os == "windows":
            warning = None
            if _POSIX_PATH.match(self.line.strip()):
                warning = (f'"{self.line}" looks like a POSIX path, but a Windows image runs '
                           f"it with {' '.join(WINDOWS_SHELL)}")
            return (*WINDOWS_SHELL, self.line), warning
        try:
            argv = tuple(shlex.split(self.line))
        except ValueError as exc:
            raise UsageError(f"cannot split {self.line!r} as a shell would: {exc}") from None
        warning = None
        if _DROPPED_ESCAPE.search(self.line) and not any("\\" in a for a in argv):
            warning = (f'backslashes in "{self.line}" were read as POSIX escapes (stored '
                       f"as {' '.join(argv)}): give a JSON array, or --os windows for a "
                       "Windows image")
        return argv, warning


Command = tuple[str, ...] | ShellCommand


def parse_command(value: str) -> Command:
    """A JSON array of strings (exec form) or a command line (shell form)."""
    if not value.lstrip().startswith("["):
        return ShellCommand(value)
    try:
        parsed = loads(value)
    except JSONDocumentError as exc:
        hint = " (in JSON a backslash is written \\\\)" if "\\" in value else ""
        raise UsageError(f"not a JSON array: {value[:80]!r}: {exc}{hint}") from None
    if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
        raise UsageError(f"not a JSON array of strings: {value[:80]!r}")
    return tuple(parsed)


def resolve(command: Command | None, os: str) -> tuple[tuple[str, ...] | None, str | None]:
    """The argv to store for an image of `os`, and a warning, if any."""
    if isinstance(command, ShellCommand):
        return command.argv(os)
    return command, None
