#!/usr/bin/env python3
"""Throw-away single-node Ceph cluster with a RADOS Gateway (S3) on loopback.

    python3 deploy/rgw/rgw.py start  DIR [--with-mgr] [--timeout S]
    python3 deploy/rgw/rgw.py status DIR
    python3 deploy/rgw/rgw.py stop   DIR [--keep]

`start` builds a cluster whose every file (ceph.conf, mon store, the OSD's
bluestore on a sparse file, logs, sockets, pid files) lives under DIR, runs
ceph-mon, ceph-osd (and ceph-mgr with --with-mgr) and radosgw as plain
background processes (no systemd), creates an S3 user, checks that radosgw
answers a SigV4-signed request (and refuses a wrongly signed one), then prints
one JSON line and exits 0, leaving the daemons running:

    {"endpoint": "http://127.0.0.1:PORT", "access_key": ..., "secret_key": ...,
     "region": ..., "dir": DIR}

`stop` kills exactly the PIDs recorded in DIR/state (after checking each one is
still the daemon started for DIR), waits for them, then deletes DIR.
`status` prints one JSON line describing DIR's daemons; exit 0 only when all run.

Standard library only, so it runs with the system python3 as well as a venv.
Needs Debian's ceph-mon ceph-osd radosgw ceph-common (ceph-mgr for --with-mgr).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

REGION = "us-east-1"  # any region works for SigV4 against RGW; see README
OSD_BLOCK_SIZE = 10 * 1024**3  # sparse: real usage is what gets written
MON_ID = "a"
MGR_ID = "x"
OSD_ID = "0"
RGW_NAME = "client.rgw.0"
S3_UID = "berth"
# Each needed program, and the Debian package that ships it.
PROGRAMS = {
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "monmaptool": "ceph-base",
    "ceph-authtool": "ceph-common",
    "ceph": "ceph-common",
    "radosgw-admin": "ceph-common",
}
MGR_PROGRAM = {"ceph-mgr": "ceph-mgr"}
# Short name -> Ceph entity name (which names the log file).
DAEMON_NAMES = {
    "mon": f"mon.{MON_ID}",
    "mgr": f"mgr.{MGR_ID}",
    "osd": f"osd.{OSD_ID}",
    "rgw": RGW_NAME,
}
# Reverse order of start, so clients go before the servers they talk to.
STOP_ORDER = ["rgw", "mgr", "osd", "mon"]


# Daemons started by this process (start only), by short name.
CHILDREN: dict[str, subprocess.Popen[bytes]] = {}


class Fail(Exception):
    """An error reported as one line (plus optional detail) and exit status 1."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# ---------------------------------------------------------------- helpers ----


