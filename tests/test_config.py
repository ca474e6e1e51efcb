"""Configuration: distribution-style keys, environment overrides, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.config import ConfigError, load_config, parse_duration

from .servers import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    config = load_config(None, environ={})
    assert config.http.addr == "127.0.0.1:5000"
    assert config.filesystem.rootdirectory == Path("data")
    assert config.storage.delete.enabled is True
    assert config.validation.manifests.urls.allow == ()
    assert config.berth.manifest_max_bytes == 4 * 1024 * 1024


def test_distribution_config_carries_across(tmp_path: Path) -> None:
    path = write(tmp_path, """
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: true
      age: 48h
      interval: 1h30m
      dryrun: true
http:
  addr: :5001
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
validation:
  manifests:
    urls:
      allow:
        - ^https?://([^/]+\\.)*example\\.com/
      deny:
        - ^https?://www\\.example\\.com/
""")
    config = load_config(path, environ={})
    assert config.filesystem.rootdirectory == Path("/var/lib/registry")
    assert config.storage.delete.enabled is False
    assert config.storage.maintenance.uploadpurging.age == 48 * 3600
    assert config.storage.maintenance.uploadpurging.interval == 5400
    assert config.http.addr == ":5001"
    assert len(config.validation.manifests.urls.deny) == 1


def test_environment_and_flags_override(tmp_path: Path) -> None:
    path = write(tmp_path, "http: {addr: '127.0.0.1:6000'}\nstorage: {delete: {enabled: true}}\n")
    env = {"BERTH_HTTP__ADDR": "127.0.0.1:7000", "BERTH_STORAGE__DELETE__ENABLED": "false",
           "BERTH_BERTH__MANIFEST_MAX_BYTES": "8192", "UNRELATED": "1"}
    config = load_config(path, environ=env)
    assert config.http.addr == "127.0.0.1:7000"
    assert config.storage.delete.enabled is False
    assert config.berth.manifest_max_bytes == 8192
    config = load_config(path, {"http.addr": "127.0.0.1:8000"}, environ=env)
    assert config.http.addr == "127.0.0.1:8000"


@pytest.mark.parametrize(("text", "env", "message"), [
    ("storage:\n  filesystem:\n    rootdir: /x\n", {},
     "storage.filesystem.rootdir: unknown key"),
    ("http:\n  addr: nonsense\n", {}, "http.addr"),
    ("storage:\n  delete:\n    enabled: maybe\n", {}, "storage.delete.enabled"),
    ("validation:\n  manifests:\n    urls:\n      deny: ['(']\n", {},
     "validation.manifests.urls.deny"),
    ("storage:\n  maintenance:\n    uploadpurging:\n      age: soon\n", {},
     "storage.maintenance.uploadpurging.age"),
    ("", {"BERTH_HTTP__NOPE": "1"}, "http.nope: unknown key"),
    ("- a list\n", {}, "top level must be a mapping"),
    ("a: [unclosed\n", {}, "not valid YAML"),
    ("auth:\n  htpasswd:\n    realm: x\n", {}, "auth.htpasswd.path: Field required"),
    ("auth:\n  silly:\n    realm: x\n", {}, "no 'silly' or 'none' auth"),
    ("auth: {}\n", {}, "configure auth.htpasswd"),
    ("auth:\n  token:\n    builtin: false\n", {}, "needs rootcertbundle or jwks"),
    ("auth:\n  token: {}\nhttp:\n  addr: 0.0.0.0:5000\n", {}, "credentials in clear"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str],
                             message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_durations() -> None:
    assert parse_duration("168h") == 168 * 3600
    assert parse_duration("1h30m10s") == 5410
    assert parse_duration("250ms") == 0.25
    assert parse_duration(12) == 12
    assert parse_duration("60") == 60  # plain seconds, as the docs say (`gc --grace 60`)
    assert parse_duration(" 2.5 ") == 2.5
    for bad in ("", "1d", "h", "10 s", "-5", "1e3"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_serve_refuses_bad_config_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "storage:\n  filesystem:\n    rootdir: /x\n")
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--config", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "storage.filesystem.rootdir: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_reports_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "client.cli", "serve", "--listen", f"127.0.0.1:{port}",
             "--root", str(tmp_path / "data")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_chunk_minimum_follows_the_storage() -> None:
    assert load_config(environ={}).chunk_min_length == 1024 * 1024
    s3 = load_config(overrides={"storage.s3.bucket": "b"}, environ={})
    assert s3.chunk_min_length == 5 * 1024 * 1024  # S3's part minimum
    assert load_config(overrides={"storage.s3.bucket": "b", "berth.chunk_min_length": 4096},
                       environ={}).chunk_min_length == 4096


def test_errors_name_the_variable_or_flag_that_set_the_key() -> None:
    """Issue 9, item 14: `BERTH_HTTP__ADDR=xx` was reported as "defaults: http.addr"."""
    with pytest.raises(ConfigError) as raised:
        load_config(None, environ={"BERTH_HTTP__ADDR": "xx"})
    assert str(raised.value) == "BERTH_HTTP__ADDR: http.addr: expected HOST:PORT, got 'xx'"
    with pytest.raises(ConfigError) as raised:
        load_config(None, {"http.addr": "yy"}, environ={})
    assert str(raised.value).startswith("the command line (http.addr): http.addr:")
    with pytest.raises(ConfigError) as raised:
        load_config(None, {"http.addr": "yy"}, environ={}, flags={"http.addr": "--listen"})
    assert str(raised.value).startswith("--listen: http.addr: expected HOST:PORT")


def test_distribution_keys_berth_ignores_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A copied distribution config.yml loads; each key Berth does not use is named once."""
    with caplog.at_level("WARNING", logger="registry.config"):
        load_config(None, {"http.secret": "s", "storage.cache": {"blobdescriptor": "inmemory"},
                           "health": {"storagedriver": {"enabled": True},
                                      "file": [{"file": "/tmp/down"}]}, "version": 0.1},
                    environ={})
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"config: {key} is a distribution setting Berth ignores"
        for key in ("health.file", "http.secret", "storage.cache")]
