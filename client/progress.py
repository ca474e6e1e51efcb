"""Showing a transfer to a person: rich progress bars on a terminal, plain lines otherwise.

Lines name blobs and manifests by the first 12 hex digits of their digest, so that each
fits in 80 columns (the full digest of the result is printed on stdout at the end).
Warnings are printed whatever the display, -q included.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .events import BlobAction, Events
from .oci.descriptor import Descriptor

_VERBS: dict[BlobAction, str] = {
    "exists": "already there", "mounted": "mounted", "uploaded": "done",
    "foreign": "foreign layer, kept as a reference", "converted": "converted",
}


def short(desc: Descriptor) -> str:
    return desc.digest.hex[:12]


def _entries(files: int) -> str:
    return f"{files} entr{'y' if files == 1 else 'ies'}"


def _manifest_line(desc: Descriptor) -> str:
    return f"manifest {short(desc)} ({desc.size} bytes): stored"


class QuietEvents(Events):
    """Nothing but warnings (-q, --json)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out

    def warning(self, text: str) -> None:
        print(f"berth: warning: {text}", file=self.out)


class PlainEvents(QuietEvents):
    """One line per finished blob and manifest (for logs and pipes)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        super().__init__(out)
        self._packing: set[str] = set()

    def blob_done(self, desc: Descriptor, action: BlobAction) -> None:
        print(f"blob {short(desc)} ({desc.size} bytes): {_VERBS[action]}", file=self.out)

    def manifest_done(self, desc: Descriptor, root: bool) -> None:
        print(_manifest_line(desc), file=self.out)

    def message(self, text: str) -> None:
        print(text, file=self.out)

    def pack_progress(self, directory: str, files: int, done: int) -> None:
        if directory not in self._packing:
            self._packing.add(directory)
            print(f"packing {directory} ...", file=self.out)

    def pack_done(self, directory: str, files: int, size: int) -> None:
        print(f"packed {directory}: {_entries(files)}, a {size} byte layer", file=self.out)


class BarEvents(Events):
    """A bar per blob in flight, with rate and ETA."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.console = Console(file=out)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.packing: dict[str, TaskID] = {}

    def __enter__(self) -> BarEvents:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _task(self, desc: Descriptor) -> TaskID:
        key = str(desc.digest)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(short(desc), total=desc.size)
        return self.tasks[key]

    def blob_started(self, desc: Descriptor) -> None:
        self._task(desc)

    def blob_progress(self, desc: Descriptor, done: int) -> None:
        self.progress.update(self._task(desc), completed=done)

    def blob_done(self, desc: Descriptor, action: BlobAction) -> None:
        task = self._task(desc)
        self.progress.update(task, completed=desc.size,
                             description=f"{short(desc)} {_VERBS[action]}")

    def manifest_done(self, desc: Descriptor, root: bool) -> None:
        self.console.print(_manifest_line(desc), highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def warning(self, text: str) -> None:
        self.console.print(f"berth: warning: {text}", highlight=False, markup=False)

    def pack_progress(self, directory: str, files: int, done: int) -> None:
        """A bar without a total (the size is known when packing ends): bytes and rate."""
        if directory not in self.packing:
            self.packing[directory] = self.progress.add_task(f"packing {directory}",
                                                             total=None)
        self.progress.update(self.packing[directory], completed=done,
                             description=f"packing {directory} ({_entries(files)})")

    def pack_done(self, directory: str, files: int, size: int) -> None:
        task = self.packing.pop(directory, None)
        if task is None:
            task = self.progress.add_task("", total=None)
        self.progress.update(task, total=size, completed=size,
                             description=f"packed {directory} ({_entries(files)})")
