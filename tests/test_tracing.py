"""Issue 12: OpenTelemetry tracing (the `otel` extra), set up by the OTEL_* environment
variables — a SERVER span per request, named by route template, with INTERNAL children
for the storage operations; exported over OTLP/HTTP to a real receiver on loopback (an
aiohttp server decoding the protobuf requests), flushed at SIGTERM; and nothing of
OpenTelemetry so much as imported by a server the environment does not ask to trace."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from registry import tracing
from registry.api import requesttracing
from registry.storage.drivers.base import StorageError
from registry.storage.drivers.filesystem import FilesystemDriver
from registry.storage.drivers.memory import MemoryDriver
from registry.storage.traced import TracedDriver

from .conftest import MakeBerth
from .helpers import OCI_MANIFEST, digest, image, push_blob, put_manifest

SERVER, INTERNAL = 2, 1  # the protobuf's SpanKind
STATUS_ERROR = 2


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]
    status: int
    resource: dict[str, Any]
    events: list[str] = field(default_factory=list)


def _values(pairs: Any) -> dict[str, Any]:
    found = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 (POST /v1/traces, protobuf), in a thread
    of its own: the servers it hears from are processes the test drives synchronously."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.posts = 0
        self.content_types: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        received = []
        for resource_spans in message.resource_spans:
            resource = _values(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    received.append(Span(
                        s.name, s.kind, s.trace_id.hex(), s.span_id.hex(),
                        s.parent_span_id.hex(), _values(s.attributes), s.status.code,
                        resource, [e.name for e in s.events]))
        with self._lock:
            self.posts += 1
            self.content_types.add(request.content_type)
            self.spans += received
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()

    def received(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, done: Callable[[list[Span]], bool], timeout: float = 15) -> list[Span]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.received()
            if done(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"spans not received in {timeout}s: "
                             f"{[s.name for s in self.received()]}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as found:
        yield found


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """The environment the servers the test starts get: no OTEL_* but the test's."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "PYTHONPROFILEIMPORTTIME":
            monkeypatch.delenv(name)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def server_spans(spans: list[Span]) -> dict[str, Span]:
    """The SERVER spans by request id."""
    return {s.attributes["berth.request_id"]: s for s in spans if s.kind == SERVER}


def exchange(url: str, repo: str) -> tuple[list[requests.Response], str, str]:
    """A push (two blobs and a manifest) and a pull (manifest, with a caller's
    `traceparent`, and layer), a blob that is missing, the base check."""
    layer = secrets.token_bytes(5000)
    config = b'{"architecture": "amd64", "os": "linux"}'
    responses = []
    for blob in (config, layer):
        responses.append(requests.post(f"{url}/v2/{repo}/blobs/uploads/",
                                       params={"digest": digest(blob)}, data=blob))
    manifest = image(url, repo, layers=[layer], config=config)  # (pushes them once more)
    responses.append(put_manifest(url, repo, "v1", manifest))
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    responses.append(requests.get(f"{url}/v2/{repo}/manifests/v1", headers={
        "Accept": OCI_MANIFEST, "traceparent": f"00-{trace_id}-{parent}-01"}))
    responses.append(requests.get(f"{url}/v2/{repo}/blobs/{digest(layer)}"))
    responses.append(requests.head(f"{url}/v2/{repo}/blobs/sha256:{'0' * 64}"))
    responses.append(requests.get(f"{url}/v2/"))
    assert [r.status_code for r in responses] == [201, 201, 201, 200, 200, 404, 200]
    assert responses[4].content == layer
    return responses, trace_id, parent


