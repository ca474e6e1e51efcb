"""The `berth` client commands as a user runs them: output, exit codes, one-line errors."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .layouts import Layout, build_image, build_index
from .servers import ROOT, BerthServer


def run_berth(*args: str, env: dict[str, str] | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, env=env, input=stdin)


@pytest.fixture
def berth(berth: BerthServer) -> BerthServer:
    return berth


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    src = Layout.create(tmp_path / "src")
    images = [build_image(src, "cli-a", "amd64"), build_image(src, "cli-b", "arm64", "v8")]
    src.tag("multi", "application/vnd.oci.image.index.v1+json", build_index(src, images))
    src.tag("one", "application/vnd.oci.image.manifest.v1+json", images[0].manifest)
    return src


def test_push_inspect_tags_pull_rm(berth: BerthServer, repo: str, layout: Layout,
                                   tmp_path: Path) -> None:
    ref = f"{berth.host}/{repo}"
    pushed = run_berth("push", f"oci:{layout.root}:multi", f"{ref}:multi", "--json")
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    assert result["digest"] == layout.resolve("multi")["digest"]
    assert set(result["blobs"].values()) == {"uploaded"}
    plain = run_berth("push", f"oci:{layout.root}:one", f"{ref}:one")
    assert plain.returncode == 0, plain.stderr
    assert "already there" in plain.stderr  # progress lines when not on a terminal
    assert plain.stdout.strip().endswith("(0 of 4 blobs transferred)")

    shown = run_berth("inspect", f"{ref}:multi")
    assert "linux/arm64/v8" in shown.stdout and "linux/amd64" in shown.stdout
    info = json.loads(run_berth("inspect", f"{ref}:one", "--json").stdout)
    assert info["config"]["architecture"] == "amd64"
    assert len(info["layers"]) == 3
    raw = run_berth("inspect", f"{ref}:one", "--raw")
    assert raw.stdout.encode() == layout.blob(layout.resolve("one")["digest"])

    assert run_berth("tags", ref).stdout.split() == ["multi", "one"]
    assert repo in json.loads(run_berth("catalog", berth.host, "--json").stdout)

    out = tmp_path / "pulled"
    pulled = run_berth("pull", f"{ref}:multi", f"oci:{out}:arm", "--platform", "linux/arm64", "-q")
    assert pulled.returncode == 0, pulled.stderr
    index = json.loads((out / "index.json").read_text())
    arm = json.loads(layout.blob(layout.resolve("multi")["digest"]))["manifests"][1]
    assert index["manifests"][0]["digest"] == arm["digest"]

    assert run_berth("rm", f"{ref}:one").returncode == 0
    assert run_berth("tags", ref).stdout.split() == ["multi"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("inspect", "{host}/nope/nope:x"), 4, "manifest not found"),
    (("inspect", "Bad Reference"), 2, "invalid"),
    (("inspect", "127.0.0.1:1/x:y", "--retries", "0"), 5, "cannot reach 127.0.0.1:1"),
    (("push", "{host}/a:b", "{host}/c:d"), 2, "is neither oci:PATH[:TAG]"),
    (("pull", "{host}/a:b", "oci:/x", "--platform", "nonsense"), 2, "invalid platform"),
    (("copy", "oci:/does/not/exist:v1", "{host}/x:y"), 4, "not an OCI image layout"),
    (("copy", "{host}/a:b", "{host}/c:d", "--include-foreign", "--convert-foreign"), 2,
     "exclude each other"),
])
def test_errors_are_one_line(berth: BerthServer, args: tuple[str, ...], code: int,
                             message: str) -> None:
    result = run_berth(*(a.format(host=berth.host) for a in args))
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("berth: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_login_logout_write_docker_config(berth: BerthServer, tmp_path: Path) -> None:
    authfile = tmp_path / "config.json"
    result = run_berth("login", berth.host, "-u", "alice", "--password-stdin",
                   "--authfile", str(authfile), stdin="s3cret\n")
    assert result.returncode == 0, result.stderr
    config = json.loads(authfile.read_text())
    auth = config["auths"][berth.host]["auth"]
    assert base64.b64decode(auth).decode() == "alice:s3cret"
    assert authfile.stat().st_mode & 0o077 == 0
    assert run_berth("logout", berth.host, "--authfile", str(authfile)).returncode == 0
    assert json.loads(authfile.read_text())["auths"] == {}
    again = run_berth("logout", berth.host, "--authfile", str(authfile))
    assert again.returncode == 1
    assert "not logged in" in again.stderr
