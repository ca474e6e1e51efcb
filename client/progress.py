"""Showing a transfer to a person: rich progress bars on a terminal, plain lines otherwise."""

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


class PlainEvents(Events):
    """One line per finished blob and manifest (for logs and pipes)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out

    def blob_done(self, desc: Descriptor, action: BlobAction) -> None:
        print(f"blob {short(desc)} ({desc.size} bytes): {_VERBS[action]}", file=self.out)

    def manifest_done(self, desc: Descriptor, root: bool) -> None:
        print(f"manifest {desc.digest}: stored", file=self.out)

    def message(self, text: str) -> None:
        print(text, file=self.out)


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
        self.console.print(f"manifest {desc.digest}: stored")

    def message(self, text: str) -> None:
        self.console.print(text)
