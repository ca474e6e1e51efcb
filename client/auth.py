"""Credentials and registry authentication (Docker registry token specification).

Credentials come from explicit arguments, or from a Docker `config.json`
(`auths`, `credsStore`, `credHelpers` through `docker-credential-*` helpers).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AuthError
from .oci.jsondoc import JSONDocumentError, loads, loads_object

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY}


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token, used instead of a password

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse `WWW-Authenticate` (RFC 7235): `Bearer realm="…",service="…",scope="…"`."""
    challenges: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        match = re.match(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)\s*", header[pos:])
        if match is None:
            break
        scheme = match.group(1).lower()
        pos += match.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _PARAM.match(header, pos)
            if param is None or param.end() == pos:
                break
            # a bare token followed by a space starts the next challenge
            if "=" not in header[pos:param.end()]:
                break
            quoted, bare = param.group(2), param.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme, params))
    return challenges


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _config_key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry in _HUB_ALIASES else registry


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return loads_object(path.read_bytes(), "Docker config file")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AuthError(f"cannot read {path}: {exc.strerror or exc}") from None
    except JSONDocumentError as exc:
        raise AuthError(f"{path}: {exc}") from None


def _helper(name: str, action: str, payload: str) -> str:
    try:
        result = subprocess.run(
            [f"docker-credential-{name}", action], input=payload, capture_output=True,
            text=True, timeout=30, check=False,
        )
    except FileNotFoundError:
        raise AuthError(f"credential helper docker-credential-{name} is not installed") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper docker-credential-{name} timed out") from None
    if result.returncode != 0:
        message = (result.stdout or result.stderr).strip()
        if action == "get" and "credentials not found" in message.lower():
            return ""
        raise AuthError(f"docker-credential-{name} {action} failed: {message}")
    return result.stdout


def load_credentials(registry: str, path: Path | None = None) -> Credentials | None:
    """Credentials for a registry host from a Docker config file, if it has any."""
    path = path or config_path()
    config = _read_config(path)
    key = _config_key(registry)
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(key) or helpers.get(registry) or config.get("credsStore")
    if helper:
        out = _helper(str(helper), "get", key)
        if out:
            try:
                data = loads(out)
            except JSONDocumentError:
                raise AuthError(f"docker-credential-{helper} returned invalid JSON") from None
            if not isinstance(data, dict):
                raise AuthError(f"docker-credential-{helper} returned no JSON object")
            user, secret = data.get("Username", ""), data.get("Secret", "")
            if user == "<token>":
                return Credentials(identity_token=secret)
            return Credentials(user, secret)
    auths = config.get("auths") or {}
    entry = auths.get(key) or auths.get(registry)
    if entry is None:
        for candidate, value in auths.items():
            host = re.sub(r"^https?://", "", candidate).split("/", 1)[0]
            if host == registry:
                entry = value
                break
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        return Credentials(identity_token=str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"{path}: malformed 'auth' for {key}") from None
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def store_credentials(registry: str, credentials: Credentials, path: Path | None = None) -> str:
    """Save credentials the way `docker login` does; returns where they went."""
    path = path or config_path()
    config = _read_config(path)
    key = _config_key(registry)
    helper = (config.get("credHelpers") or {}).get(key) or config.get("credsStore")
    if helper:
        payload = json.dumps({"ServerURL": key, "Username": credentials.username,
                              "Secret": credentials.password})
        _helper(str(helper), "store", payload)
        return f"docker-credential-{helper}"
    auths = config.setdefault("auths", {})
    raw = f"{credentials.username}:{credentials.password}".encode()
    auths[key] = {"auth": base64.b64encode(raw).decode()}
    _write_config(path, config)
    return str(path)


def erase_credentials(registry: str, path: Path | None = None) -> bool:
    path = path or config_path()
    config = _read_config(path)
    key = _config_key(registry)
    helper = (config.get("credHelpers") or {}).get(key) or config.get("credsStore")
    if helper:
        _helper(str(helper), "erase", key)
        return True
    auths = config.get("auths") or {}
    if key not in auths:
        return False
    del auths[key]
    _write_config(path, config)
    return True


def _write_config(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent="\t")
    tmp.replace(path)