def test_requests_and_their_storage_operations_are_traced(
    make_berth: MakeBerth, receiver: Receiver, otel_env: Callable[..., None]
) -> None:
    otel_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100")
    server = make_berth()
    responses, trace_id, parent = exchange(server.url, "team/app")
    ids = [r.headers["X-Request-Id"] for r in responses]
    spans = receiver.wait_for(lambda spans: set(ids) <= set(server_spans(spans)))
    assert receiver.content_types == {"application/x-protobuf"}
    by_id = server_spans(spans)
    requested = [by_id[i] for i in ids]

    assert [s.name for s in requested] == [
        "POST /v2/{name}/blobs/uploads/", "POST /v2/{name}/blobs/uploads/",
        "PUT /v2/{name}/manifests/{reference}", "GET /v2/{name}/manifests/{reference}",
        "GET /v2/{name}/blobs/{digest}", "HEAD /v2/{name}/blobs/{digest}", "GET /v2/"]
    for span, response in zip(requested, responses, strict=True):
        attributes = span.attributes
        assert attributes["http.request.method"] == response.request.method
        assert attributes["url.path"] == response.request.path_url.split("?")[0]
        assert attributes["http.route"] == span.name.split(" ", 1)[1]
        assert attributes["http.response.status_code"] == response.status_code
        assert attributes["url.scheme"] == "http"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == server.port
        assert attributes["client.address"] == "127.0.0.1"
        assert attributes["user_agent.original"].startswith("python-requests/")
        assert attributes["berth.request_id"] == response.headers["X-Request-Id"]
        assert span.status != STATUS_ERROR  # (a 404 is the client's, not an error)
        assert span.resource["service.name"] == "berth"
        assert span.resource["service.version"]
    assert all(s.attributes["berth.repository"] == "team/app" for s in requested[:-1])
    assert "berth.repository" not in requested[-1].attributes
    assert all("team/app" not in s.name and "sha256" not in s.name for s in spans)

    # the caller's trace goes on; the others are traces of their own
    pulled = requested[3]
    assert (pulled.trace_id, pulled.parent) == (trace_id, parent)
    assert all(s.parent == "" for i, s in enumerate(requested) if i != 3)
    assert len({s.trace_id for s in requested}) == len(requested)

    # storage operations: children of their request's span, none outside one
    storage = [s for s in spans if s.name.startswith("storage.")]
    assert storage and all(s.kind == INTERNAL for s in storage)
    spans_by_id = {s.span_id: s for s in spans}
    for s in storage:
        request_span = spans_by_id[s.parent]
        assert request_span.kind == SERVER and request_span.trace_id == s.trace_id
        assert s.attributes["berth.storage.driver"] == "filesystem"
        assert s.attributes["berth.storage.path"]

    def children(span: Span) -> list[Span]:
        return [s for s in storage if s.parent == span.span_id]

    def names(span: Span) -> set[str]:
        return {s.name for s in children(span)}

    assert {"storage.appender", "storage.commit", "storage.move"} <= names(requested[0])
    put = children(requested[2])
    assert {"storage.put", "storage.is_object"} <= names(requested[2])
    assert any(s.attributes["berth.storage.operation"] == "PutContent" for s in put)
    assert "storage.get" in names(requested[3])  # (the tag's link)
    assert "storage.open_local" in names(requested[4])  # (then sendfile)
    assert not names(requested[6])
    missing = children(requested[5])
    assert missing and all(s.status != STATUS_ERROR for s in missing)
    assert any(s.attributes.get("berth.storage.found") is False for s in missing)
    assert not [s for s in storage if s.status == STATUS_ERROR]


def test_spans_not_yet_sent_are_sent_at_sigterm(
    make_berth: MakeBerth, receiver: Receiver, otel_env: Callable[..., None]
) -> None:
    otel_env(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
             OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{receiver.url}/v1/traces",
             OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_SERVICE_NAME="registry-eu")
    server = make_berth()
    push_blob(server.url, "team/app", b"some bytes")
    time.sleep(0.5)
    assert receiver.posts == 0  # (a batch waits ten minutes)
    assert server.stop() == 0
    spans = receiver.received()  # before the process exited
    assert [s.name for s in spans if s.kind == SERVER] == [
        "GET /v2/", "POST /v2/{name}/blobs/uploads/"]  # (the test's wait, the push)
    assert {s.resource["service.name"] for s in spans} == {"registry-eu"}
    assert "tracing: spans of every request to otlp_proto_http" in server.log.read_text()


def test_every_worker_traces(make_berth: MakeBerth, receiver: Receiver,
                             otel_env: Callable[..., None]) -> None:
    otel_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100",
             OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="otel,process")  # (the SDK's: process.pid)
    server = make_berth({"http": {"workers": 2}})
    ids = {requests.get(f"{server.url}/v2/").headers["X-Request-Id"] for _ in range(20)}
    assert server.stop() == 0
    spans = server_spans(receiver.received())
    assert ids <= set(spans)
    # (each worker exports its own; worker 0 alone says so)
    assert len({s.resource["process.pid"] for s in spans.values()}) == 2
    assert server.log.read_text().count("tracing: spans of every request") == 1


