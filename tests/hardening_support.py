"""Shared pieces of the hardening suite (tests/test_hardening_*.py): a throwaway PKI made with
the openssl CLI, mosquitto with a TLS listener (optionally client certificates and a
per-gateway ACL), small fault-injection plugin drivers, a control-socket client, and readers
of a process's memory and descriptors. Real peers only; nothing here mocks the code under test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from bench.soak_peers import control  # re-exported: the tests reach the daemon through it
from firmware_stubs.broker import free_port, mosquitto_path
from tests.harness import REPO, Daemon, Recording, Site, toml_url, wait_until

# -- a process, seen from /proc -----------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads for pid {pid}")


__all__ = ["control"]  # re-exported for the tests; the helpers below are imported by name

# -- the control socket -------------------------------------------------------------------------


def control_env(site: Site) -> dict[str, str]:
    """Pin the daemon's control socket inside the test's own directory."""
    return {"GATEWAYD_CONTROL_SOCKET": str(site.dir / "control.sock")}


# -- plugins: fault injection from inside the daemon ---------------------------------------------

PLUGIN = '''
import asyncio, json, os, time
from gatewayd.driver import Driver
from gatewayd.model import Event
from gatewayd.schema import Bool, Float, Int, Str


class Recorder(Driver):
    """Door locks and chargers that do nothing but append every action they are asked to carry
    out to `log`: proof of what actuation happened (and what did not). A door answers
    `status` with the state its last action left it in."""
    name = "recorder"
    bus_schema = {"log": Str()}
    device_schemas = {
        "door_lock": {"note": Str(default=""), "escape_route": Bool(default=False)},
        "charger": {"note": Str(default="")},
    }
    actions = {
        "door_lock": {"unlock": {"seconds": Int(1, 30, default=5)}, "lock": {}, "status": {},
                      "hold_open": {}},
        "charger": {"all_off": {}, "port_off": {"port": Int(1, 16)}, "port_on": {"port": Int(1, 16)}},
    }
    STATES = {"unlock": "unlocked", "lock": "locked", "hold_open": "held_open"}

    async def run(self):
        self.state = {}
        await asyncio.Event().wait()

    async def execute(self, action):
        with open(self.bus.settings["log"], "a") as f:
            f.write(json.dumps([action.device, action.name, dict(action.args), action.origin]) + "\\n")
        if action.name in self.STATES:
            self.state[action.device] = self.STATES[action.name]
        return {"done": action.name, "lock": self.state.get(action.device, "locked")}


class Pulse(Driver):
    """One smoke detector that reports a smoke alarm `delay` seconds after start: lets a test
    see the rules (and fire mode) at work with or without a broker."""
    name = "pulse"
    bus_schema = {"delay": Float(0, 3600, default=0.5)}
    device_schemas = {"smoke": {"room": Str(default="")}}

    async def run(self):
        await asyncio.sleep(self.bus.settings["delay"])
        for dev in self.devices:
            self.ctx.emit(Event(dev, "smoke.alarm", "critical", {"density": 150}))
        await asyncio.Event().wait()

    async def execute(self, action):  # the detectors' sound and hush: nothing to sound here
        return {"done": action.name}


class Burst(Driver):
    """`events` events, `batch` at a time every `interval` s, severities rotating; every id is
    appended to `log` (flushed, not fsynced: a SIGKILL keeps the page cache) as it is emitted."""
    name = "burst"
    bus_schema = {"events": Int(0, 10**6), "batch": Int(1, 10**4, default=20),
                  "interval": Float(0, 10, default=0.01), "log": Str(), "pad": Int(0, 10**5, default=0),
                  "delay": Float(0, 3600, default=0)}
    KINDS = [("critical", "smoke.alarm"), ("warning", "smoke.low_battery"), ("info", "smoke.heartbeat")]

    async def run(self):
        s = self.bus.settings
        pad = "x" * s["pad"]
        boot = f"{os.getpid()}"
        await asyncio.sleep(s["delay"])
        with open(s["log"], "a") as log:
            for i in range(s["events"]):
                sev, typ = self.KINDS[i % 3]
                ev = Event(f"dev-{i % 3}", typ, sev, {"n": i, "boot": boot, "pad": pad})
                self.ctx.emit(ev)
                log.write(ev.id + "\\n")
                if (i + 1) % s["batch"] == 0:
                    log.flush()
                    await asyncio.sleep(s["interval"])
            log.flush()
        await asyncio.Event().wait()
'''

PLUGIN_DRIVERS = {"recorder": "Recorder", "pulse": "Pulse", "burst": "Burst"}


# -- a throwaway PKI ----------------------------------------------------------------------------

CA_CNF = """[ca]
default_ca = CA_default
[CA_default]
dir = .
database = db/index.txt
serial = db/serial
new_certs_dir = db
default_md = sha256
policy = policy_any
copy_extensions = none
unique_subject = no
[policy_any]
commonName = supplied
[server]
subjectAltName = IP:127.0.0.1
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
"""


def need_openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed (scripts/debian-deps.sh installs it)")
    return path


class Pki:
    """A CA in ``dir`` (EC P-256, fast) that issues server and client certificates, valid now
    or with chosen dates (an expired one)."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.openssl = need_openssl()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "db").mkdir(exist_ok=True)
        (self.dir / "db" / "index.txt").touch()
        (self.dir / "db" / "serial").write_text(f"{int.from_bytes(os.urandom(4), 'big'):08X}\n")
        (self.dir / "ca.cnf").write_text(CA_CNF)
        self.ca = self.dir / f"{name}.pem"
        self._ca_key = self.dir / f"{name}.key"
        self._run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(self._ca_key), "-out", str(self.ca), "-days", "30",
            "-subj", f"/CN=test {name}",
        )  # fmt: skip

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [self.openssl, *args], cwd=self.dir, capture_output=True, timeout=30, check=False
        )
        if done.returncode:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode()[-800:]}")

    def issue(
        self, cn: str, kind: str = "server", *, start: str | None = None, end: str | None = None
    ) -> tuple[Path, Path]:
        """(certificate, key) for ``cn``; ``start``/``end`` as YYYYMMDDHHMMSSZ for chosen dates."""
        stem = f"{kind}-{cn}-{os.urandom(3).hex()}"
        key, csr, cert = (self.dir / f"{stem}.{ext}" for ext in ("key", "csr", "pem"))
        self._run(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}",
        )  # fmt: skip
        dates = ["-startdate", start, "-enddate", end] if start and end else ["-days", "30"]
        self._run(
            "ca", "-batch", "-config", "ca.cnf", "-cert", str(self.ca), "-keyfile",
            str(self._ca_key), "-in", str(csr), "-out", str(cert), "-extensions", kind,
            "-notext", *dates,
        )  # fmt: skip
        key.chmod(0o600)
        return cert, key


