"""Logging: text or JSON (one object per line), distribution's `log.fields` on every
entry, and the request id of the request being handled on every line it causes."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

from .config import Config

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class _SecondCache:
    """`formatTime` strings made once per second (the access log asks for one per
    request); the milliseconds are added per record, as logging does."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def time(self, formatter: logging.Formatter, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", formatter.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"  # (logging's own format)


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self.fields = fields
        self._times = _SecondCache()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._times.time(self, record)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(), **self.fields,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        access = getattr(record, "access", None)
        if access:
            entry.update(access)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.suffix = "".join(f" {k}={v}" for k, v in fields.items())
        self._times = _SecondCache()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._times.time(self, record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record) + self.suffix
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


def configure_logging(config: Config, worker: int | None = None) -> None:
    """Logging as the config says; a worker's lines (registry/workers.py) say which."""
    level = {"warn": "WARNING"}.get(config.log.level, config.log.level.upper())
    handler = logging.StreamHandler()
    fields = dict(config.log.fields)
    if worker is not None:
        fields["worker"] = str(worker)
    handler.setFormatter(JsonFormatter(fields) if config.log.formatter == "json"
                         else TextFormatter(fields))
    handler.addFilter(_RequestId())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # No line shows where it was logged from, or the thread or process: logging need not
    # look them up for every record (its documented optimisations).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
