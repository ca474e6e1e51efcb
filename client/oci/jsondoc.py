"""Parsing JSON documents that come from the network (manifests, configs, token answers).

`json.loads` raises `RecursionError` on deeply nested input (`[[[[…`), which is not a
`ValueError`: every caller would have to know. Here it is one error, `JSONDocumentError`
(a `ValueError`), for anything that is not a JSON document, however it fails.
"""

from __future__ import annotations

import json
from typing import Any


class JSONDocumentError(ValueError):
    """Bytes that are not a JSON document (malformed, not UTF-8, or nested too deeply)."""


def loads(data: bytes | str) -> Any:
    """The value a JSON text holds."""
    try:
        return json.loads(data)
    except RecursionError:
        raise JSONDocumentError("not valid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise JSONDocumentError(f"not valid JSON: {exc}") from None


def loads_object(data: bytes | str, what: str = "document") -> dict[str, Any]:
    """A JSON text that must hold an object."""
    value = loads(data)
    if not isinstance(value, dict):
        raise JSONDocumentError(f"a {what} must be a JSON object")
    return value