class TlsBroker:
    """mosquitto with one TLS listener on 127.0.0.1; ``restart`` may swap its certificate."""

    def __init__(
        self,
        workdir: Path,
        ca: Path,
        cert: Path,
        key: Path,
        *,
        client_certs: bool = False,
        acl: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.ca, self.cert, self.key = ca, cert, key
        self.client_certs = client_certs
        self.acl = acl
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto-tls.log"

    def _write_conf(self) -> Path:
        lines = [
            "user root",  # read the test's key files without dropping privileges
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.ca}",
            f"certfile {self.cert}",
            f"keyfile {self.key}",
        ]
        if self.client_certs:
            lines += ["require_certificate true", "use_identity_as_username true"]
            lines += ["allow_anonymous false"]
        else:
            lines += ["allow_anonymous true"]
        if self.acl is not None:
            acl = self.workdir / "acl"
            acl.write_text(self.acl)
            lines.append(f"acl_file {acl}")
        conf = self.workdir / "mosquitto-tls.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 5.0) -> None:
        conf = self._write_conf()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [mosquitto_path(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto (TLS) did not start: {self.log.read_text()[-800:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    def restart(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.stop()
        self.cert, self.key = cert or self.cert, key or self.key
        self.start()

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class TlsProbe(Recording):
    """A TLS MQTT client (thread of its own) that records what it receives and whether the
    broker accepted it."""

    def __init__(
        self,
        port: int,
        ca: Path,
        cert: Path | None = None,
        key: Path | None = None,
        subscribe: str | None = None,
        client_id: str = "",
    ) -> None:
        super().__init__()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: list[Any] = []
        self.granted: list[int] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        ctx = ssl.create_default_context(cafile=str(ca))
        if cert is not None and key is not None:
            ctx.load_cert_chain(str(cert), str(key))
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.subscribe_to = subscribe
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused.append(reason)
            return
        self.connected.set()
        if self.subscribe_to:
            client.subscribe(self.subscribe_to, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.granted = [r.value for r in reasons]
        self.subscribed.set()

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)

    def close(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()


# -- a daemon with debug logging (for the secrets scan) -------------------------------------------


class DebugDaemon(Daemon):
    """The real daemon as ``gatewayd --debug run``: the chattiest log there is."""

    def start(self, wait_ready: bool = True) -> None:
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gatewayd", "--debug", "run", "-c", str(self.site.config),
                 "--tick", str(self.tick)],
                stdout=logf, stderr=logf, env=self.env, cwd=REPO,
            )  # fmt: skip
        if wait_ready:
            wait_until(
                lambda: "listening for commands" in self.output(), 10.0, "the daemon to be ready"
            )

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


def eventually(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(pred, timeout, what)


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    """A tiny tmpfs mounted at ``where`` (root only; the test is skipped where mounting is not
    permitted, e.g. an unprivileged container)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def remount_ro(where: Path) -> None:
    done = subprocess.run(
        ["mount", "-o", "remount,ro", str(where)], capture_output=True, check=False
    )
    if done.returncode:
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")


def write_site(
    tmp: Path,
    url: str | list[str],
    body: str = "",
    *,
    gateway_id: str = "gw-test",
    mqtt_extra: str = "",
    data_dir: Path | None = None,
) -> Site:
    """Like ``tests.harness.make_site``, with room for more ``[mqtt]`` keys (TLS files, a
    username and password file) and a chosen data directory."""
    key = os.urandom(32)
    key_file = tmp / "command.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "{gateway_id}"\nsite = "柳墅村 17号"\n'
        f'data_dir = "{data_dir or tmp / "data"}"\n\n'
        f"[mqtt]\nurl = {toml_url(url)}\nreconnect_max_seconds = 1.0\n{mqtt_extra}\n"
        f'[security]\ncommand_key_file = "{key_file}"\ncommands_per_minute = 60\n\n{body}'
    )
    return Site(tmp, gateway_id, key, cfg)


def plugin_env(tmp: Path, site: Site) -> dict[str, str]:
    """The environment for a daemon that loads PLUGIN and keeps its control socket in ``tmp``."""
    from tests.harness import install_plugin

    env = install_plugin(tmp / "plugins", "hardening_plugin", PLUGIN, PLUGIN_DRIVERS)
    return {**env, **control_env(site)}
