"""The resumable SHA-256 state: saved in one process, finished in another."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.storage import hashstate

from .servers import ROOT

pytestmark = pytest.mark.skipif(not hashstate.AVAILABLE,
                                reason="this OpenSSL's SHA256_CTX cannot be used")

FINISH = """
import sys
from pathlib import Path
from registry.storage import hashstate
state, rest = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()
hasher = hashstate.load(state, int(sys.argv[3]))
assert hasher is not None
hasher.update(rest)
print(hasher.hexdigest())
"""


def test_state_resumes_in_another_process(tmp_path: Path) -> None:
    data = os.urandom(3_000_017)
    cut = 1_234_567  # not a multiple of the 64-byte block
    first = hashstate.ResumableSha256()
    first.update(data[:cut])
    (tmp_path / "state").write_bytes(hashstate.dump(first))
    (tmp_path / "rest").write_bytes(data[cut:])
    result = subprocess.run(
        [sys.executable, "-c", FINISH, str(tmp_path / "state"), str(tmp_path / "rest"),
         str(cut)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == hashlib.sha256(data).hexdigest()


def test_state_is_checked_before_use() -> None:
    hasher = hashstate.ResumableSha256()
    hasher.update(b"x" * 100)
    saved = hashstate.dump(hasher)
    assert hashstate.load(saved, 100) is not None
    assert hashstate.load(saved, 99) is None  # not the session's offset
    assert hashstate.load(b"other-machine/arm64\n" + saved.split(b"\n", 1)[1], 100) is None
    assert hashstate.load(saved[:-1], 100) is None  # truncated
    assert hasher.copy().hexdigest() == hashlib.sha256(b"x" * 100).hexdigest()