@pytest.mark.parametrize("env", [
    {},
    {"OTEL_SERVICE_NAME": "berth", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}", "OTEL_SDK_DISABLED": "true"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "{receiver}", "OTEL_TRACES_EXPORTER": "none"},
], ids=["nothing", "no-exporter-asked", "sdk-disabled", "exporter-none"])
def test_untraced_server_imports_no_opentelemetry(
    make_berth: MakeBerth, receiver: Receiver, otel_env: Callable[..., None],
    env: dict[str, str],
) -> None:
    otel_env(PYTHONPROFILEIMPORTTIME="1",  # every module the server imports, logged
             **{k: v.format(receiver=receiver.url) for k, v in env.items()})
    server = make_berth()
    exchange(server.url, "team/app")
    assert server.stop() == 0
    imports = [line for line in server.log.read_text().splitlines()
               if line.startswith("import time:")]
    assert any(line.endswith(" aiohttp") for line in imports)  # (the log is the imports')
    assert not [line for line in imports if "opentelemetry" in line]
    assert receiver.posts == 0


def test_tracing_asked_for_without_the_extra(
    make_berth: MakeBerth, receiver: Receiver, otel_env: Callable[..., None],
    tmp_path: Path,
) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "opentelemetry").mkdir(parents=True)  # found first: as if not installed
    (hidden / "opentelemetry" / "__init__.py").write_text(
        "raise ImportError('No module named opentelemetry')\n")
    otel_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, PYTHONPATH=str(hidden))
    server = make_berth()
    exchange(server.url, "team/app")
    assert server.stop() == 0
    warnings = [line for line in server.log.read_text().splitlines() if "tracing" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert ("OTEL_EXPORTER_OTLP_ENDPOINT asks for traces, but the otel extra is not "
            "installed (pip install 'berth[otel]'") in warnings[0]
    assert receiver.posts == 0


@pytest.mark.parametrize(("env", "asks"), [
    ({}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"},
     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, None),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
     "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),
    ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, None),
])
def test_when_tracing_is_wanted(env: dict[str, str], asks: str | None) -> None:
    assert tracing.requested(env) == asks


