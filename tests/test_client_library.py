"""The library's face (issue 10): programs import from `client` alone, every name it
promises is there, SyncClient and Client have one shape, and importing stays cheap."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import client
from client import Client, SyncClient

from .servers import ROOT

DOCUMENTS = ["docs/client.md", "README.md"]


@pytest.mark.parametrize("name", client.__all__)
def test_every_public_name_imports(name: str) -> None:
    assert getattr(client, name) is not None
    assert name in dir(client)


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, Any] = {}
    exec("from client import *", namespace)
    assert set(client.__all__) <= namespace.keys()


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        client.Nothing  # noqa: B018


def _public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {name: member for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_sync_client_has_every_method_of_client() -> None:
    asynchronous, blocking = _public_methods(Client), _public_methods(SyncClient)
    assert blocking.keys() == asynchronous.keys()
    for name, method in asynchronous.items():
        assert inspect.signature(blocking[name]) == inspect.signature(method), name
        assert not inspect.iscoroutinefunction(blocking[name]), name
    assert inspect.signature(SyncClient.__init__) == inspect.signature(Client.__init__)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_examples_import_only_from_client(document: str) -> None:
    blocks = _python_blocks((ROOT / document).read_text())
    if document == "docs/client.md":
        assert blocks, "docs/client.md shows no Python"
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules, names = [node.module], [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                modules, names = [alias.name for alias in node.names], []
            else:
                continue
            for module in modules:
                if module.split(".")[0] == "client":
                    assert module == "client", f"{document}: imports from {module}"
                    assert set(names) <= set(client.__all__), f"{document}: {names}"


def test_importing_the_command_line_stays_cheap() -> None:
    """`berth --help` needs neither HTTP nor the library behind the face."""
    code = ("import sys, client, client.cli; "
            "print(sorted(m for m in sys.modules if m in ('aiohttp', 'client.client', "
            "'client.sync', 'zstandard', 'rich')))")
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert found == "[]"
