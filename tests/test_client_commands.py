"""Shell-form --cmd/--entrypoint (issue 9, item 9): Windows images keep backslashes
(`cmd /S /C`, the line unchanged, as Docker's builder does); Linux ones are split as a
POSIX shell would, with a warning when that ate backslashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from client.command import ShellCommand, parse_command

from .helpers import OCI_MANIFEST
from .platform_images import mixed_index
from .servers import BerthServer
from .test_cli import run_berth


def runtime_config(berth: BerthServer, repo: str, tag: str) -> dict[str, object]:
    manifest = requests.get(f"{berth.url}/v2/{repo}/manifests/{tag}",
                            headers={"Accept": OCI_MANIFEST}, timeout=30).json()
    config = requests.get(f"{berth.url}/v2/{repo}/blobs/{manifest['config']['digest']}",
                          timeout=30).json()
    return dict(config["config"])


@pytest.fixture
def app(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "hello.exe").write_bytes(b"MZ")
    return directory


def test_windows_shell_form_keeps_backslashes(berth: BerthServer, repo: str,
                                              app: Path) -> None:
    pushed = run_berth("push", str(app), f"{berth.host}/{repo}:v1", "--os", "windows",
                       "--cmd", r"C:\app\hello.exe --name "
                       r'"a b"', "--entrypoint", r'["C:\\app\\hello.exe"]', "-q")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr == ""  # nothing to warn about
    runtime = runtime_config(berth, repo, "v1")
    assert runtime["Cmd"] == ["cmd", "/S", "/C", r'C:\app\hello.exe --name "a b"']
    assert runtime["Entrypoint"] == [r"C:\app\hello.exe"]  # exec form: as given


def test_windows_rules_follow_a_windows_base(berth: BerthServer, repo: str, app: Path,
                                             tmp_path: Path) -> None:
    layout, _ = mixed_index(tmp_path / "base")
    base = f"{berth.host}/{repo}/base:multi"
    assert run_berth("push", f"oci:{layout.root}:multi", base, "-q").returncode == 0
    pushed = run_berth("push", str(app), f"{berth.host}/{repo}/app:v1", "--base", base,
                       "--os-version", "10.0.20348.1", "--arch", "amd64",
                       "--cmd", r"C:\app\hello.exe", "-q")
    assert pushed.returncode == 0, pushed.stderr
    assert runtime_config(berth, f"{repo}/app", "v1")["Cmd"] == [
        "cmd", "/S", "/C", r"C:\app\hello.exe"]


def test_linux_shell_form_warns_when_backslashes_are_eaten(berth: BerthServer, repo: str,
                                                           app: Path) -> None:
    pushed = run_berth("push", str(app), f"{berth.host}/{repo}:v1", "--cmd",
                       r"C:\app\hello.exe", "-q")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.startswith("berth: warning: --cmd: backslashes"), pushed.stderr
    assert "JSON array" in pushed.stderr and "--os windows" in pushed.stderr
    assert runtime_config(berth, repo, "v1")["Cmd"] == ["C:apphello.exe"]
    quiet = run_berth("push", str(app), f"{berth.host}/{repo}:v2", "--cmd",
                      r"/bin/sh -c 'echo a\ b'", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_json_with_bare_backslashes_says_how_to_write_them(berth: BerthServer, repo: str,
                                                           app: Path) -> None:
    result = run_berth("push", str(app), f"{berth.host}/{repo}:v1", "--os", "windows",
                       "--cmd", r'["C:\app\hello.exe"]')
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "backslash is written" in result.stderr


def test_shell_form_rules() -> None:
    assert ShellCommand(r"C:\x.exe /q").argv("windows") == (
        ("cmd", "/S", "/C", r"C:\x.exe /q"), None)
    argv, warning = ShellCommand("/usr/bin/app --x").argv("windows")
    assert argv[-1] == "/usr/bin/app --x" and warning and "POSIX path" in warning
    assert ShellCommand("app 'a b' c").argv("linux") == (("app", "a b", "c"), None)
    assert parse_command('["a", "b"]') == ("a", "b")
    assert parse_command("a b") == ShellCommand("a b")
