"""Issue 12: what deploy/ ships is checked: the systemd unit passes `systemd-analyze
verify` and names only settings Berth has."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry.config import load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    unit = (DEPLOY / "systemd" / "berth.service").read_text()
    berth = Path(sys.executable).parent / "berth"
    assert "ExecStart=/opt/berth/bin/berth serve --config /etc/berth/config.yml" in unit
    local = tmp_path / "berth.service"  # the same unit, with this checkout's berth
    local.write_text(unit.replace("/opt/berth/bin/berth", str(berth)))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stderr.strip()) == (0, "")


def test_systemd_unit_settings_exist() -> None:
    unit = (DEPLOY / "systemd" / "berth.service").read_text()
    environment = dict(line.removeprefix("Environment=").split("=", 1)
                       for line in unit.splitlines() if line.startswith("Environment="))
    config = load_config(None, environ=environment)  # each is a real key
    assert str(config.filesystem.rootdirectory) == "/var/lib/berth"
    assert "StateDirectory=berth" in unit and "DynamicUser=yes" in unit
