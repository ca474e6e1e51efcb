"""Issue 12: Prometheus metrics — distribution's names and labels, bounded label sets,
bytes as really sent — scraped by a real Prometheus (Debian's), which then answers a
PromQL query about a request the test made."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from registry.config import ConfigError, load_config

from .authkit import write_htpasswd
from .conftest import MakeBerth
from .helpers import OCI_MANIFEST, digest, image, push_blob, put_manifest
from .servers import BerthServer, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = requests.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def with_metrics(make_berth: MakeBerth, extra: dict[str, Any] | None = None
                 ) -> tuple[BerthServer, str]:
    debug = f"127.0.0.1:{free_port()}"
    config: dict[str, Any] = {"http": {"debug": {"addr": debug,
                                                 "prometheus": {"enabled": True}}}}
    config.update(extra or {})
    return make_berth(config), f"http://{debug}/metrics"


def test_requests_storage_and_bytes_are_counted(make_berth: MakeBerth) -> None:
    server, metrics_url = with_metrics(make_berth)
    url = server.url
    layer = b"x" * 300_000
    manifest = image(url, "team/app", layers=[layer])
    assert put_manifest(url, "team/app", "v1", manifest).status_code == 201
    assert requests.get(f"{url}/v2/team/app/blobs/{digest(layer)}").content == layer
    assert requests.get(f"{url}/v2/team/app/manifests/nope",
                        headers={"Accept": OCI_MANIFEST}).status_code == 404
    time.sleep(0.2)  # the access-log hook runs just after the response
    samples = scrape(metrics_url)

    assert value(samples, "registry_http_requests_total", handler="manifest", code="201",
                 method="put") == 1
    assert value(samples, "registry_http_requests_total", handler="manifest", code="404",
                 method="get") == 1
    assert value(samples, "registry_http_requests_total", handler="blob-upload", code="201",
                 method="post") == 2  # config and layer, monolithic
    assert value(samples, "registry_http_request_duration_seconds_count", handler="blob",
                 method="get") == 1
    # bytes really sent (sendfile) and received
    assert value(samples, "registry_http_response_size_bytes_sum", handler="blob") == len(layer)
    assert value(samples, "registry_http_request_size_bytes_sum",
                 handler="blob-upload") >= len(layer)
    assert value(samples, "registry_storage_action_seconds_count", driver="filesystem",
                 action="PutContent") >= 3
    assert value(samples, "registry_storage_action_seconds_count", driver="filesystem",
                 action="Stat") >= 1
    assert any(name == "berth_build_info" for name, _ in samples)
    # bounded labels: no repository, digest or tag anywhere
    text = requests.get(metrics_url).text
    for unbounded in ("team/app", digest(layer), "v1", "nope"):
        assert unbounded not in text.replace("version=", "")


def test_auth_outcomes_and_metrics_on_the_main_listener(make_berth: MakeBerth,
                                                       tmp_path: Path) -> None:
    users = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    server = make_berth({
        "auth": {"htpasswd": {"realm": "berth", "path": str(users)}},
        "http": {"debug": {"prometheus": {"enabled": True, "mainlistener": True,
                                          "path": "/internal/metrics"}}},
    })
    url = server.url
    before = scrape(f"{url}/internal/metrics")  # no credentials needed
    assert requests.get(f"{url}/v2/").status_code == 401
    assert requests.get(f"{url}/v2/", auth=("alice", "wrong")).status_code == 401
    assert requests.get(f"{url}/v2/", auth=("alice", "secret")).status_code == 200
    time.sleep(0.2)
    after = scrape(f"{url}/internal/metrics")

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("berth_auth_requests_total", outcome="challenged") == 2
    assert grew("berth_auth_requests_total", outcome="allowed") == 1
    assert grew("registry_http_requests_total", handler="base", code="401", method="get") == 2
    assert grew("registry_http_requests_total", handler="metrics", code="200",
                method="get") == 1
    assert requests.get(f"{url}/metrics").status_code == 401  # only the configured path


def test_prometheus_needs_somewhere_to_serve() -> None:
    with pytest.raises(ConfigError, match=r"needs http\.debug\.addr"):
        load_config(None, {"http.debug.prometheus.enabled": True}, environ={})
    with pytest.raises(ConfigError, match="outside /v2"):
        load_config(None, {"http.debug.prometheus.path": "/v2/metrics"}, environ={})


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Debian's Prometheus on loopback; the test writes its scrape target first."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    yield workdir, binary


def test_a_real_prometheus_scrapes_and_answers(make_berth: MakeBerth,
                                              prometheus: tuple[Path, str]) -> None:
    workdir, binary = prometheus
    server, metrics_url = with_metrics(make_berth)
    target = metrics_url.removeprefix("http://").removesuffix("/metrics")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "berth", "static_configs": [{"targets": [target]}]}],
    }))
    manifest = image(server.url, "app", layers=[b"scraped"])
    assert put_manifest(server.url, "app", "v1", manifest).status_code == 201
    assert push_blob(server.url, "app", b"one more") == digest(b"one more")
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        query = ('sum(registry_http_requests_total{job="berth",handler="manifest",'
                 'method="put",code="201"})')
        answer: list[Any] = []
        deadline = time.monotonic() + 60
        while not answer and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                reply = requests.get(f"http://127.0.0.1:{port}/api/v1/query",
                                     params={"query": query}, timeout=5).json()
            except requests.ConnectionError:
                continue
            answer = reply.get("data", {}).get("result", [])
        assert answer, (workdir / "prometheus.log").read_text()[-2000:]
        assert float(answer[0]["value"][1]) == 1.0
        up = requests.get(f"http://127.0.0.1:{port}/api/v1/query",
                          params={"query": 'up{job="berth"}'}).json()["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_housekeeping_metrics(make_berth: MakeBerth) -> None:
    """Scheduled collections and scrubs are counted; each collection's exact recount sets
    the quota gauges of the repositories a rule covers (and only those)."""
    server, metrics_url = with_metrics(make_berth, {"berth": {
        "gc": {"enabled": True, "interval": "0.5s", "grace": "60s"},
        "scrub": {"enabled": True, "interval": "0.5s"},
        "quotas": [{"repositories": "limited/**", "maxbytes": "1MiB", "maxtags": 5}],
    }})
    layer = b"l" * 5000
    manifest = image(server.url, "limited/app", layers=[layer])
    assert put_manifest(server.url, "limited/app", "v1", manifest).status_code == 201
    push_blob(server.url, "free/app", b"not under a quota")
    config = requests.get(f"{server.url}/v2/limited/app/manifests/v1",
                          headers={"Accept": OCI_MANIFEST}).json()["config"]["size"]

    def ready() -> bool:
        samples = scrape(metrics_url)
        return (value(samples, "berth_gc_runs_total", outcome="done") >= 1
                and value(samples, "berth_scrub_runs_total", outcome="done") >= 1
                and ("berth_quota_used_bytes", frozenset({("repository", "limited/app")}))
                in samples)

    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline, "no collection, scrub or recount in 30 s"
        time.sleep(0.3)
    samples = scrape(metrics_url)
    stored = value(samples, "berth_quota_used_bytes", repository="limited/app")
    assert stored == len(layer) + len(manifest) + config
    assert value(samples, "berth_quota_limit_bytes", repository="limited/app") == 1024 ** 2
    assert value(samples, "berth_quota_used_tags", repository="limited/app") == 1
    assert value(samples, "berth_quota_limit_tags", repository="limited/app") == 5
    assert ("berth_quota_used_bytes", frozenset({("repository", "free/app")})) not in samples
    assert value(samples, "berth_scrub_problems") == 0
    assert value(samples, "berth_scrub_verified_bytes_total") >= len(layer)
