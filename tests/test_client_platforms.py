"""Platform requests (issue 9, items 7 and 8): one selection rule for pull, copy, unpack,
inspect and push --base; a request nothing matches is an error naming what there is; the
entry chosen is printed; --os-version is validated, implies Windows, and selects (it does
not overwrite) the base's version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from client.oci.descriptor import Descriptor, Platform
from client.oci.digest import Digest
from client.platforms import PlatformMatcher, host_architecture

from .helpers import OCI_MANIFEST
from .platform_images import mixed_index, single_image
from .servers import BerthServer
from .test_cli import run_berth


def one_line_error(result: object, code: int) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, stderr  # type: ignore[attr-defined]
    errors = [line for line in stderr.splitlines() if line.startswith("berth: error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return str(errors[0])


def push_layout(layout_root: Path, tag: str, ref: str) -> None:
    pushed = run_berth("push", f"oci:{layout_root}:{tag}", ref, "-q")
    assert pushed.returncode == 0, pushed.stderr


def config_of(berth: BerthServer, repo: str, tag: str) -> dict[str, object]:
    manifest = requests.get(f"{berth.url}/v2/{repo}/manifests/{tag}",
                            headers={"Accept": OCI_MANIFEST}, timeout=30).json()
    config = requests.get(f"{berth.url}/v2/{repo}/blobs/{manifest['config']['digest']}",
                          timeout=30).json()
    assert isinstance(config, dict)
    return config


@pytest.fixture
def linux_only(berth: BerthServer, repo: str, tmp_path: Path) -> str:
    """A single linux/amd64 image (no index) in the registry."""
    layout = single_image(tmp_path / "linux")
    ref = f"{berth.host}/{repo}:v1"
    push_layout(layout.root, "one", ref)
    return ref


@pytest.fixture
def mixed(berth: BerthServer, repo: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """An index: linux/amd64, then Windows 17763, 20348.1000, 20348.2000, 26100."""
    layout, digests = mixed_index(tmp_path / "mixed", host_architecture())
    ref = f"{berth.host}/{repo}/base:multi"
    push_layout(layout.root, "multi", ref)
    return ref, digests


def test_pull_of_a_single_image_for_another_platform_is_an_error(
        linux_only: str, tmp_path: Path) -> None:
    result = run_berth("pull", linux_only, f"oci:{tmp_path / 'p'}:x", "--platform",
                       "linux/arm64")
    line = one_line_error(result, 4)
    assert "linux/amd64 only" in line and "linux/arm64" in line
    assert not (tmp_path / "p" / "index.json").exists()
    same = run_berth("pull", linux_only, f"oci:{tmp_path / 'q'}:x", "--platform",
                     "linux/amd64", "-q")
    assert same.returncode == 0, same.stderr


def test_unpack_of_a_linux_image_as_windows_is_an_error(linux_only: str,
                                                        tmp_path: Path) -> None:
    target = tmp_path / "rootfs"
    result = run_berth("pull", linux_only, "--unpack", str(target), "--platform",
                       "windows/amd64")
    assert "linux/amd64 only" in one_line_error(result, 4)
    assert not target.exists() or not any(target.iterdir())


@pytest.mark.parametrize("version", ["banana", "10.0", "10.0.20348.1.2", "10.0.x.1"])
def test_invalid_os_version_is_a_usage_error(linux_only: str, tmp_path: Path,
                                             version: str) -> None:
    for args in (["pull", linux_only, f"oci:{tmp_path / 'p'}:x", "--os-version", version],
                 ["pull", linux_only, f"oci:{tmp_path / 'p'}:x", "--platform",
                  "windows/amd64", "--os-version", version],
                 ["push", str(tmp_path), f"{linux_only}-built", "--os-version", version]):
        assert "invalid --os-version" in one_line_error(run_berth(*args), 2)


def test_os_version_for_linux_is_a_usage_error(linux_only: str, tmp_path: Path) -> None:
    result = run_berth("pull", linux_only, f"oci:{tmp_path / 'p'}:x", "--platform",
                       "linux/amd64", "--os-version", "10.0.20348")
    assert "Windows" in one_line_error(result, 2)


def test_os_version_alone_means_windows_on_this_architecture(
        mixed: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    ref, digests = mixed
    result = run_berth("pull", ref, f"oci:{tmp_path / 'p'}:x", "--os-version",
                       "10.0.20348.1787", "--json")
    assert result.returncode == 0, result.stderr
    pulled = json.loads(result.stdout)
    assert pulled["digest"] == digests["10.0.20348.2000"]  # same build, highest revision
    assert pulled["platform"] == f"windows/{host_architecture()} 10.0.20348.2000"


def test_windows_without_a_version_takes_the_newest_not_the_first(
        mixed: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    ref, digests = mixed
    result = run_berth("pull", ref, f"oci:{tmp_path / 'p'}:x", "--platform",
                       f"windows/{host_architecture()}")
    assert result.returncode == 0, result.stderr
    assert digests["10.0.26100.100"][7:19] in result.stdout + result.stderr
    chosen = [line for line in result.stderr.splitlines() if "chosen" in line]
    assert chosen == [f"image windows/{host_architecture()} 10.0.26100.100 chosen "
                      f"(manifest {digests['10.0.26100.100'][7:19]})"], result.stderr


def test_no_matching_entry_names_what_the_index_has(mixed: tuple[str, dict[str, str]],
                                                    tmp_path: Path) -> None:
    ref, _ = mixed
    result = run_berth("pull", ref, "--unpack", str(tmp_path / "x"), "--platform",
                       "linux/s390x")
    line = one_line_error(result, 4)
    assert "linux/s390x" in line and "windows/" in line and "10.0.17763.5000" in line


def windows_app(tmp_path: Path) -> str:
    """A directory to build a Windows image from."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "run.cmd").write_text("@echo hi\r\n")
    return str(app)


