"""Issue 12: docs/configuration.md is the reference: every key the schema accepts (but
distribution's ignored ones) is in its tables, and every key the tables name exists."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from registry.config import Config, _Ignored

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _models(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section model a field holds (directly, optionally, or as a list of them)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found, listed = _models(arg)
            if found is not None:
                return found, listed
    if origin is tuple:
        args = typing.get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], True
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    return None, False


def schema_keys(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, bool]:
    """Every key, dotted (`[]` for a list of sections) → whether it is a leaf."""
    keys: dict[str, bool] = {}
    for name, info in model.model_fields.items():
        if any(isinstance(m, _Ignored) for m in info.metadata) or name == "version":
            continue
        key = f"{prefix}{name}"
        section, listed = _models(info.annotation)
        if section is None or not section.model_fields:
            keys[key] = True
            continue
        keys[key] = False
        keys.update(schema_keys(section, f"{key}[]." if listed else f"{key}."))
        if listed:
            keys[f"{key}[]"] = False
    return keys


def documented_keys() -> set[str]:
    found: set[str] = set()
    previous = ""
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        first = names[0]
        if first.startswith("…"):  # `…keeptags[].patterns`: the previous key's prefix
            tail = first[1:]
            anchor = tail.split(".")[0]
            first = previous[: previous.index(anchor)] + tail
        found.add(first)
        parent = first.rsplit(".", 1)[0]
        found.update(f"{parent}.{n}" for n in names[1:])
        previous = first
    return found


def test_every_key_is_documented_and_every_documented_key_exists() -> None:
    schema = schema_keys()
    documented = documented_keys()
    undocumented = sorted(k for k, leaf in schema.items() if leaf and k not in documented)
    unknown = sorted(k for k in documented if k not in schema)
    assert (undocumented, unknown) == ([], [])


def test_the_check_itself_sees_a_missing_key() -> None:
    """(The check is not vacuous: the schema has leaves, and the tables name them.)"""
    schema = schema_keys()
    assert schema["http.addr"] and schema["berth.quotas[].maxbytes"]
    assert not schema["berth.quotas[]"]
    assert "auth.token.issuer" in documented_keys()
    assert "http.secret" not in schema  # distribution's, ignored