def test_an_unknown_exporter_or_protocol_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"OTEL_TRACES_EXPORTER": "zipkin_json,otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    grpc_installed = bool(tracing._exporters({**env, "OTEL_TRACES_EXPORTER": "otlp"},
                                             announce=False))
    assert not tracing.setup(environ={**env, "OTEL_TRACES_EXPORTER": "zipkin_json"})
    assert "no trace exporter 'zipkin_json' is installed" in caplog.text
    if not grpc_installed:
        assert not tracing.setup(environ=env)
        assert "opentelemetry-exporter-otlp-proto-grpc" in caplog.text
    assert not tracing.setup(environ={"OTEL_TRACES_EXPORTER": "otlp",
                                      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert "OTLP protocol 'http/json' is not supported" in caplog.text
    assert tracing.tracer() is None


def test_shutdown_waits_for_the_exporter_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    class Stuck:  # (a provider whose exporter retries a collector that never answers)
        def shutdown(self) -> None:
            time.sleep(3)

    monkeypatch.setattr(tracing, "_provider", Stuck())
    started = time.monotonic()
    tracing.shutdown(timeout=0.2)
    assert time.monotonic() - started < 2
    assert "the spans not exported 0s after shutdown are dropped" in caplog.text
    assert tracing.tracer() is None


# In-process: the middleware and the driver wrapper over an in-memory exporter.

@pytest.fixture
def memory() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


class Failing(MemoryDriver):
    async def get(self, path: str) -> bytes:
        if path == "broken":
            raise StorageError("the disk is on fire")
        return await super().get(path)


async def test_storage_spans_are_parented_across_awaits_and_threads(
    memory: tuple[InMemorySpanExporter, TracerProvider], tmp_path: Path
) -> None:
    exporter, provider = memory
    tracer = provider.get_tracer("test")
    driver = TracedDriver(FilesystemDriver(tmp_path, max_threads=4), tracer)

    async def request(n: int) -> str:
        with tracer.start_as_current_span(f"request {n}", kind=SpanKind.SERVER) as span:
            for _ in range(3):  # interleaved with the other requests' (thread pool)
                await driver.put(f"r{n}/data", b"x" * n)
                await asyncio.gather(driver.get(f"r{n}/data"), driver.stat(f"r{n}/data"))
            assert b"".join([chunk async for chunk in driver.reader(f"r{n}/data")])
            return format(span.get_span_context().span_id, "016x")

    parents = await asyncio.gather(*(request(n) for n in range(1, 6)))
    await driver.get("r1/data")  # outside any request: no span
    await driver.close()
    finished = exporter.get_finished_spans()
    for n, parent in enumerate(parents, start=1):
        mine = [s for s in finished if s.parent is not None
                and format(s.parent.span_id, "016x") == parent]
        assert sorted(s.name for s in mine) == sorted(
            ["storage.put", "storage.get", "storage.stat"] * 3 + ["storage.reader"])
        assert all(s.attributes is not None and s.attributes["berth.storage.path"]
                   == f"r{n}/data" for s in mine)
        assert all(s.kind == SpanKind.INTERNAL for s in mine)
        (reader,) = (s for s in mine if s.name == "storage.reader")
        assert reader.attributes is not None and reader.attributes["berth.storage.bytes"] == n
    assert len(finished) == 5 * 11  # (each request's ten, and itself)


async def test_a_failing_storage_operation_ends_its_span_with_error(
    memory: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    exporter, provider = memory
    tracer = provider.get_tracer("test")
    driver = TracedDriver(Failing(), tracer)
    with tracer.start_as_current_span("request"):
        with pytest.raises(StorageError):
            await driver.get("broken")
        with pytest.raises(StorageError):  # (missing: an answer, not a failure)
            await driver.stat("missing")
        appender = await driver.appender("upload")
        await appender.write(b"abc")
        assert appender.size == 3
        await appender.commit()
    broken, missing, opened, committed, _ = exporter.get_finished_spans()
    assert broken.status.status_code == StatusCode.ERROR
    assert broken.status.description == "StorageError: the disk is on fire"
    assert broken.attributes is not None and broken.attributes["error.type"] == "StorageError"
    assert [e.name for e in broken.events] == ["exception"]
    assert missing.status.status_code == StatusCode.UNSET
    assert missing.attributes is not None and missing.attributes["berth.storage.found"] is False
    assert (opened.name, committed.name) == ("storage.appender", "storage.commit")
    assert committed.attributes is not None and committed.attributes["berth.storage.bytes"] == 3


async def test_server_errors_mark_the_request_span(
    memory: tuple[InMemorySpanExporter, TracerProvider],
    aiohttp_client: Callable[[web.Application], Any],
) -> None:
    exporter, provider = memory
    app = web.Application(middlewares=[requesttracing.middleware(provider.get_tracer("t"))])

    async def unavailable(_: web.Request) -> web.Response:
        return web.Response(status=503)

    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("bug")

    async def missing(_: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app.router.add_get("/v2/{name:.+}/unavailable", unavailable)
    app.router.add_get("/v2/{name:.+}/broken", broken)
    app.router.add_get("/v2/{name:.+}/missing", missing)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    for path, status in (("a/b/unavailable", 503), ("a/broken", 500), ("c/missing", 404),
                         ("nowhere", 404)):
        assert (await client.get(f"/v2/{path}")).status == status
    assert (await client.request("PROPFIND", "/v2/a/missing")).status == 405
    unavailable_span, broken_span, missing_span, unrouted, other = (
        exporter.get_finished_spans())
    assert unavailable_span.name == "GET /v2/{name}/unavailable"
    assert unavailable_span.status.status_code == StatusCode.ERROR
    assert unavailable_span.attributes == {**(unavailable_span.attributes or {}),
                                           "error.type": "503", "berth.repository": "a/b",
                                           "http.response.status_code": 503}
    assert broken_span.status.status_code == StatusCode.ERROR
    assert broken_span.attributes is not None
    assert broken_span.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in broken_span.events] == ["exception"]
    assert missing_span.status.status_code == StatusCode.UNSET
    assert missing_span.attributes is not None
    assert missing_span.attributes["http.response.status_code"] == 404
    assert unrouted.name == "GET"
    assert unrouted.attributes is not None and "http.route" not in unrouted.attributes
    assert other.name == "HTTP"
    assert other.attributes is not None
    assert other.attributes["http.request.method"] == "_OTHER"
    assert other.attributes["http.request.method_original"] == "PROPFIND"

