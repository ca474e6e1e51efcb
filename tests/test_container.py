"""Issue 12: the container image (deploy/container/Dockerfile), built and run for real.

No base image can be pulled here, so the test makes one: debootstrap's minimal Debian
bookworm with python3 (3.11, the Debian and python of python:3.11-slim-bookworm), imported
into a Docker engine the test starts itself (its own socket, data root and exec root; no
iptables, no bridge) and passed as the BASE build argument. The dependencies are wheels
downloaded on the host for the image's python (cp311, glibc 2.36), put in the context's
wheels/, so the build runs with no network at all. The container runs on the host's
network on a loopback port, hardened as Kubernetes runs it (read-only root, no
capabilities); it must turn healthy, take an image from skopeo and give it back byte for
byte, run as its fixed non-root user, turn unhealthy while its server does not answer, and
stop on SIGTERM with exit status 0. The figures (debootstrap, wheelhouse and build times,
the image's size) go to stderr and to the report section "container figures".
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
import requests

from registry.config import load_config

from .layouts import Layout, layout_image
from .servers import ROOT, free_port
from .skopeo import Skopeo

CONTAINER = ROOT / "deploy" / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
CONFIG_PATH = "/etc/berth/config.yml"  # distribution's path, where the image's config is
UID = 10001  # the image's user and group
SUITE = "bookworm"  # python3 is 3.11 there, as in python:3.11-slim-bookworm
PYTHON = "3.11"  # the image's python, which the wheelhouse is downloaded for
GLIBC_MINOR = 36  # bookworm's glibc 2.36: the newest manylinux tag that python takes
BASE_TAG = "berth-test-base:bookworm"
IMAGE_TAG = "berth-test:latest"
FIGURES: dict[str, str] = {}  # what the report section quotes, in the order measured
STARTED = [0.0]  # when the engine fixture began


# --- the Dockerfile and what it ships (no engine needed) ----------------------------------

def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments): comments dropped, continuations joined."""
    lines = [line for line in DOCKERFILE.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("berth_healthcheck",
                                                  CONTAINER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dockerfile_fits_the_shipped_config() -> None:
    steps = instructions()
    args = [rest for keyword, rest in steps if keyword == "ARG"]
    of = {keyword: rest for keyword, rest in steps}  # (the last of each)
    # one base for both stages, declared before the first
    assert steps[0] == ("ARG", "BASE=python:3.11-slim-bookworm")
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert froms == ["${BASE} AS build", "${BASE}"]
    assert "BASE" in args
    config = load_config(CONTAINER / "config.yml", environ={})  # unknown keys fail here
    assert config.storage.filesystem is not None
    assert of["VOLUME"] == str(config.storage.filesystem.rootdirectory) == "/var/lib/registry"
    host, _, port = config.http.addr.rpartition(":")
    assert (host, of["EXPOSE"]) == ("0.0.0.0", port) and port == "5000"
    assert ("COPY", f"deploy/container/config.yml {CONFIG_PATH}") in steps
    assert json.loads(of["CMD"]) == ["serve", "--config", CONFIG_PATH]
    assert json.loads(of["ENTRYPOINT"]) == ["/opt/berth/bin/berth"]
    assert of["USER"] == f"{UID}:{UID}"
    assert of["STOPSIGNAL"] == "SIGTERM"
    check = of["HEALTHCHECK"]
    assert check.endswith('CMD ["/opt/berth/bin/python", "/opt/berth/healthcheck.py"]')
    assert ("COPY", "deploy/container/healthcheck.py /opt/berth/healthcheck.py") in steps
    labels = of["LABEL"]
    for key in ("title", "description", "licenses", "version", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_sends_what_the_build_reads() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    assert patterns[0] == "*"  # nothing but what is let back in
    allowed = {p.removeprefix("!") for p in patterns if p.startswith("!")}
    assert {"pyproject.toml", "README.md", "registry", "client", "deploy/container",
            "wheels"} <= allowed
    assert all((ROOT / p).exists() for p in allowed - {"wheels"})


def test_healthcheck_asks_where_the_server_listens(tmp_path: Path) -> None:
    check = healthcheck_module()

    def url(**settings: str) -> str:
        config = load_config(CONTAINER / "config.yml", settings, environ={})
        return str(check.livez_url(config))

    assert url() == "http://127.0.0.1:5000/livez"
    assert url(**{"http.addr": ":5002"}) == "http://127.0.0.1:5002/livez"
    assert url(**{"http.addr": "127.0.0.7:5003"}) == "http://127.0.0.7:5003/livez"
    assert url(**{"http.addr": "[::]:5004"}) == "http://[::1]:5004/livez"
    tls = {"http.tls.certificate": str(tmp_path / "c.pem"), "http.tls.key": str(tmp_path / "k")}
    assert url(**tls) == "https://127.0.0.1:5000/livez"
    # the debug listener when there is one: plain HTTP, never behind client certificates
    assert url(**tls, **{"http.debug.addr": "0.0.0.0:5001"}) == "http://127.0.0.1:5001/livez"
    assert check.option(["--config", "a.yml", "--listen=1.2.3.4:5"], "--config") == "a.yml"
    assert check.option(["--config", "a.yml", "--listen=1.2.3.4:5"], "--listen") == "1.2.3.4:5"
    assert check.option(["--config"], "--config") is None


# --- a Docker engine of the test's own ----------------------------------------------------

def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it starts a Docker engine of its own"
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"),
                          ("debootstrap", "debootstrap"), ("skopeo", "skopeo")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs {package})"
    return None


MISSING = _missing()
engine_test = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def run_bounded(argv: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a process group of its own; past `timeout`, the whole group is
    killed (debootstrap's dpkg and wget are its children), by the group's id."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{argv[0]} took more than {timeout}s:\n{out[-4000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def mounts_under(root: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return points


class Docker:
    """dockerd on a private socket, with its data root and exec root under `root`, no
    iptables rules and no bridge (containers use the host's network), and none of the
    host's daemon.json; the client talks to it through DOCKER_HOST. Stopped by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        # the classic builder: in Docker 20.10's client and in later ones (which without
        # the buildx plugin refuse to build unless told so), and it needs no plugin
        self.env.update(DOCKER_HOST=f"unix://{root}/docker.sock", DOCKER_BUILDKIT="0",
                        DOCKER_CONFIG=str(root / "client"), DOCKER_CLI_HINTS="false")

    def start(self) -> None:
        (self.root / "daemon.json").write_text("{}\n")
        argv = ["dockerd", "--config-file", str(self.root / "daemon.json"),
                "--host", self.env["DOCKER_HOST"], "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "pid"),
                "--iptables=false", "--ip6tables=false", "--bridge=none"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while self.run("version", "--format", "{{.Server.Version}}", check=False,
                       timeout=15).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start ({self.proc.poll()}):\n"
                                   f"{self.log.read_text()[-4000:]}")
            time.sleep(0.2)

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            stdin: Any = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], env=self.env, stdin=stdin,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert result.returncode == 0, (
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        found = json.loads(self.run("inspect", "--type", kind, name).stdout)
        return dict(found[0])

    def stop(self) -> None:
        """SIGTERM to dockerd and a wait (it stops its containerd), SIGKILL to whatever of
        its processes outlives it (its children, and shims of its containerd), then its
        mounts undone and its root removed — unless something is still mounted there."""
        leftovers: list[psutil.Process] = []
        if self.proc is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftovers = psutil.Process(self.proc.pid).children(recursive=True)
            for process in psutil.process_iter(["cmdline"]):  # a shim names our socket
                if process.pid != self.proc.pid and any(
                        str(self.root) in arg for arg in process.info["cmdline"] or ()):
                    leftovers.append(process)
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        for process in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.is_running():  # (the same process: psutil checks its start time)
                    process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True, timeout=30, check=False)
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30,
                           check=False)
        still = mounts_under(self.root)
        if still:  # never remove through a mount point
            print(f"test_container: left {self.root}: still mounted {still}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    # (under /tmp, short: unix socket paths have a length limit)
    engine = Docker(Path(tempfile.mkdtemp(prefix="berth-docker-")))
    FIGURES.clear()
    started = STARTED[0] = time.monotonic()
    try:
        engine.start()
        FIGURES["dockerd start"] = f"{time.monotonic() - started:.1f} s"
        FIGURES["engine"] = engine.run("version", "--format",
                                       "client {{.Client.Version}}, daemon "
                                       "{{.Server.Version}}").stdout.strip()
        yield engine
    finally:
        engine.stop()


def debian_mirror() -> str:
    """The machine's Debian mirror for SUITE: its deb822 sources, else a sources.list."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, list[str]] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ", "\t")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                    and fields.get("uris") and fields.get("enabled", ["yes"]) != ["no"]):
                return fields["uris"][0]
    for path in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else ():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def base_image(docker: Docker) -> str:
    """A python3 base image made here: debootstrap's minbase of SUITE, trimmed as slim
    images are (no package lists or caches, docs, man pages, locales), imported."""
    rootfs = docker.root / "rootfs"
    mirror = debian_mirror()
    started = time.monotonic()
    done = run_bounded(["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                        SUITE, str(rootfs), mirror], timeout=480)
    assert done.returncode == 0, f"debootstrap from {mirror} failed:\n{done.stdout[-4000:]}"
    FIGURES["debootstrap"] = f"{time.monotonic() - started:.1f} s ({SUITE} from {mirror})"
    assert not mounts_under(rootfs), "debootstrap left mounts behind"
    for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/locale"):
        for child in (rootfs / junk).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        docker.run("import", "-", BASE_TAG, stdin=tar.stdout, timeout=300)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait(60)
    assert tar.returncode == 0
    shutil.rmtree(rootfs)
    size = docker.inspect("image", BASE_TAG)["Size"]
    FIGURES["base image size"] = f"{size / 1e6:.1f} MB"
    return BASE_TAG


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _canonical(re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0])


def download_wheelhouse(dest: Path) -> None:
    """Wheels of Berth's dependencies and build requirements, for the image's python
    whatever the host's (cp311 and abi3 on manylinux up to glibc 2.36, this machine's
    architecture), at the versions this environment has installed."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = pyproject["build-system"]["requires"]
    wanted = [*pyproject["project"]["dependencies"], *build]
    unpinned = {_requirement_name(r) for r in build} | {"pip", "berth"}
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name = _canonical(dist.metadata["Name"])
        if name not in unpinned:
            pins.setdefault(name, f"{name}=={dist.version}")
    constraints = dest.parent / "constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in sorted(pins.values())))
    platforms = [f"--platform=manylinux_2_{minor}_{platform.machine()}"
                 for minor in range(GLIBC_MINOR, 4, -1)]
    done = run_bounded([sys.executable, "-m", "pip", "download", "--quiet",
                        "--disable-pip-version-check", "--only-binary=:all:", *platforms,
                        f"--python-version={PYTHON}", "--implementation=cp",
                        f"--abi=cp{PYTHON.replace('.', '')}", f"--dest={dest}",
                        f"--constraint={constraints}", *wanted], timeout=300)
    assert done.returncode == 0, f"pip download failed:\n{done.stdout[-4000:]}"


def copy_sources(dest: Path) -> None:
    """This checkout as a developer would build it (tracked files, and untracked ones git
    does not ignore); the .dockerignore then picks what reaches the daemon."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, timeout=60,
                            check=False)
    if listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
    else:  # not a git checkout
        skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if not skip & set(p.relative_to(ROOT).parts)]
    for name in names:
        source = ROOT / name
        if source.is_file() and not source.is_symlink():  # (not a worktree's .venv link)
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def revision() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@pytest.fixture(scope="module")
def image(docker: Docker, base_image: str) -> str:
    context = docker.root / "context"
    copy_sources(context)
    started = time.monotonic()
    download_wheelhouse(context / "wheels")
    FIGURES["wheelhouse"] = (f"{time.monotonic() - started:.1f} s, "
                             f"{len(list((context / 'wheels').glob('*.whl')))} wheels")
    started = time.monotonic()
    built = docker.run("build", "--network", "none", "--file", str(context / DOCKERFILE
                                                                    .relative_to(ROOT)),
                       "--build-arg", f"BASE={base_image}", "--build-arg",
                       f"REVISION={revision()}", "--tag", IMAGE_TAG, str(context), timeout=900)
    FIGURES["build"] = f"{time.monotonic() - started:.1f} s"
    sent = re.search(r"Sending build context to Docker daemon\s+(\S+)", built.stdout)
    if sent:
        FIGURES["build context"] = sent[1]
    FIGURES["image size"] = f"{docker.inspect('image', IMAGE_TAG)['Size'] / 1e6:.1f} MB"
    shutil.rmtree(context)
    return IMAGE_TAG


def report(request: pytest.FixtureRequest, **more: str) -> None:
    """The figures, in the test's report section and on stderr past pytest's capture."""
    text = "\n".join(f"{key}: {value}" for key, value in {**FIGURES, **more}.items())
    request.node.add_report_section("call", "container figures", text)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(f"\ncontainer figures:\n{text}", file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        print(f"\ncontainer figures:\n{text}", file=sys.stderr)


# --- the image -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.interop
@engine_test
def test_image_builds_offline_slim_and_non_root(request: pytest.FixtureRequest,
                                                docker: Docker, image: str) -> None:
    info = docker.inspect("image", image)
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["ExposedPorts"] == {"5000/tcp": {}}
    assert config["Volumes"] == {"/var/lib/registry": {}}
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/opt/berth/bin/berth"]
    assert config["Cmd"] == ["serve", "--config", CONFIG_PATH]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/berth/bin/python",
                                             "/opt/berth/healthcheck.py"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == pyproject["version"]
    assert labels["org.opencontainers.image.licenses"] == pyproject["license"]
    assert labels["org.opencontainers.image.revision"] == revision()
    assert labels["org.opencontainers.image.base.name"] == BASE_TAG
    assert labels["org.opencontainers.image.title"] == "Berth"

    def inside(*argv: str) -> str:
        return docker.run("run", "--rm", "--network", "none", "--entrypoint", argv[0], image,
                          *argv[1:]).stdout

    assert "serve" in inside("/opt/berth/bin/berth", "--help")
    # the shipped config is the one at /etc/berth, readable by the image's user
    assert inside("cat", CONFIG_PATH) == (CONTAINER / "config.yml").read_text()
    # what the builder stage had and the image does not: the source, pip, setuptools
    listing = inside("/opt/berth/bin/python", "-c",
                     "import importlib.util as u, os; print(os.path.exists('/src'), "
                     "[m for m in ('pip', 'setuptools') if u.find_spec(m)])")
    assert listing.strip() == "False []"
    report(request)


# --- the container -------------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def container(docker: Docker, image: str) -> Iterator[Container]:
    """The image run as Kubernetes runs it (read-only root with a /tmp, no capabilities,
    no privilege escalation), on the host's network: the listen address from the
    environment (so the health check must find it), the health checked every second."""
    running = Container(f"berth-test-{os.getpid()}", free_port())
    docker.run("run", "--detach", "--name", running.name, "--network", "host",
               "--env", f"BERTH_HTTP__ADDR=127.0.0.1:{running.port}",
               "--env", "BERTH_HTTP__WORKERS=2",  # a supervisor and two workers, any CPUs
               "--health-interval=1s", "--health-retries=2",
               "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", image)
    try:
        yield running
    finally:
        docker.run("rm", "--force", "--volumes", running.name, check=False)


def wait_health(docker: Docker, name: str, status: str, timeout: float) -> float:
    """Seconds until Docker reports the container's health as `status`."""
    started = time.monotonic()
    while True:
        state = docker.inspect("container", name)["State"]
        if state["Health"]["Status"] == status:
            return time.monotonic() - started
        if not state["Running"] or time.monotonic() - started > timeout:
            logs = docker.run("logs", name, check=False)
            raise AssertionError(f"not {status} after {time.monotonic() - started:.0f}s: "
                                 f"{json.dumps(state, indent=1)}\n{logs.stdout}{logs.stderr}")
        time.sleep(0.25)


@pytest.mark.slow
@pytest.mark.interop
@engine_test
def test_container_serves_round_trips_and_stops_on_sigterm(
        request: pytest.FixtureRequest, tmp_path: Path, docker: Docker,
        container: Container) -> None:
    FIGURES["healthy after"] = f"{wait_health(docker, container.name, 'healthy', 120):.1f} s"
    probe = requests.get(f"{container.url}/livez", timeout=10)
    assert (probe.status_code, probe.text) == (200, "ok\n")

    # Every process of the container runs as the image's user, not root
    state = docker.inspect("container", container.name)["State"]
    server = psutil.Process(state["Pid"])
    processes = [server, *server.children(recursive=True)]
    assert len(processes) == 3  # the supervisor and its two workers
    for process in processes:
        assert (process.uids().real, process.uids().effective, process.gids().real) == \
            (UID, UID, UID), process.cmdline()
    assert docker.run("exec", container.name, "id", "-u").stdout.strip() == str(UID)

    # skopeo copies an image in and out again: the same manifest and blobs, by digest
    layout, pushed = layout_image(tmp_path / "src", "berth-container-image")
    skopeo = Skopeo(tmp_path / "skopeo")
    remote = f"docker://127.0.0.1:{container.port}/berth/container:v1"
    skopeo.copy(f"oci:{layout.root}:v1", remote)
    skopeo.copy(remote, f"oci:{tmp_path / 'dst'}:v1")
    back = Layout(tmp_path / "dst")
    assert back.resolve("v1")["digest"] == pushed.digest
    assert back.blob(pushed.digest) == pushed.manifest
    assert {d: back.blobs()[d] for d in pushed.blobs} == pushed.blobs
    served = requests.get(f"{container.url}/v2/berth/container/manifests/v1", timeout=10,
                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert served.headers["Docker-Content-Digest"] == pushed.digest

    # The data went to the volume, owned by the image's user
    (volume,) = [m for m in docker.inspect("container", container.name)["Mounts"]
                 if m["Destination"] == "/var/lib/registry"]
    assert volume["Type"] == "volume" and volume["RW"]
    stored = [Path(volume["Source"]), *Path(volume["Source"]).rglob("*")]
    assert any(p.name == pushed.layer_digests[0].split(":")[1] for p in stored)
    assert {p.lstat().st_uid for p in stored} == {UID}

    # A server that does not answer is unhealthy (its workers stopped), then healthy again
    workers = server.children()
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    try:
        FIGURES["unhealthy after SIGSTOP"] = \
            f"{wait_health(docker, container.name, 'unhealthy', 90):.1f} s"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
    wait_health(docker, container.name, "healthy", 60)

    # SIGTERM (docker stop): drained, stopped, exit status 0
    started = time.monotonic()
    docker.run("stop", "--time", "60", container.name, timeout=90)
    FIGURES["docker stop"] = f"{time.monotonic() - started:.1f} s"
    state = docker.inspect("container", container.name)["State"]
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 0, False)
    logs = docker.run("logs", container.name)
    output = logs.stdout + logs.stderr
    assert "Traceback" not in output
    assert output.count("registry: stopped") == len(workers), output[-4000:]
    report(request, **{"engine start to here": f"{time.monotonic() - STARTED[0]:.1f} s"})
