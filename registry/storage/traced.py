"""A storage driver that makes an INTERNAL span of every operation of the driver it wraps
(`storage.get`, `storage.stat`, …), as a child of the span being recorded (a request's:
api/requesttracing.py) — wrapped only while tracing is on (registry/tracing.py).

Attributes: the driver (`berth.storage.driver`), the action as the
`registry_storage_action_seconds` metric names it (`berth.storage.operation`), the
storage key (`berth.storage.path`: a path of registry/storage/paths.py — repository,
digest, upload id, all of which the request's `url.path` shows already; never a URL a
driver signs), a move's destination, bytes where they are known. A failing operation
ends with error status and the exception; a missing object is an answer, not a failure
(`berth.storage.found` false), as the metrics count it.

The span is started on the event loop, around the `await` of the inner driver, so it is
parented by the task's context even when the work runs in the driver's thread pool, and
it lasts until that work is done. Work outside a recorded span (background jobs, the
readiness probe, requests not sampled) gets no spans: nothing to attach them to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import BinaryIO, TypeVar

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from .drivers.base import Appender, FileInfo, PathNotFoundError, StorageDriver

T = TypeVar("T")


def _failed(span: trace.Span, exc: BaseException) -> None:
    if isinstance(exc, PathNotFoundError):
        span.set_attribute("berth.storage.found", False)
        return
    span.set_attribute("error.type", type(exc).__qualname__)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class TracedDriver(StorageDriver):
    def __init__(self, inner: StorageDriver, tracer: trace.Tracer) -> None:
        self.inner = inner
        self.tracer = tracer
        self.name = inner.name
        self.time_resolution = inner.time_resolution
        self.has_versions = inner.has_versions

    @property
    def location(self) -> str:
        return self.inner.location

    def _attributes(self, operation: str, path: str) -> dict[str, AttributeValue]:
        return {"berth.storage.driver": self.name, "berth.storage.operation": operation,
                "berth.storage.path": path}

    async def _traced(self, method: str, operation: str, path: str,
                      call: Callable[[], Awaitable[T]], answers: bool = False,
                      more: dict[str, AttributeValue] | None = None) -> T:
        """`call` in a span; `answers`: its result says whether the object is there."""
        if not trace.get_current_span().is_recording():
            return await call()
        with self.tracer.start_as_current_span(
            f"storage.{method}", kind=SpanKind.INTERNAL,
            attributes={**self._attributes(operation, path), **(more or {})},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                result = await call()
            except BaseException as exc:
                _failed(span, exc)
                raise
            if answers and not result:
                span.set_attribute("berth.storage.found", False)
            return result

    async def get(self, path: str) -> bytes:
        return await self._traced("get", "GetContent", path, lambda: self.inner.get(path))

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        await self._traced("put", "PutContent", path,
                           lambda: self.inner.put(path, data, durable),
                           more={"berth.storage.bytes": len(data)})

    async def stat(self, path: str) -> FileInfo:
        return await self._traced("stat", "Stat", path, lambda: self.inner.stat(path))

    async def is_object(self, path: str) -> bool:
        return await self._traced("is_object", "Stat", path,
                                  lambda: self.inner.is_object(path), answers=True)

    def version(self, path: str) -> Hashable | None:
        return self.inner.version(path)  # (no I/O that could wait)

    async def list_dir(self, path: str) -> list[str]:
        return await self._traced("list_dir", "List", path, lambda: self.inner.list_dir(path))

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        return await self._traced("walk", "Walk", path, lambda: self.inner.walk(path, prune))

    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        return await self._traced("list_keys", "List", path,
                                  lambda: self.inner.list_keys(path, start_after, limit))

    async def move(self, source: str, destination: str) -> None:
        await self._traced("move", "Move", source, lambda: self.inner.move(source, destination),
                           more={"berth.storage.destination": destination})

    async def delete(self, path: str) -> None:
        await self._traced("delete", "Delete", path, lambda: self.inner.delete(path))

    async def delete_object(self, path: str) -> None:
        await self._traced("delete_object", "Delete", path,
                           lambda: self.inner.delete_object(path))

    def reader(self, path: str, offset: int = 0,
               length: int | None = None) -> AsyncIterator[bytes]:
        """The inner driver's stream itself when nothing is recorded; else one span from
        the first read until the stream ends (its bytes counted), a child of the span
        current at the call, not made current itself: a stream is read a piece at a time,
        between other work."""
        stream = self.inner.reader(path, offset, length)
        if not trace.get_current_span().is_recording():
            return stream
        return self._read(stream, context.get_current(), self._attributes("Reader", path))

    async def _read(self, stream: AsyncIterator[bytes], parent: context.Context,
                    attributes: dict[str, AttributeValue]) -> AsyncIterator[bytes]:
        span = self.tracer.start_span("storage.reader", parent, SpanKind.INTERNAL, attributes)
        sent = 0
        try:
            async for chunk in stream:
                sent += len(chunk)
                yield chunk
        except GeneratorExit:  # (the reader stopped early: a client gone)
            raise
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.set_attribute("berth.storage.bytes", sent)
            span.end()

    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        appender = await self._traced("appender", "Writer", path,
                                      lambda: self.inner.appender(path, resume_at, fresh))
        if not trace.get_current_span().is_recording():
            return appender
        return _TracedAppender(self, appender, path)

    async def open_local(self, path: str) -> BinaryIO | None:
        return await self._traced("open_local", "OpenLocal", path,
                                  lambda: self.inner.open_local(path))

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self._traced("redirect_url", "RedirectURL", path,
                                  lambda: self.inner.redirect_url(path, method))

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return await self.inner.abort_stale_writes(path, older_than)

    async def close(self) -> None:
        await self.inner.close()


class _TracedAppender(Appender):
    """Spans for the end of a write (`storage.commit`, `storage.abort`); the writes
    themselves, many per blob, are the request's time and make none."""

    def __init__(self, driver: TracedDriver, inner: Appender, path: str) -> None:
        self._driver, self._inner, self._path = driver, inner, path

    @property
    def size(self) -> int:  # type: ignore[override]
        return self._inner.size

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def commit(self) -> None:
        await self._driver._traced("commit", "Commit", self._path, self._inner.commit,
                                   more={"berth.storage.bytes": self._inner.size})

    async def abort(self) -> None:
        await self._driver._traced("abort", "Abort", self._path, self._inner.abort)
