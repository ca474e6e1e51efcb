from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .servers import BerthServer, DistributionServer

_names = itertools.count()
MakeBerth = Callable[..., BerthServer]


@pytest.fixture(scope="session")
def berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """One registry process shared by the tests that need no special configuration."""
    server = BerthServer(tmp_path_factory.mktemp("berth")).start()
    yield server
    server.stop()


STORAGE_DRIVERS = {
    "filesystem": {},
    "inmemory": {"storage": {"inmemory": {}}},
}


@pytest.fixture(scope="session", params=sorted(STORAGE_DRIVERS))
def registry_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """One registry per storage driver: API tests that ask for it run against each."""
    server = BerthServer(tmp_path_factory.mktemp(f"berth-{request.param}"),
                         STORAGE_DRIVERS[request.param]).start()
    yield server
    server.stop()


@pytest.fixture
def make_berth(tmp_path: Path) -> Iterator[MakeBerth]:
    """Start a registry of the test's own, with config overrides."""
    started: list[BerthServer] = []

    def start(config: dict[str, Any] | None = None) -> BerthServer:
        workdir = tmp_path / f"berth-{len(started)}"
        workdir.mkdir()
        server = BerthServer(workdir, config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to the test, so tests can share one server."""
    base = request.node.name.lower().split("[")[0].replace("_", "-").strip("-")
    return f"t/{base}-{next(_names)}"


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[DistributionServer]:
    """Debian's docker-registry (the CNCF distribution registry) on loopback."""
    if DistributionServer.binary is None:
        pytest.skip("docker-registry is not installed (CI installs it)")
    server = DistributionServer(tmp_path).start()
    yield server
    server.stop()
