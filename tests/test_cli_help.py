"""Help text that says what each option does for the command it is on (issue 9, item 13),
and `inspect` showing what its help promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .platform_images import mixed_index
from .servers import BerthServer
from .test_cli import run_berth


def options(command: str) -> dict[str, str]:
    """Each option of `berth COMMAND --help` and its help text, whitespace collapsed."""
    text = run_berth(command, "--help").stdout
    section = text.split("Options:", 1)[1]
    found: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^  (-\w, )?(--[\w-]+)\s*(.*)$", line)
        if match:
            name = match.group(2)
            found[name] = match.group(3)
        elif name and line.strip():
            found[name] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in found.items()}


def test_pull_help_talks_about_pulling() -> None:
    pull = options("pull")
    for flag in ("--include-foreign", "--convert-foreign"):
        assert "upload" not in pull[flag], pull[flag]
    assert "fetch" in pull["--include-foreign"]
    assert pull["--all"].startswith("pull every platform of an index (the default")
    assert "--unpack" in pull["--all"]
    assert "upload" in options("push")["--include-foreign"]


def test_image_options_have_help_and_say_whether_they_repeat() -> None:
    push = options("push")
    for flag in ("--env", "--label", "--workdir", "--user", "--cmd", "--entrypoint"):
        assert re.sub(r"^[A-Z\[\]:=_]+\s*", "", push[flag]), f"{flag} has no help"
    for flag in ("--env", "--label", "--delete", "--os-feature"):
        assert "repeatable" in push[flag], push[flag]
    assert "replaces" in push["--workdir"] and "replaces" in push["--user"]
    assert "gzip 0-3" in push["--level"] and "zstd 1-22" in push["--level"]
    assert "cmd /S /C" in push["--cmd"]


def test_logout_lists_only_what_it_uses() -> None:
    logout = options("logout")
    assert set(logout) == {"--authfile", "--help"}, logout


def test_debug_help_says_it_logs_requests() -> None:
    helped = options("tags")
    assert "log every request" in helped["--debug"]


def test_inspect_platform_and_runtime_config(berth: BerthServer, repo: str,
                                             tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "app").write_text("#!/bin/sh\n")
    ref = f"{berth.host}/{repo}:v1"
    pushed = run_berth("push", str(tree), ref, "--env", "PORT=8080", "--env", "MODE=x",
                       "--cmd", '["/app", "--serve"]', "--workdir", "/srv", "--label",
                       "team=a", "-q")
    assert pushed.returncode == 0, pushed.stderr
    text = run_berth("inspect", ref).stdout
    assert '  cmd:        ["/app", "--serve"]' in text, text
    assert "  workdir:    /srv" in text
    assert "  env:\n    PORT=8080\n    MODE=x\n" in text
    assert "  labels:\n    team=a" in text

    layout, digests = mixed_index(tmp_path / "mixed")
    index = f"{berth.host}/{repo}/multi:v1"
    assert run_berth("push", f"oci:{layout.root}:multi", index, "-q").returncode == 0
    assert "--platform" in options("inspect")
    chosen = run_berth("inspect", index, "--platform", "windows/amd64", "--os-version",
                       "10.0.20348.1")
    assert chosen.returncode == 0, chosen.stderr
    assert f"  digest:     {digests['10.0.20348.2000']}" in chosen.stdout
    assert "IMAGE=windows-amd64-10.0.20348.2000" in chosen.stdout
    raw = run_berth("inspect", index, "--platform", "linux/amd64", "--raw")
    assert json.loads(raw.stdout)["mediaType"].endswith("manifest.v1+json")
