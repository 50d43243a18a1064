"""Real peers for tests: a mosquitto broker on a free loopback port, a probe MQTT client that
records what the gateway publishes, and the real daemon in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from firmware_stubs.broker import Broker, free_port
from firmware_stubs.lifetime import tied_to_parent
from firmware_stubs.srb433 import ReceiverEmulator
from gatewayd.commands.signing import sign
from gatewayd.secrets import write_secret

__all__ = [
    "Broker",
    "Daemon",
    "Probe",
    "ReceiverThread",
    "Site",
    "free_port",
    "make_site",
    "wait_until",
]

REPO = Path(__file__).resolve().parent.parent


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")


def wait_on(cond: threading.Condition, pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """``pred()``'s first true value, tried under ``cond`` each time it is notified (whoever
    changes what ``pred`` reads notifies); TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    with cond:
        while not (value := pred()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            cond.wait(left)
        return value


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


def release(client: mqtt.Client) -> None:
    """Close what a stopped paho client still holds: the socket pair ``loop_start()`` opened to
    wake its thread, and a connection nobody disconnected. paho leaves them to the client's
    ``__del__``; a client whose callbacks are bound methods is freed by the garbage collector,
    which may finalize the sockets first, and they then warn (an error in this suite)."""
    client._reset_sockets()


class Recording:
    """What a test-side MQTT client received (paho's thread appends), and ways to look at it."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self._lock = threading.Lock()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append(Msg(msg.topic, msg.payload, bool(msg.retain), time.monotonic()))

    def on(self, topic: str) -> list[Msg]:
        with self._lock:
            return [m for m in self.messages if mqtt.topic_matches_sub(topic, m.topic)]

    def wait(
        self, topic: str, pred: Callable[[Any], bool] = lambda _j: True, timeout: float = 5.0
    ) -> Any:
        """The first JSON body on ``topic`` that ``pred`` accepts; fails the test after
        ``timeout``."""

        def found() -> Any:
            for m in self.on(topic):
                try:
                    body = m.json()
                except ValueError:
                    continue
                if pred(body):
                    return body
            return None

        return wait_until(found, timeout, f"a message on {topic}")


class Probe(Recording):
    """A test-side MQTT client (its own thread is fine here) that records every message."""

    def __init__(self, port: int, subscribe: str = "#", client_id: str = "") -> None:
        super().__init__()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        # Like the gateway: no Nagle, so latencies measured through the probe are not TCP timers.
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.subscribe(subscribe, qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "probe could not subscribe"

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        release(self.client)


@dataclass
class Site:
    """A gateway's files: config, command key, data directory."""

    dir: Path
    gateway_id: str
    key: bytes
    config: Path

    @property
    def root(self) -> str:
        return f"pingan/v1/{self.gateway_id}"

    def command(
        self,
        device: str,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        cid: str | None = None,
        user: str = "tenant-302",
        iat: float | None = None,
        lifetime: float = 30.0,
        key: bytes | None = None,
    ) -> dict[str, Any]:
        now = time.time() if iat is None else iat
        body = {
            "id": cid or os.urandom(8).hex(),
            "device": device,
            "action": action,
            "args": args or {},
            "user": user,
            "iat": now,
            "exp": now + lifetime,
        }
        return sign(key or self.key, body)


def toml_url(url: str | list[str]) -> str:
    """``[mqtt] url`` as TOML: one broker, or a list of nodes (JSON strings are TOML strings)."""
    return json.dumps(url, ensure_ascii=False)


def make_site(
    tmp: Path, broker_url: str | list[str], body: str = "", gateway_id: str = "gw-test"
) -> Site:
    key = os.urandom(32)
    key_file = tmp / "command.key"
    write_secret(str(key_file), key.hex())
    # Tests serve no metrics unless they ask: daemons would fight over the default port.
    no_metrics = "" if "[metrics]" in body else '[metrics]\nlisten = ""\n\n'
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "{gateway_id}"\nsite = "柳墅村 17号"\ndata_dir = "{tmp / "data"}"\n\n'
        f"[mqtt]\nurl = {toml_url(broker_url)}\nreconnect_max_seconds = 1.0\n\n"
        f'[security]\ncommand_key_file = "{key_file}"\n'
        f"commands_per_minute = 20\n\n{no_metrics}{body}"
    )
    return Site(tmp, gateway_id, key, cfg)


