"""The local control socket: how `gatewayd status`, `events`, `alarm` and `pair` reach the
running daemon without a broker.

A Unix stream socket, mode 0660, speaking line-delimited JSON: one request object per line,
one answer object per line (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``);
``events`` answers once and then streams one event object per line until the client leaves.
Peers are checked with SO_PEERCRED: root, the daemon's own user and members of the socket's
group get in; anyone else is refused and logged once. Nothing here ever sends a secret: the
answers carry ids, kinds, buses and observed state, never device settings or keys.

Where the socket lives (the CLI derives the same from the config, see ``candidates``):
``/run/gatewayd/control.sock`` when ``/run/gatewayd`` exists and is writable (systemd's
``RuntimeDirectory=``), else ``<data_dir>/control.sock``; ``$GATEWAYD_CONTROL_SOCKET``
overrides both.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.errors import DeviceError, DeviceTimeout, GatewayError
from gatewayd.model import Action, Event, is_internal

if TYPE_CHECKING:
    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.control")

RUN_DIR = "/run/gatewayd"
SOCKET_NAME = "control.sock"
ENV_VAR = "GATEWAYD_CONTROL_SOCKET"
MAX_LINE = 64 * 1024
EVENT_QUEUE = 1000  # events buffered per slow `events` client before some are dropped
CALL_TIMEOUT = 15.0
#: Methods of a running driver that `call {bus, method}` may reach: receiver commands only.
BUS_METHODS = frozenset({"pair", "hush_all", "remove"})
#: Device actions `call {device, method}` may run: ones that can only make a house safer or
#: tell something. Opening a door is for the signed, audited command path, not for whoever is
#: in the gatewayd group.
DEVICE_METHODS = frozenset({"status", "port_off", "all_off"})


# -- where -------------------------------------------------------------------------------------


def candidates(data_dir: str) -> list[str]:
    """Where the socket may be, in the order the daemon prefers them."""
    override = os.environ.get(ENV_VAR)
    if override:
        return [override]
    return [os.path.join(RUN_DIR, SOCKET_NAME), os.path.join(data_dir, SOCKET_NAME)]


def socket_path(data_dir: str) -> str:
    """The path the daemon binds: the runtime directory only if it already exists and is ours
    to write (we never create it: that is systemd's job, and tests must not touch /run)."""
    first, *rest = candidates(data_dir)
    if not rest:
        return first
    if os.path.isdir(RUN_DIR) and os.access(RUN_DIR, os.W_OK | os.X_OK):
        return first
    return rest[0]


def find_socket(data_dir: str) -> str | None:
    """The first candidate that is a socket now (for clients), or None."""
    for path in candidates(data_dir):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return path
    return None


# -- who ---------------------------------------------------------------------------------------


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (Linux SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _groups_of(pid: int, uid: int, gid: int) -> set[int]:
    """The peer's groups: from /proc (what the process really has), else the group database."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {gid, *(int(g) for g in line.split()[1:])}
    except (OSError, ValueError):
        pass
    groups = {gid}
    with contextlib.suppress(KeyError):
        name = pwd.getpwuid(uid).pw_name
        groups.update(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
    return groups


def allowed(pid: int, uid: int, gid: int, socket_gid: int) -> bool:
    if uid in (0, os.getuid()):
        return True
    return socket_gid in _groups_of(pid, uid, gid)


# -- the server --------------------------------------------------------------------------------


class ControlServer:
    """Serves one gateway. ``close`` stops listening, ends every client and unlinks the path."""

    def __init__(self, gateway: Gateway, path: str) -> None:
        self.gateway = gateway
        self.path = path
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._writers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._gid = os.getegid()

    async def start(self) -> ControlServer:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # left by a daemon that was killed
        # Bind under a umask that never lets a moment pass with a world-writable socket.
        old = os.umask(0o117)
        try:
            self.server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        self._gid = os.stat(self.path).st_gid
        log.info("control socket on %s", self.path)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        # End clients by closing their connections (their reads see EOF and they return):
        # cancelling the handler tasks makes asyncio's stream protocol log a traceback.
        for writer in list(self._writers.values()):
            writer.close()
        clients = list(self._clients)
        if clients:
            _done, stuck = await asyncio.wait(clients, timeout=2.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()
            self.server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def __aenter__(self) -> ControlServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self._writers[task] = writer
        try:
            sock = writer.get_extra_info("socket")
            pid, uid, gid = peer_credentials(sock)
            if not allowed(pid, uid, gid, self._gid):
                log.warning("control: refused uid %d (pid %d): not root nor in its group", uid, pid)
                await _send(writer, {"ok": False, "error": "permission denied"})
                return
            await self._session(reader, writer, uid)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(task)
            self._writers.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, uid: int
    ) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than MAX_LINE
                await _send(writer, {"ok": False, "error": "request too long"})
                return
            if not line:
                return
            request = _parse_request(line)
            if request is None:
                await _send(writer, {"ok": False, "error": 'expected {"cmd": ...} on one line'})
                continue
            if request["cmd"] == "events":
                await self._stream_events(reader, writer)
                return
            await _send(writer, await self.handle(request, uid))

    async def handle(self, request: Mapping[str, Any], uid: int = 0) -> dict[str, Any]:
        """One request, one answer; every failure becomes ``{"ok": false, "error": ...}``."""
        cmd = request["cmd"]
        handler: Callable[[Mapping[str, Any], int], Any] | None = {
            "status": self._status,
            "alarms": self._alarms,
            "ack": self._ack,
            "reset": self._reset,
            "call": self._call,
            "reload": self._reload,
        }.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        try:
            answer = handler(request, uid)
            if asyncio.iscoroutine(answer):
                answer = await answer
        except _BadRequest as exc:
            return {"ok": False, "error": str(exc)}
        except DeviceTimeout as exc:
            return {"ok": False, "error": f"timeout: {exc}"}
        except GatewayError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **answer}

    # -- commands --------------------------------------------------------------------------

    def _status(self, _req: Mapping[str, Any], _uid: int) -> dict[str, Any]:
        gw = self.gateway
        cfg = gw.config
        buses = {
            name: {
                "driver": cfg.bus(name).driver if any(b.name == name for b in cfg.buses) else "",
                "running": sup.driver is not None,
                "restarts": sup.restarts,
            }
            for name, sup in gw.buses.items()
        }
        devices = [
            {
                "id": d.id,
                "kind": d.kind,
                "bus": d.bus,
                "state": dict(gw.world.states.get(d.id, {})),
            }
            for d in cfg.devices
        ]
        return {
            "gateway": cfg.gateway_id,
            "site": cfg.site,
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.time() - gw.started, 1),
            "broker_connected": bool(gw.link is not None and gw.link.connected),
            "fire_mode": gw.alarms.fire_mode,
            "tasks": len(asyncio.all_tasks()),  # the soak watches it for leaks
            "outbox_depth": gw.outbox.depth,
            "outbox": gw.outbox.stats(),
            "alarms": len(gw.alarms.alarms),
            "buses": buses,
            "devices": devices,
            "gateway_state": dict(gw.world.states.get(cfg.gateway_id, {})),
        }

    def _alarms(self, _req: Mapping[str, Any], _uid: int) -> dict[str, Any]:
        return {
            "fire_mode": self.gateway.alarms.fire_mode,
            "alarms": [a.to_json() for a in self.gateway.alarms.active()],
        }

    def _ack(self, req: Mapping[str, Any], uid: int) -> dict[str, Any]:
        alarm = _str_arg(req, "alarm")
        user = _user(req, uid)
        self.gateway.ack_alarm(alarm, user, source="control")
        return {"alarm": alarm, "acked_by": user}

    def _reset(self, req: Mapping[str, Any], uid: int) -> dict[str, Any]:
        """``{"alarm": id}`` resets that latched alarm; without it, fire mode."""
        user = _user(req, uid)
        if req.get("alarm") is not None:
            alarm = _str_arg(req, "alarm")
            self.gateway.reset_alarm(alarm, user, source="control")
            return {"reset": True, "alarm": alarm, "fire_mode": self.gateway.alarms.fire_mode}
        was = self.gateway.fire_reset(user, source="control")
        return {"reset": bool(was), "fire_mode": self.gateway.alarms.fire_mode}

    def _reload(self, _req: Mapping[str, Any], _uid: int) -> dict[str, Any]:
        refused = self.gateway.reload()
        out: dict[str, Any] = {"reloaded": refused is None}
        if refused is not None:
            out["refused"] = refused
        return {**out, "devices": len(self.gateway.config.devices)}

    async def _call(self, req: Mapping[str, Any], uid: int) -> dict[str, Any]:
        """``{bus, method, args}``: a receiver command on a running driver (pair, hush_all,
        remove); ``{device, method, args}``: a device action, through the rules' permit."""
        method = _str_arg(req, "method")
        args = req.get("args") or {}
        if not isinstance(args, dict):
            raise _BadRequest("args must be an object")
        gw = self.gateway
        if "bus" in req:
            bus = _str_arg(req, "bus")
            sup = gw.buses.get(bus)
            if sup is None:
                raise _BadRequest(f"no bus {bus!r}")
            fn = getattr(sup.driver, method, None) if method in BUS_METHODS else None
            if sup.driver is None:
                raise _BadRequest(f"bus {bus} is not running (restarts: {sup.restarts})")
            if fn is None:
                raise _BadRequest(f"bus {bus} ({type(sup.driver).__name__}) has no {method!r}")
            log.info("control: %s on bus %s by uid %d", method, bus, uid)
            async with asyncio.timeout(CALL_TIMEOUT):
                result = await fn(**args)
            return {"result": result}
        device = _str_arg(req, "device")
        if gw.config.device(device) is None:
            raise _BadRequest(f"no device {device!r}")
        if method not in DEVICE_METHODS:
            raise _BadRequest(
                f"{method!r} is not offered locally (only {', '.join(sorted(DEVICE_METHODS))})"
            )
        action = Action(device, method, args, reason="control", origin=f"control:uid{uid}")
        refused = gw.engine.permit(action, gw.world)
        if refused:
            raise _BadRequest(f"forbidden: {refused}")
        log.info("control: %s on %s by uid %d", method, device, uid)
        try:
            result = await gw.execute(action)
        except DeviceError as exc:
            raise _BadRequest(f"{exc.code}: {exc.detail}" if exc.detail else exc.code) from None
        return {"result": dict(result)}

    # -- events ----------------------------------------------------------------------------

    async def _stream_events(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE)
        dropped = 0

        def listener(event: Event) -> None:
            nonlocal dropped
            if is_internal(event.type):
                return  # readings for the rules, not happenings for a person
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                dropped += 1

        self.gateway.listeners.append(listener)
        gone = asyncio.ensure_future(reader.read(1))  # any byte or EOF: the client is done
        try:
            await _send(writer, {"ok": True, "streaming": "events"})
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                if dropped:
                    await _send(writer, {"dropped": dropped})
                    dropped = 0
                await _send(writer, get.result().to_json())
        finally:
            gone.cancel()
            with contextlib.suppress(ValueError):
                self.gateway.listeners.remove(listener)


class _BadRequest(Exception):
    pass


# The runtime's public ack_alarm/fire_reset are used when it has them; until then the same
# steps the command gate takes for the platform's ack_alarm and fire_reset commands.


def _parse_request(line: bytes) -> dict[str, Any] | None:
    try:
        request = json.loads(line)
    except ValueError:
        return None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return None
    return request


def _str_arg(req: Mapping[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"{key} must be a non-empty string")
    return value


def _user(req: Mapping[str, Any], uid: int) -> str:
    user = req.get("user")
    if isinstance(user, str) and user:
        return user
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


async def _send(writer: asyncio.StreamWriter, obj: Mapping[str, Any]) -> None:
    writer.write(json.dumps(obj, ensure_ascii=False, default=str).encode() + b"\n")
    await writer.drain()


async def serve(gateway: Gateway, path: str | None = None) -> ControlServer:
    """Start the control socket for ``gateway`` (at ``socket_path`` of its data dir unless
    ``path`` is given); ``await server.close()`` stops it. A socket that cannot be bound is
    logged and left out: the house stays watched without it."""
    server = ControlServer(gateway, path or socket_path(gateway.config.data_dir))
    try:
        return await server.start()
    except OSError as exc:
        log.error("control socket %s unavailable: %s", server.path, exc.strerror or exc)
        return server
