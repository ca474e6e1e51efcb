"""Issue 12: what deploy/ ships is checked: the systemd unit passes `systemd-analyze
verify`; the Kubernetes manifests and the compose project fit together (ports, probe
paths, mounted files, secrets, selectors) and name only settings Berth has; their configs
really serve (on moto's S3) the probes, metrics and token endpoint they point at; the
compose project's bucket-creating script really creates the bucket. (The container image
itself is built and run in test_container.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

from registry.config import Config, load_config

from .authkit import basic, write_htpasswd, write_key
from .conftest import S3Endpoint
from .servers import BerthServer, free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    unit = (DEPLOY / "systemd" / "berth.service").read_text()
    berth = Path(sys.executable).parent / "berth"
    assert "ExecStart=/opt/berth/bin/berth serve --config /etc/berth/config.yml" in unit
    local = tmp_path / "berth.service"  # the same unit, with this checkout's berth
    local.write_text(unit.replace("/opt/berth/bin/berth", str(berth)))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stderr.strip()) == (0, "")


def test_systemd_unit_settings_exist() -> None:
    unit = (DEPLOY / "systemd" / "berth.service").read_text()
    environment = dict(line.removeprefix("Environment=").split("=", 1)
                       for line in unit.splitlines() if line.startswith("Environment="))
    config = load_config(None, environ=environment)  # each is a real key
    assert str(config.filesystem.rootdirectory) == "/var/lib/berth"
    assert "StateDirectory=berth" in unit and "DynamicUser=yes" in unit


# --- Kubernetes ---------------------------------------------------------------------------

def _k8s() -> dict[str, dict[str, Any]]:
    """The kustomization's resources by kind (one of each)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    by_kind: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            assert doc["kind"] not in by_kind, f"two {doc['kind']}s"
            by_kind[doc["kind"]] = doc
    return by_kind


