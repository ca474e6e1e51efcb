"""SHA-256 whose running state can be saved and resumed in another process.

hashlib's objects cannot be serialised, and OpenSSL 3 offers no API to export a digest
context. Its SHA256_Init/Update/Final functions (deprecated, still exported) work on the
public, fixed-size SHA256_CTX struct from <openssl/sha.h>, whose bytes *are* the state.
They are called here through ctypes, on the libcrypto hashlib itself uses, with the GIL
released as for any ctypes call. The module checks itself against hashlib at import
(including a save and resume at an odd offset); where that fails, `AVAILABLE` is False and
callers keep to hashlib (an upload continued by another process then re-reads its data).
The state is machine-specific (native byte order and layout), so it is stored with the
machine's tag and only used where the tag matches.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import struct
import sys

log = logging.getLogger(__name__)

CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16] (u32), num, md_len (u32)
TAG = f"openssl-sha256-ctx/{platform.machine()}/{sys.byteorder}".encode()


def _load() -> ctypes.CDLL | None:
    try:
        import _hashlib

        lib = ctypes.CDLL(_hashlib.__file__)
        for name in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
            getattr(lib, name)
    except (ImportError, OSError, AttributeError):
        return None
    lib.SHA256_Init.argtypes = [ctypes.c_void_p]
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return lib


_LIB = _load()


class ResumableSha256:
    """The hashlib interface Berth uses (update, hexdigest, copy), plus `state()`."""

    def __init__(self, state: bytes | None = None) -> None:
        assert _LIB is not None
        self._ctx = ctypes.create_string_buffer(CTX_SIZE)
        if state is None:
            _LIB.SHA256_Init(self._ctx)
        else:
            if len(state) != CTX_SIZE:
                raise ValueError("not a SHA256_CTX state")
            ctypes.memmove(self._ctx, state, CTX_SIZE)

    def update(self, data: bytes, /) -> None:
        assert _LIB is not None
        _LIB.SHA256_Update(self._ctx, data, len(data))

    def hexdigest(self) -> str:
        assert _LIB is not None
        ctx = ctypes.create_string_buffer(self._ctx.raw, CTX_SIZE)  # Final consumes a copy
        out = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(out, ctx)
        return out.raw.hex()

    def copy(self) -> ResumableSha256:
        return ResumableSha256(self._ctx.raw)

    def state(self) -> bytes:
        return self._ctx.raw

    def length(self) -> int:
        """Bytes hashed so far, as the state records them (Nl/Nh count bits)."""
        low, high = struct.unpack_from("=II", self._ctx.raw, 32)
        return int(((high << 32) | low) // 8)


def _self_test() -> bool:
    if _LIB is None:
        return False
    data = os.urandom(200_003)
    try:
        first = ResumableSha256()
        first.update(data[:70_001])
        resumed = ResumableSha256(first.state())
        resumed.update(data[70_001:])
        ok = (resumed.hexdigest() == hashlib.sha256(data).hexdigest()
              and resumed.length() == len(data) and first.length() == 70_001)
    except (OSError, ValueError, struct.error):
        ok = False
    if not ok:
        log.warning("SHA256_CTX state from OpenSSL is not usable here: uploads continued by "
                    "another process re-read their data")
    return ok


AVAILABLE = _self_test()


def dump(hasher: ResumableSha256) -> bytes:
    return TAG + b"\n" + hasher.state()


def load(blob: bytes, offset: int) -> ResumableSha256 | None:
    """A hasher from `dump` output, if it was made on this kind of machine and has hashed
    exactly `offset` bytes."""
    tag, _, state = blob.partition(b"\n")
    if not AVAILABLE or tag != TAG or len(state) != CTX_SIZE:
        return None
    hasher = ResumableSha256(state)
    return hasher if hasher.length() == offset else None