def log(msg: str) -> None:
    if os.environ.get("RGW_VERBOSE"):
        print(f"[rgw.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return f"--- last lines of {path} ---\n" + "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True while pid has a live thread: a zombie whose other threads have all
    exited counts as dead (init may be slow to reap orphans, or never)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        if state not in (b"Z", b"X"):
            return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (OSError, ValueError):
        return False


def pid_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


class Cluster:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.conf = os.path.join(self.root, "ceph.conf")
        self.state = os.path.join(self.root, "state")
        self.logs = os.path.join(self.root, "log")
        self.run = os.path.join(self.root, "run")
        self.info_file = os.path.join(self.state, "cluster.json")

    # -- state ---------------------------------------------------------------
    def pid_file(self, name: str) -> str:
        return os.path.join(self.state, f"{name}.pid")

    def pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in STOP_ORDER:
            with contextlib.suppress(OSError, ValueError), open(self.pid_file(name)) as f:
                out[name] = int(f.read().strip())
        return out

    def ours(self, pid: int) -> bool:
        """The pid is a daemon started with this cluster's ceph.conf."""
        return pid_alive(pid) and self.conf in pid_cmdline(pid)

    def log_of(self, name: str) -> str:
        return os.path.join(self.logs, f"{DAEMON_NAMES.get(name, name)}.log")

    # -- commands ------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CEPH_CONF"] = self.conf
        env.pop("CEPH_ARGS", None)
        env.pop("CEPH_KEYRING", None)
        return env

    def cmd(self, args: list[str], timeout: float = 60, check: bool = True) -> str:
        log("$ " + " ".join(args))
        try:
            p = subprocess.run(
                args,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise Fail(f"{args[0]} timed out after {timeout:.0f}s: {' '.join(args)}") from e
        if check and p.returncode != 0:
            raise Fail(
                f"{args[0]} failed (exit {p.returncode}): {' '.join(args)}",
                (p.stdout + p.stderr).strip()[-4000:],
            )
        return p.stdout

    def ceph(self, *args: str, timeout: float = 30) -> str:
        return self.cmd(
            ["ceph", "-c", self.conf, "--connect-timeout", str(int(timeout)), *args],
            timeout=timeout + 10,
        )

    def spawn(self, name: str, args: list[str]) -> int:
        out = open(os.path.join(self.logs, f"{name}.stdout"), "ab")
        log("& " + " ".join(args))
        p = subprocess.Popen(
            args,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with our process group / terminal
            close_fds=True,
        )
        out.close()
        with open(self.pid_file(name), "w") as f:
            f.write(f"{p.pid}\n")
        CHILDREN[name] = p  # to poll (reap) it if start fails
        return p.pid

    def check_alive(self, name: str) -> None:
        pid = self.pids().get(name)
        p = CHILDREN.get(name)
        rc = p.poll() if p is not None else None
        if pid is None or rc is not None or not pid_alive(pid):
            detail = tail(self.log_of(name))
            so = os.path.join(self.logs, f"{name}.stdout")
            if os.path.exists(so) and os.path.getsize(so):
                detail += "\n" + tail(so, 15)
            raise Fail(f"ceph daemon '{name}' died during start (exit {rc})", detail)

    def wait(self, what: str, fn: Callable[[], T], timeout: float, daemons: list[str]) -> T:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            for d in daemons:
                self.check_alive(d)
            try:
                r = fn()
                if r:
                    return r
            except Fail as e:
                last = str(e) + (": " + e.detail[-500:] if e.detail else "")
            except OSError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                detail = "\n".join(tail(self.log_of(d), 25) for d in daemons)
                raise Fail(f"timed out after {timeout:.0f}s waiting for {what} ({last})", detail)
            time.sleep(0.3)

    # -- config --------------------------------------------------------------
    def write_conf(self, fsid: str, mon_v2: int, mon_v1: int, rgw_port: int) -> None:
        asok = os.path.join(self.run, "$name.asok")
        # A unix socket path has at most 107 bytes; deep pytest dirs may exceed it.
        if len(asok.replace("$name", RGW_NAME)) > 100:
            asok = ""
        r = self.root
        conf = f"""# generated by deploy/rgw/rgw.py -- throw-away test cluster
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]
mon initial members = {MON_ID}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
keyring = {r}/keyring
run dir = {self.run}
admin socket = {asok}
pid file = {self.run}/$name.pid
log file = {self.logs}/$name.log
log to stderr = false
err to stderr = false
log to syslog = false
crash dir = {r}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
# no mgr is run: don't raise MGR_DOWN for a year
mon mgr mkfs grace = 31536000
# the mon batches map changes for 1 s by default; each pool radosgw creates waits for one
paxos propose interval = 0.1

[mon]
mon data = {r}/mon/$cluster-$id
mon cluster log file = {self.logs}/cluster.log

[mgr]
mgr data = {r}/mgr/$cluster-$id

[osd]
osd data = {r}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {OSD_BLOCK_SIZE}
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 1073741824
osd op num shards = 2
osd op num threads per shard = 1
osd crush update on start = true
osd numa auto affinity = false

[client]
ms mon client mode = crc

[{RGW_NAME}]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {r}/rgw
rgw thread pool size = 32
rgw enable usage log = false
# deleted/overwritten data is garbage-collected after 2 h by default; the OSD is 10 GiB
rgw gc obj min wait = 60
rgw gc processor period = 60
"""
        with open(self.conf, "w") as f:
            f.write(conf)


# -------------------------------------------------------------- SigV4 probe --


def sigv4_list_buckets(endpoint: str, ak: str, sk: str, region: str) -> tuple[int, str]:
    """GET / (ListBuckets) signed with SigV4; returns (status, body)."""
    u = urllib.parse.urlsplit(endpoint)
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["GET", "/", "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(endpoint + "/", method="GET")
    req.add_header("x-amz-content-sha256", payload)
    req.add_header("x-amz-date", amz_date)
    req.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


# ------------------------------------------------------------------ actions --


def check_programs(with_mgr: bool) -> None:
    progs = dict(PROGRAMS, **(MGR_PROGRAM if with_mgr else {}))
    missing = sorted({pkg for prog, pkg in progs.items() if shutil.which(prog) is None})
    if missing:
        raise Fail(
            "missing Ceph packages: " + " ".join(missing) + " (apt-get install -y "
            "--no-install-recommends ceph-mon ceph-mgr ceph-osd radosgw ceph-common)"
        )


def start(root: str, with_mgr: bool, timeout: float) -> int:
    t0 = time.monotonic()
    check_programs(with_mgr)
    c = Cluster(root)
    if os.path.exists(c.root):
        if not os.path.isdir(c.root):
            raise Fail(f"{c.root} exists and is not a directory")
        if os.listdir(c.root):
            raise Fail(
                f"{c.root} is not empty (a cluster may already live there: "
                f"'rgw.py status {root}' / 'rgw.py stop {root}'); refusing to start"
            )
        created = False
    else:
        created = True
    for d in (
        c.root,
        c.state,
        c.logs,
        c.run,
        f"{c.root}/mon",
        f"{c.root}/osd",
        f"{c.root}/mgr",
        f"{c.root}/rgw",
        f"{c.root}/crash",
    ):
        os.makedirs(d, exist_ok=True)
    # An OSD does O_DIRECT I/O on its block file; tmpfs before Linux 6.6 refuses it.
    probe = os.path.join(c.state, ".odirect")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_RDWR | getattr(os, "O_DIRECT", 0))
        os.close(fd)
    except OSError as e:
        raise Fail(f"{c.root}: filesystem refuses O_DIRECT ({e}); use a disk-backed dir") from e
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)

    fsid = str(uuid.uuid4())
    osd_uuid = str(uuid.uuid4())
    mon_v2, mon_v1, rgw_port = free_ports(3)
    access_key = "BERTH" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    endpoint = f"http://127.0.0.1:{rgw_port}"
    info = {
        "endpoint": endpoint,
        "access_key": access_key,
        "secret_key": secret_key,
        "region": REGION,
        "dir": c.root,
        "fsid": fsid,
        "mon": f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]",
        "created_dir": created,
        "with_mgr": with_mgr,
        "phase": "starting",
    }

    def save() -> None:
        with open(c.info_file + ".tmp", "w") as f:
            json.dump(info, f)
        os.replace(c.info_file + ".tmp", c.info_file)

    save()
    c.write_conf(fsid, mon_v2, mon_v1, rgw_port)
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - t0, 2)
        log(f"{step} at {timings[step]}s")

    mkfs: subprocess.Popen[bytes] | None = None
    # A SIGTERM (e.g. a test runner's timeout) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        # A keyring is not needed with auth none, but its absence makes tools
        # look in /etc/ceph and warn; give them one of our own.
        c.cmd(
            [
                "ceph-authtool",
                "--create-keyring",
                f"{c.root}/keyring",
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ]
        )
        c.cmd(
            [
                "ceph-authtool",
                f"{c.root}/keyring",
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ]
        )
        monmap = os.path.join(c.state, "monmap")
        c.cmd(
            [
                "monmaptool",
                "--create",
                "--fsid",
                fsid,
                "--addv",
                MON_ID,
                f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]",
                monmap,
            ]
        )
        c.cmd(
            [
                "ceph-mon",
                "-c",
                c.conf,
                "--mkfs",
                "-i",
                MON_ID,
                "--monmap",
                monmap,
                "--keyring",
                f"{c.root}/keyring",
            ]
        )
        mark("mon_mkfs")
        c.spawn("mon", ["ceph-mon", "-c", c.conf, "-i", MON_ID, "-f"])
        osd_data = os.path.join(c.root, "osd", f"ceph-{OSD_ID}")
        os.makedirs(osd_data)
        # bluestore mkfs needs no monitor; run it while the mon comes up.
        mkfs = subprocess.Popen(
            [
                "ceph-osd",
                "-c",
                c.conf,
                "-i",
                OSD_ID,
                "--mkfs",
                "--osd-uuid",
                osd_uuid,
                "--no-mon-config",
            ],
            env=c.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        osd_id = c.wait(
            "the monitor to create osd.0",
            lambda: c.ceph("osd", "new", osd_uuid, OSD_ID, timeout=10).strip(),
            timeout,
            ["mon"],
        )
        if osd_id != OSD_ID:
            raise Fail(f"monitor allocated osd.{osd_id}, expected osd.{OSD_ID}")
        mark("mon_up")
        if with_mgr:
            c.spawn("mgr", ["ceph-mgr", "-c", c.conf, "-i", MGR_ID, "-f"])
        try:
            out, _ = mkfs.communicate(timeout=max(5.0, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired as e:
            mkfs.kill()
            raise Fail("ceph-osd --mkfs timed out", tail(c.log_of("osd"))) from e
        if mkfs.returncode != 0:
            raise Fail(
                f"ceph-osd --mkfs failed (exit {mkfs.returncode})",
                out.decode("utf-8", "replace")[-3000:] + "\n" + tail(c.log_of("osd")),
            )
        mark("osd_mkfs")
        c.spawn("osd", ["ceph-osd", "-c", c.conf, "-i", OSD_ID, "-f"])
        alive = ["mon", "osd"] + (["mgr"] if with_mgr else [])

        def osd_up() -> bool:
            st = json.loads(c.ceph("osd", "stat", "-f", "json", timeout=10))
            st = st.get("osdmap", st)  # older releases wrap it
            return int(st.get("num_up_osds", 0)) >= 1 and int(st.get("num_in_osds", 0)) >= 1

        c.wait("osd.0 to be up and in", osd_up, timeout - (time.monotonic() - t0), alive)
        mark("osd_up")
        # Creates the default realm/zone and its pools, then the S3 user; blocks
        # on the PGs of those pools becoming active.
        remaining = max(10.0, timeout - (time.monotonic() - t0))
        c.cmd(
            [
                "radosgw-admin",
                "-c",
                c.conf,
                "-n",
                "client.admin",
                "user",
                "create",
                "--uid",
                S3_UID,
                "--display-name",
                "Berth tests",
                "--access-key",
                access_key,
                "--secret",
                secret_key,
            ],
            timeout=remaining,
        )
        mark("user_created")
        alive.append("rgw")

        def s3_ok() -> bool:
            try:
                status, body = sigv4_list_buckets(endpoint, access_key, secret_key, REGION)
            except OSError:
                return False
            if status != 200:
                raise Fail(f"radosgw answered ListBuckets with HTTP {status}", body[:500])
            return True

        for attempt in range(3):
            c.spawn("rgw", ["radosgw", "-c", c.conf, "-n", RGW_NAME, "-f"])
            try:
                c.wait(
                    "radosgw to answer S3",
                    s3_ok,
                    max(5.0, timeout - (time.monotonic() - t0)),
                    alive,
                )
                break
            except Fail as e:
                # The port was free when picked; another process may have taken it since.
                with open(c.log_of("rgw"), errors="replace") as f:
                    lost_port = f"failed to bind address 127.0.0.1:{rgw_port}" in f.read()
                if attempt == 2 or "died" not in str(e) or not lost_port:
                    raise
                old_port, rgw_port = rgw_port, free_port()
                log(f"port {old_port} was taken; radosgw retries on {rgw_port}")
                with open(c.conf) as f:
                    text = f.read()
                with open(c.conf, "w") as f:
                    f.write(
                        text.replace(
                            f"endpoint=127.0.0.1:{old_port}", f"endpoint=127.0.0.1:{rgw_port}"
                        )
                    )
                endpoint = info["endpoint"] = f"http://127.0.0.1:{rgw_port}"
                save()
        mark("s3_ready")
        status, _ = sigv4_list_buckets(endpoint, access_key, secret_key + "x", REGION)
        if status != 403:
            raise Fail(f"radosgw accepted a request signed with a wrong secret (HTTP {status})")
    except BaseException as e:
        # Leave nothing running; keep DIR so its logs can be read ('stop' deletes it).
        if mkfs is not None and mkfs.poll() is None:
            mkfs.kill()
            mkfs.wait()
        kill_all(c)
        info["phase"] = "failed"
        save()
        if isinstance(e, Fail):
            e.detail = (
                e.detail + f"\n(logs kept in {c.logs}; 'rgw.py stop {root}' deletes the directory)"
            ).strip()
        raise
    info["phase"] = "running"
    info["start_seconds"] = timings
    save()
    print(
        json.dumps({k: info[k] for k in ("endpoint", "access_key", "secret_key", "region", "dir")}),
        flush=True,
    )
    log(f"started in {time.monotonic() - t0:.1f}s: {timings}")
    return 0


def kill_all(c: Cluster, grace: float = 10.0) -> list[str]:
    """Stop each recorded daemon that is still ours, one at a time in STOP_ORDER
    (radosgw, mgr, osd, mon: an OSD stopped together with its monitor waits for
    it): SIGTERM, wait up to `grace` s, then SIGKILL."""
    notes = []
    pids = c.pids()

    def wait_gone(pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while pid_alive(pid):
            for p in CHILDREN.values():
                p.poll()  # reap our own children (start's failure path)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    for name in STOP_ORDER:
        pid = pids.get(name)
        if pid is None:
            continue
        if not pid_alive(pid):
            notes.append(f"{name} (pid {pid}) was not running")
            continue
        if not c.ours(pid):
            notes.append(f"{name}: pid {pid} now belongs to another program; left alone")
            continue
        t = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, grace):
            notes.append(f"{name} (pid {pid}) ignored SIGTERM for {grace:.0f}s; SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not wait_gone(pid, 5):
                notes.append(f"{name} (pid {pid}) still alive after SIGKILL")
                pids.pop(name)  # keep its pid file for another try
                continue
        log(f"{name} (pid {pid}) stopped in {time.monotonic() - t:.2f}s")
    for name in pids:
        with contextlib.suppress(OSError):
            os.unlink(c.pid_file(name))
    return notes


def stop(root: str, keep: bool) -> int:
    c = Cluster(root)
    if not os.path.isdir(c.state):
        if not os.path.exists(c.root) or (os.path.isdir(c.root) and not os.listdir(c.root)):
            return 0  # nothing there: stopping twice is fine
        raise Fail(f"{c.root}: no cluster state here ({c.state} missing); nothing stopped")
    created = True
    with contextlib.suppress(OSError, ValueError), open(c.info_file) as f:
        created = bool(json.load(f).get("created_dir", True))
    notes = kill_all(c)
    for n in notes:
        print(f"rgw.py stop: {n}", file=sys.stderr)
    if any("still alive" in n for n in notes):
        raise Fail(f"some daemons of {c.root} did not die; directory kept")
    if keep:
        shutil.rmtree(c.state, ignore_errors=True)
        # the OSD's sparse block file is the only big thing; drop it anyway
        shutil.rmtree(os.path.join(c.root, "osd"), ignore_errors=True)
    elif created:
        shutil.rmtree(c.root)
    else:
        for e in os.listdir(c.root):
            p = os.path.join(c.root, e)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    return 0


def status(root: str) -> int:
    c = Cluster(root)
    try:
        with open(c.info_file) as f:
            info = json.load(f)
    except (OSError, ValueError):
        print(json.dumps({"dir": c.root, "running": False, "error": "no cluster state"}))
        return 1
    daemons = {}
    for name, pid in c.pids().items():
        daemons[name] = {"pid": pid, "running": c.ours(pid)}
    running = (
        info.get("phase") == "running"
        and bool(daemons)
        and all(d["running"] for d in daemons.values())
    )
    out = {
        k: info.get(k) for k in ("endpoint", "access_key", "secret_key", "region", "dir", "phase")
    }
    out.update(running=running, daemons=daemons)
    print(json.dumps(out))
    return 0 if running else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("start", help="create and start a cluster in DIR (empty or absent)")
    s.add_argument("dir")
    s.add_argument(
        "--with-mgr",
        action="store_true",
        help="also run a ceph-mgr (not needed by radosgw; adds ~1 CPU-second)",
    )
    s.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    p = sub.add_parser("stop", help="stop DIR's daemons by PID, then delete DIR")
    p.add_argument("dir")
    p.add_argument("--keep", action="store_true", help="keep DIR's config and logs")
    st = sub.add_parser("status", help="print DIR's daemons as JSON; exit 0 if all run")
    st.add_argument("dir")
    a = ap.parse_args(argv)
    try:
        if a.action == "start":
            return start(a.dir, a.with_mgr, a.timeout)
        if a.action == "stop":
            return stop(a.dir, a.keep)
        return status(a.dir)
    except Fail as e:
        print(f"rgw.py {a.action}: error: {e}", file=sys.stderr)
        if e.detail:
            print(e.detail, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