def _config_text(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "shipped-config.yml"
    path.write_text(text)
    return load_config(path, environ={})  # unknown keys and bad values fail here


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def _dockerfile_user() -> str:
    lines = (DEPLOY / "container" / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    return users[-1]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    shipped = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == shipped
    assert set(_k8s()) == {"Namespace", "ConfigMap", "Secret", "Deployment", "Service",
                           "PodDisruptionBudget"}


def test_kubernetes_manifests_fit_together(tmp_path: Path) -> None:
    k8s = _k8s()
    deployment, service, pdb = k8s["Deployment"], k8s["Service"], k8s["PodDisruptionBudget"]
    spec, pod = deployment["spec"], deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    labels = pod["metadata"]["labels"]
    assert spec["replicas"] == 3
    for selector in (spec["selector"]["matchLabels"], service["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < spec["replicas"]

    config_map, secret = k8s["ConfigMap"], k8s["Secret"]
    config = _config_text(config_map["data"]["config.yml"], tmp_path)
    assert config.storage.s3 is not None  # replicas share S3, never a pod's disk
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == _port(config.http.addr)
    assert config.http.debug.addr is not None and ports["debug"] == _port(config.http.debug.addr)
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports and port["targetPort"] != "debug"
    probes = {name: container[name]["httpGet"]
              for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {p["port"] for p in probes.values()} == {"debug"}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {probes["livenessProbe"]["path"], probes["startupProbe"]["path"]} == {"/livez"}
    # one worker per CPU the pod asks for (without a CPU limit it would see the node's)
    assert config.http.workers == int(container["resources"]["requests"]["cpu"])
    assert "cpu" not in container["resources"]["limits"]
    annotations = pod["metadata"]["annotations"]
    assert config.http.debug.prometheus.enabled
    assert annotations["prometheus.io/path"] == config.http.debug.prometheus.path
    assert int(annotations["prometheus.io/port"]) == ports["debug"]
    # SIGTERM: readiness 503 for shutdowndelay, then draintimeout for requests in flight
    assert pod["spec"]["terminationGracePeriodSeconds"] > (config.http.shutdowndelay
                                                          + config.http.draintimeout)

    # The image's user, non-root, everywhere
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0
    assert str(security["runAsUser"]) == _dockerfile_user().split(":")[0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert container["image"] in {image["name"] for image in kustomization["images"]}

    # Every file the config names is mounted, from a ConfigMap or Secret key that exists
    assert container["args"] == ["serve", "--config", "/etc/berth/config.yml"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounted: dict[PurePosixPath, tuple[str, str]] = {}  # file → (ConfigMap/Secret, key)
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        source = volume.get("configMap") or volume.get("secret")
        if source is None:
            continue
        name = source.get("name") or source.get("secretName")
        assert name in {config_map["metadata"]["name"], secret["metadata"]["name"]}
        if "subPath" in mount:
            mounted[PurePosixPath(mount["mountPath"])] = (name, mount["subPath"])
        else:
            for item in source["items"]:
                mounted[PurePosixPath(mount["mountPath"]) / item["path"]] = (name, item["key"])
    assert config.auth is not None and config.auth.htpasswd is not None
    assert config.auth.token is not None and config.auth.token.signingkey is not None
    files = {"/etc/berth/config.yml", str(config.auth.htpasswd.path),
             str(config.auth.token.signingkey)}
    data = {config_map["metadata"]["name"]: config_map["data"],
            secret["metadata"]["name"]: secret["stringData"]}
    for file in files:
        name, key = mounted[PurePosixPath(file)]
        assert key in data[name], f"{file}: {name} has no key {key}"
    for env in container["env"]:
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert {e["name"] for e in container["env"]} == {"AWS_ACCESS_KEY_ID",
                                                      "AWS_SECRET_ACCESS_KEY"}


def _auth_files(tmp_path: Path) -> dict[str, Any]:
    """Real users and a real token key in place of the shipped placeholders."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    key = write_key(tmp_path / "token-key.pem", ed25519.Ed25519PrivateKey.generate())
    return {"htpasswd": {"path": str(htpasswd)}, "token": {"signingkey": str(key)}}


def _serve_shipped(tmp_path: Path, text: str, s3: S3Endpoint) -> tuple[BerthServer, Config]:
    """Start Berth on the shipped config, with loopback addresses, moto for the S3
    store, and real auth files: everything else is as shipped."""
    tree = yaml.safe_load(text)
    debug_port = free_port()
    tree["http"]["debug"]["addr"] = f"127.0.0.1:{debug_port}"
    tree["http"].pop("trustedproxies", None)
    tree["storage"]["s3"].update(regionendpoint=s3.url, forcepathstyle=True, bucket=s3.bucket,
                                 accesskey=s3.access_key, secretkey=s3.secret_key)
    for section, values in _auth_files(tmp_path).items():
        tree["auth"][section].update(values)
    tree["auth"]["token"].pop("realm", None)  # this server's own /auth/token
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = BerthServer(workdir, tree)
    tree["http"]["addr"] = server.host
    server.start()
    return server, _config_text(text, tmp_path)


def _check_serves(server: BerthServer, config: Config, probes: list[str]) -> None:
    assert server.proc is not None
    debug = f"http://127.0.0.1:{server.config['http']['debug']['addr'].rsplit(':', 1)[1]}"
    for path in probes:
        answer = requests.get(debug + path, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
    metrics = requests.get(debug + config.http.debug.prometheus.path, timeout=10)
    assert metrics.status_code == 200 and "registry_http_requests_total" in metrics.text
    challenge = requests.get(server.url + "/v2/", timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert config.auth is not None and config.auth.token is not None
    service = config.auth.token.service
    token = requests.get(server.url + "/auth/token", headers=basic("alice", "alice-pw"),
                         params={"service": service, "scope": "repository:a/b:pull,push"},
                         timeout=10)
    assert token.status_code == 200, token.text
    tags = requests.get(server.url + "/v2/a/b/tags/list", timeout=10,
                        headers={"Authorization": f"Bearer {token.json()['token']}"})
    # signed in, and S3 answered through the shipped storage section: no such repository
    assert (tags.status_code, tags.json()["errors"][0]["code"]) == (404, "NAME_UNKNOWN")


def test_kubernetes_config_serves_what_the_manifests_point_at(
        tmp_path: Path, moto_s3: S3Endpoint) -> None:
    k8s = _k8s()
    (container,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    probes = [container[name]["httpGet"]["path"]
              for name in ("startupProbe", "livenessProbe", "readinessProbe")]
    server, config = _serve_shipped(tmp_path, k8s["ConfigMap"]["data"]["config.yml"], moto_s3)
    try:
        _check_serves(server, config, probes)
    finally:
        server.stop()


# --- docker compose -----------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_compose_project_fits_together(tmp_path: Path) -> None:
    compose = _compose()
    services = compose["services"]
    berth = services["berth"]
    config = _config_text((COMPOSE / "config.yml").read_text(), tmp_path)
    assert berth["command"] == ["serve", "--config", "/etc/berth/config.yml"]
    assert berth["build"]["dockerfile"] == "deploy/container/Dockerfile"
    assert (COMPOSE / berth["build"]["context"] / berth["build"]["dockerfile"]).is_file()
    published = {int(p.rsplit(":", 1)[1]) for p in berth["ports"]}
    assert config.http.debug.addr is not None
    assert published == {_port(config.http.addr), _port(config.http.debug.addr)}

    # The config's files are mounted; the ones the user makes are named in the header
    mounts = {PurePosixPath(v.split(":")[1]): v.split(":")[0] for v in berth["volumes"]}
    assert mounts[PurePosixPath("/etc/berth/config.yml")] == "./config.yml"
    assert config.auth is not None and config.auth.htpasswd is not None
    assert config.auth.token is not None and config.auth.token.signingkey is not None
    header = (COMPOSE / "compose.yaml").read_text().split("\nname:")[0]
    for path in (config.auth.htpasswd.path, config.auth.token.signingkey):
        source = mounts[PurePosixPath(path)]
        assert f"> {source.removeprefix('./')}" in header or f"-out {source.removeprefix('./')}" \
            in header, f"the header does not say how to make {source}"

    # The store is a service of the project, and the bucket the one the script makes
    assert config.storage.s3 is not None and config.storage.s3.regionendpoint is not None
    host = re.match(r"https?://([^:/]+)", config.storage.s3.regionendpoint)
    assert host is not None and host[1] in services
    assert services["s3-bucket"]["environment"]["BUCKET"] == config.storage.s3.bucket
    assert services["s3-bucket"]["environment"]["S3_ENDPOINT"] == \
        config.storage.s3.regionendpoint
    assert berth["depends_on"]["s3-bucket"]["condition"] == "service_completed_successfully"
    grace = float(berth["stop_grace_period"].removesuffix("s"))
    assert grace > config.http.shutdowndelay + config.http.draintimeout

    # Every ${VARIABLE} the project uses is in example.env
    text = (COMPOSE / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = dict(line.split("=", 1) for line in (COMPOSE / "example.env").read_text()
                   .splitlines() if line and not line.startswith("#"))
    assert used and used <= set(example)


def test_compose_bucket_script_creates_the_bucket(tmp_path: Path, moto_s3: S3Endpoint) -> None:
    job = _compose()["services"]["s3-bucket"]
    assert job["entrypoint"] == ["python", "-c"]
    (script,) = job["command"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(S3_ENDPOINT=moto_s3.url, BUCKET="made-by-compose",
               AWS_ACCESS_KEY_ID=moto_s3.access_key, AWS_SECRET_ACCESS_KEY=moto_s3.secret_key)
    for _ in range(2):  # the second `docker compose up` finds the bucket there
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, "bucket made-by-compose is ready")
    s3 = boto3.client("s3", endpoint_url=moto_s3.url, region_name=moto_s3.region,
                      aws_access_key_id=moto_s3.access_key,
                      aws_secret_access_key=moto_s3.secret_key)
    assert "made-by-compose" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_compose_config_serves(tmp_path: Path, moto_s3: S3Endpoint) -> None:
    server, config = _serve_shipped(tmp_path, (COMPOSE / "config.yml").read_text(), moto_s3)
    try:
        _check_serves(server, config, ["/livez", "/readyz"])
    finally:
        server.stop()