def test_push_on_a_windows_base_index_says_which_base_it_took(
        berth: BerthServer, repo: str, mixed: tuple[str, dict[str, str]],
        tmp_path: Path) -> None:
    base, _ = mixed
    arch = host_architecture()
    pushed = run_berth("push", windows_app(tmp_path), f"{berth.host}/{repo}/app:v1",
                       "--base", base, "--os", "windows", "--arch", arch)
    assert pushed.returncode == 0, pushed.stderr
    assert f"base image windows/{arch} 10.0.26100.100 chosen" in pushed.stderr
    assert config_of(berth, f"{repo}/app", "v1")["os.version"] == "10.0.26100.100"


def test_os_version_of_push_selects_the_base_and_records_its_version(
        berth: BerthServer, repo: str, mixed: tuple[str, dict[str, str]],
        tmp_path: Path) -> None:
    base, _ = mixed
    arch = host_architecture()
    pushed = run_berth("push", windows_app(tmp_path), f"{berth.host}/{repo}/app:v1",
                       "--base", base, "--arch", arch, "--os-version", "10.0.20348.1787")
    assert pushed.returncode == 0, pushed.stderr
    config = config_of(berth, f"{repo}/app", "v1")
    assert (config["os"], config["os.version"]) == ("windows", "10.0.20348.2000")
    assert f"base image windows/{arch} 10.0.20348.2000 chosen" in pushed.stderr
    helped = " ".join(run_berth("push", "--help").stdout.split())
    assert "is the os.version of built images" not in helped
    assert "records its base's exact os.version" in helped


def test_os_version_without_a_base_builds_a_windows_image_of_that_version(
        berth: BerthServer, repo: str, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "run.cmd").write_text("@echo hi\r\n")
    pushed = run_berth("push", str(app), f"{berth.host}/{repo}:v1", "--os-version",
                       "10.0.20348.1787", "-q")
    assert pushed.returncode == 0, pushed.stderr
    config = config_of(berth, repo, "v1")
    assert (config["os"], config["os.version"]) == ("windows", "10.0.20348.1787")


def test_inspect_platform_shows_the_chosen_image(mixed: tuple[str, dict[str, str]]) -> None:
    ref, digests = mixed
    shown = run_berth("inspect", ref, "--os-version", "10.0.17763.100", "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["digest"] == digests["10.0.17763.5000"]
    assert info["config"]["os.version"] == "10.0.17763.5000"
    assert info["platform"].endswith("10.0.17763.5000")


def _entry(os_name: str, version: str | None, n: int) -> Descriptor:
    return Descriptor(OCI_MANIFEST, Digest.parse(f"sha256:{n:064x}"), 1,
                      platform=Platform("amd64", os_name, version))


@pytest.mark.parametrize(("host", "expected"), [
    (None, "10.0.26100.100"),  # no host version: the newest
    ("10.0.17763.1", "10.0.17763.5000"),  # below 20348: the exact build only
    ("10.0.20348.1787", "10.0.20348.2000"),  # same build, highest revision
    ("10.0.22621.1", "10.0.20348.2000"),  # LTSC 2022 up to the host build
    ("10.0.26100.5", "10.0.26100.100"),  # the host's own build first
])
def test_selection_rule(host: str | None, expected: str) -> None:
    entries = [_entry("linux", None, 0)] + [
        _entry("windows", v, n + 1) for n, v in enumerate(
            ["10.0.17763.5000", "10.0.20348.1000", "10.0.20348.2000", "10.0.26100.100"])]
    chosen = PlatformMatcher.parse("windows/amd64", host).select(entries)
    assert chosen is not None and chosen.platform is not None
    assert chosen.platform.os_version == expected
