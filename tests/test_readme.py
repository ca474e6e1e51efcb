"""The README's first steps work as written on a machine without internet (issue 9,
item 15), and the licence `pyproject.toml` names is the one shipped."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from .conftest import MakeBerth
from .servers import ROOT


def try_it_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"Try it[^\n]*\n\n```sh\n(.*?)```", readme, re.S)
    assert match, "README has no 'Try it' shell block"
    return match.group(1)


def test_readme_says_where_berth_is() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`.venv/bin/berth`" in readme and "PATH" in readme


def test_try_it_runs_offline(make_berth: MakeBerth, tmp_path: Path) -> None:
    block = try_it_block()
    assert "docker.io" not in block  # nothing to download
    server = make_berth()
    berth = Path(sys.executable).with_name("berth")
    assert berth.exists(), f"{berth}: the README's command is not installed"
    script = block.replace(".venv/bin/berth", str(berth)).replace("127.0.0.1:5000",
                                                                  server.host)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "hello from Berth" in result.stdout
    assert '"hello"' in result.stdout  # the catalog


def test_the_license_file_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert " ".join(text.split()[:4]) == "Apache License Version 2.0,"
    assert "END OF TERMS AND CONDITIONS" in text
