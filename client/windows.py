"""The Windows container layer format, as written from Linux.

A Windows layer tar has the C:\\ tree under `Files/` and registry hive deltas under
`Hives/` (a layer without `Hives/` is refused by Windows). Modes carry only the file-type
bits (`0100000` regular, `040000` directory, `0120000` symlink) except the two top
directories, which get `0555` as other Linux-side tools write them. PAX records carry the
Win32 metadata: `MSWINDOWS.fileattr` (decimal attributes) and `MSWINDOWS.rawsd` (base64
self-relative security descriptor). Whiteouts are empty `Files/…/.wh.<name>` entries.
"""

from __future__ import annotations

import base64
import binascii
import stat

from .errors import UsageError

# Owner and group BUILTIN\Users, no DACL ("O:BUG:BU"): lets Windows execute the files.
DEFAULT_SECURITY_DESCRIPTOR = (
    "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="
)

FILE_ATTRIBUTE_READONLY = 0x1
FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_ARCHIVE = 0x20
FILE_ATTRIBUTE_REPARSE_POINT = 0x400

TOP_DIRECTORIES = ("Files", "Hives")
TOP_MODE = stat.S_IFDIR | 0o555
FILES = "Files"


def check_security_descriptor(value: str) -> str:
    """A base64 self-relative security descriptor (revision 1, self-relative flag set)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the security descriptor must be base64") from None
    if len(raw) < 20 or raw[0] != 1 or not int.from_bytes(raw[2:4], "little") & 0x8000:
        raise UsageError("not a self-relative security descriptor (revision 1)")
    return value


def layer_path(relative: str) -> str:
    """Where a path of the source tree goes in a Windows layer."""
    return f"{FILES}/{relative}"


def attributes(st_mode: int, target_is_dir: bool = False) -> int:
    if stat.S_ISDIR(st_mode):
        return FILE_ATTRIBUTE_DIRECTORY
    if stat.S_ISLNK(st_mode):
        kind = FILE_ATTRIBUTE_DIRECTORY if target_is_dir else FILE_ATTRIBUTE_ARCHIVE
        return kind | FILE_ATTRIBUTE_REPARSE_POINT
    readonly = 0 if st_mode & stat.S_IWUSR else FILE_ATTRIBUTE_READONLY
    return FILE_ATTRIBUTE_ARCHIVE | readonly


def pax_records(st_mode: int, security_descriptor: str, target_is_dir: bool = False
                ) -> dict[str, str]:
    return {
        "MSWINDOWS.fileattr": str(attributes(st_mode, target_is_dir)),
        "MSWINDOWS.rawsd": security_descriptor,
    }
