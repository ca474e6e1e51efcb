"""skopeo, a real third-party registry client, run in isolation for the tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

TIMEOUT = 120  # seconds, per skopeo call


class Skopeo:
    """Runs skopeo with its own home, auth file, registries.conf and no signature policy,
    so the host's container configuration cannot change what it does."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "registries.d").mkdir(parents=True)
        (home / "tmp").mkdir()
        (home / "registries.conf").write_text("")
        (home / "auth.json").write_text(json.dumps({"auths": {}}))
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),
            "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [
            "skopeo", "--insecure-policy", "--registries.d", str(self.home / "registries.d"),
            "--tmpdir", str(self.home / "tmp"), *args,
        ]
        result = subprocess.run(
            command, capture_output=True, timeout=TIMEOUT, env=self.env, check=False
        )
        if check:
            assert result.returncode == 0, (
                f"{' '.join(command)} exited {result.returncode}:\n"
                f"{result.stderr.decode(errors='replace')}"
            )
        return result

    def copy(self, source: str, dest: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
        return self.run(
            "copy", "--retry-times", "0", "--src-tls-verify=false", "--dest-tls-verify=false",
            *flags, source, dest,
        )

    def inspect(self, image: str, *flags: str) -> bytes:
        return self.run("inspect", "--retry-times", "0", "--tls-verify=false", *flags,
                        image).stdout
