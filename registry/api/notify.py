"""The events API handlers report (distribution's envelope, docs/events.md): what was
pushed, pulled, mounted or deleted, by whom, through which request, on which instance."""

from __future__ import annotations

import datetime
import socket
import uuid
from typing import Any

from aiohttp import web

from client.oci.digest import Digest

from ..auth.access import access
from ..events import Event, Notifier
from ..storage.examine import ManifestInfo
from .requestid import request_id

NOTIFIER = web.AppKey("notifier", Notifier)
INSTANCE = uuid.uuid4().hex  # this process, in every event's `source`
BLOB_TYPE = "application/octet-stream"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _event(request: web.Request, action: str, target: dict[str, Any]) -> Event:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    addr = f"{socket.gethostname()}:{sockname[1]}" if sockname else socket.gethostname()
    user = access(request).user
    return {
        "id": uuid.uuid4().hex, "timestamp": _now(), "action": action,
        "target": {k: v for k, v in target.items() if v is not None},
        "request": {"id": request_id(request), "addr": request.remote,
                    "host": request.host, "method": request.method,
                    "useragent": request.headers.get("User-Agent", "")},
        "actor": {"name": user} if user else {},
        "source": {"addr": addr, "instanceID": INSTANCE},
    }


def _url(request: web.Request, name: str, kind: str, digest: Digest) -> str:
    return f"{request.scheme}://{request.host}/v2/{name}/{kind}/{digest}"


def _notifier(request: web.Request) -> Notifier | None:
    """Where events go; None without endpoints (then no event is even built)."""
    notifier = request.app.get(NOTIFIER)
    return notifier if notifier is not None and notifier.enabled else None


def _send(request: web.Request, events: list[Event]) -> None:
    notifier = _notifier(request)
    if notifier is not None:
        notifier.emit(events)


def manifest(request: web.Request, action: str, name: str, info: ManifestInfo,
             tags: list[str] | None = None) -> None:
    """A manifest pushed or pulled: one event per tag (distribution's way), or one."""
    if _notifier(request) is None:
        return
    target = {"mediaType": info.media_type, "digest": str(info.digest), "size": info.size,
              "length": info.size, "repository": name,
              "url": _url(request, name, "manifests", info.digest)}
    each_tag: list[str | None] = [*dict.fromkeys(tags)] if tags else [None]
    _send(request, [_event(request, action, {**target, "tag": tag}) for tag in each_tag])


def blob(request: web.Request, action: str, name: str, digest: Digest, size: int | None,
         source: str | None = None) -> None:
    if _notifier(request) is None:
        return
    _send(request, [_event(request, action, {
        "mediaType": BLOB_TYPE, "digest": str(digest), "size": size, "length": size,
        "repository": name, "fromRepository": source,
        "url": _url(request, name, "blobs", digest)})])


def deleted(request: web.Request, name: str, digest: Digest | None, tag: str | None) -> None:
    if _notifier(request) is None:
        return
    _send(request, [_event(request, "delete", {
        "digest": str(digest) if digest else None, "repository": name, "tag": tag})])
