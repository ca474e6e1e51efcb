from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .servers import ROOT, BerthServer, DistributionServer
from .skopeo import Skopeo

_names = itertools.count()
MakeBerth = Callable[..., BerthServer]


@pytest.fixture(scope="session")
def berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """One registry process shared by the tests that need no special configuration."""
    server = BerthServer(tmp_path_factory.mktemp("berth")).start()
    yield server
    server.stop()


STORAGE_DRIVERS = ["filesystem", "inmemory", "s3",
                   pytest.param("s3-rgw", marks=pytest.mark.rgw)]
_s3_prefixes = itertools.count()


def s3_config(endpoint: S3Endpoint, redirect: bool = False) -> dict[str, Any]:
    """`storage` for a Berth on moto, under a key prefix of its own."""
    return {"storage": {
        "s3": {"bucket": endpoint.bucket, "region": endpoint.region,
               "regionendpoint": endpoint.url, "accesskey": endpoint.access_key,
               "secretkey": endpoint.secret_key, "forcepathstyle": True,
               "rootdirectory": f"berth-{next(_s3_prefixes)}"},
        "redirect": {"disable": not redirect},
    }}


@pytest.fixture(scope="session", params=STORAGE_DRIVERS)
def registry_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """One registry per storage driver: API tests that ask for it run against each."""
    config: dict[str, Any] = {}
    if request.param == "inmemory":
        config = {"storage": {"inmemory": {}}}
    elif request.param == "s3":
        config = s3_config(request.getfixturevalue("moto_s3"))
    elif request.param == "s3-rgw":
        config = s3_config(request.getfixturevalue("rgw_s3"))
    server = BerthServer(tmp_path_factory.mktemp(f"berth-{request.param}"), config).start()
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


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    access_key: str = "berth-test"
    secret_key: str = "berth-test-secret"
    region: str = "us-east-1"


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Endpoint]:
    """moto's S3 in server mode: a separate HTTP server on loopback, spoken to by boto3."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = S3Endpoint(f"http://{host}:{port}", "berth")
    boto3.client("s3", endpoint_url=endpoint.url, region_name=endpoint.region,
                 aws_access_key_id=endpoint.access_key,
                 aws_secret_access_key=endpoint.secret_key).create_bucket(Bucket=endpoint.bucket)
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def rgw_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """Ceph's RADOS Gateway (real S3, real SigV4) on loopback: a single-node cluster that
    deploy/rgw/rgw.py starts from Debian's packages and stops by PID."""
    import json
    import shutil
    import subprocess
    import sys

    import boto3

    if shutil.which("radosgw") is None or shutil.which("ceph-osd") is None:
        pytest.skip("Ceph (ceph-mon, ceph-osd, radosgw) is not installed (CI installs it)")
    script = ROOT / "deploy" / "rgw" / "rgw.py"
    state = tmp_path_factory.mktemp("rgw") / "cluster"
    started = subprocess.run([sys.executable, str(script), "start", str(state)],
                             capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        raise RuntimeError(f"rgw.py start failed: {started.stderr}")
    info = json.loads(started.stdout.strip().splitlines()[-1])
    endpoint = S3Endpoint(info["endpoint"], "berth", info["access_key"], info["secret_key"],
                          info["region"])
    try:
        boto3.client("s3", endpoint_url=endpoint.url, region_name=endpoint.region,
                     aws_access_key_id=endpoint.access_key,
                     aws_secret_access_key=endpoint.secret_key).create_bucket(
                         Bucket=endpoint.bucket)
        yield endpoint
    finally:
        subprocess.run([sys.executable, str(script), "stop", str(state)],
                       capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))