class Daemon:
    """The real `gatewayd run` in a subprocess, its log in a file."""

    def __init__(self, site: Site, tick: float = 0.1, env: dict[str, str] | None = None) -> None:
        self.site = site
        self.tick = tick
        self.env = {**os.environ, **(env or {})}
        self.log = site.dir / "gatewayd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> None:
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(  # a killed test run leaves no daemon behind
                tied_to_parent(
                    [
                        sys.executable,
                        "-m",
                        "gatewayd",
                        "run",
                        "-c",
                        str(self.site.config),
                        "--tick",
                        str(self.tick),
                    ]
                ),
                stdout=logf,
                stderr=logf,
                env=self.env,
                cwd=REPO,
            )
        if wait_ready:
            # Ready, and subscribed: a command published after this is not lost.
            try:
                wait_until(
                    lambda: "listening for commands" in self.output(),
                    10.0,
                    "the daemon to be ready",
                )
            except AssertionError as exc:  # say what the daemon said instead
                raise AssertionError(f"{exc}; its output:\n{self.output()[-4000:]}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[self._mark :]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def install_plugin(
    where: Path,
    module: str,
    source: str,
    drivers: dict[str, str],
    families: dict[str, str] | None = None,
) -> dict[str, str]:
    """Write a third-party plugin package (module + dist-info with entry points for its
    drivers and device families) into ``where``; return the environment a daemon or the CLI
    needs to find it (PYTHONPATH)."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(source)
    dist = where / f"{module}-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    text = ""
    for group, entries in (("gatewayd.drivers", drivers), ("gatewayd.families", families or {})):
        if entries:
            lines = "".join(f"{name} = {module}:{cls}\n" for name, cls in entries.items())
            text += f"[{group}]\n{lines}\n"
    (dist / "entry_points.txt").write_text(text)
    return {"PYTHONPATH": f"{where}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


class ReceiverThread:
    """An SRB-433 receiver emulator on its own event loop, scriptable from sync tests."""

    def __init__(self, link: Path, spacing: float = 0.02, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.rx = ReceiverEmulator(str(link), spacing=spacing, **options)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.rx.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def do(self, fn: Any, *args: Any) -> Any:
        async def invoke() -> Any:
            return fn(*args)

        return self.call(invoke())

    def close(self) -> None:
        self.call(self.rx.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def smoke_config(port: str, detectors: dict[str, str], ping_seconds: float = 0.5) -> str:
    """The ``[[buses]]``/``[[devices]]`` of an SRB-433 receiver on ``port`` and its detectors
    (device id -> the 8-hex-digit address; the room is the id's last three characters)."""
    devices = "".join(
        f'\n[[devices]]\nid = "{dev}"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "{addr}"\nroom = "{dev[-3:]}"\n'
        for dev, addr in detectors.items()
    )
    return f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{port}"\nping_seconds = {ping_seconds}\n{devices}'


class Gate:
    """A TCP door in front of a peer (the broker, a relay): closed (connections refused)
    until ``open()``, then every connection is relayed to the peer. The port is bound from
    the start and only listened on at ``open()``: held all along, so nothing else (not even
    one of the daemon's own hundreds of connection attempts, by a TCP self-connect) can take
    it meanwhile. ``cut()`` drops the connections and turns new ones away (a network drop)
    until ``mend()``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.is_cut = False

    def open(self) -> None:
        assert self.server is not None
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.server is not None
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    client.close()
                    return
                if self.is_cut:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets = []

    def mend(self) -> None:
        with self.lock:
            self.is_cut = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.server is not None:
                self.server.close()
            for s in self.sockets:
                s.close()
