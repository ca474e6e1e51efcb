"""What a transfer reports as it goes: the CLI draws progress bars from these."""

from __future__ import annotations

from typing import Literal

from .oci.descriptor import Descriptor

# exists: the destination had it; mounted: linked from another repository; uploaded: its
# bytes moved (pushed, or fetched by a pull); foreign: kept as a reference (not copied);
# converted: a foreign layer stored as an ordinary one.
BlobAction = Literal["exists", "mounted", "uploaded", "foreign", "converted"]


class Events:
    """Callbacks of a copy; the defaults do nothing. Called on the event loop."""

    def blob_started(self, desc: Descriptor) -> None:
        """Bytes of `desc` are about to move."""

    def blob_progress(self, desc: Descriptor, done: int) -> None:
        """`done` bytes of `desc` have moved so far (may go back after a resume)."""

    def blob_done(self, desc: Descriptor, action: BlobAction) -> None:
        """`desc` is at the destination (or deliberately not, for `foreign`)."""

    def manifest_done(self, desc: Descriptor, root: bool) -> None:
        """A manifest or index was stored (`root`: the one the destination names)."""

    def message(self, text: str) -> None:
        """Something worth telling a person (the platform chosen from an index)."""

    def warning(self, text: str) -> None:
        """Something that may not be what the person meant (the CLI shows these even
        with -q)."""

    def pack_progress(self, directory: str, files: int, done: int) -> None:
        """Packing `directory`: `files` entries and `done` bytes of file content so far."""

    def pack_done(self, directory: str, files: int, size: int) -> None:
        """`directory` is a layer blob of `size` bytes (`files` entries)."""
