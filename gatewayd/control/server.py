"""The local control socket: how `gatewayd status`, `events`, `alarm`, `drill` and `pair`
reach the running daemon without a broker.

A Unix stream socket, mode 0660, speaking line-delimited JSON (gatewayd.control.wire): one
request object per line, one answer object per line (``{"ok": true, ...}``, or a refusal
``{"ok": false, "code": ..., "error": "..."}``); ``events`` answers once and then streams one
event object per line until the client leaves (``since``: the recent ones first, from
gatewayd.control.history; ``devices``, ``types``: only those; ``follow`` false: the recent
ones only). Peers are checked with SO_PEERCRED
(gatewayd.control.peer): root, the daemon's own user and members of the socket's group get in;
anyone else is refused and logged once. Whoever acknowledges an alarm, resets fire mode or runs a
fire drill is recorded as the peer's OS account; a name the client gives is only a cleaned note.

What a client can cost the daemon is bounded (gatewayd.control.session): connections at once,
request size and depth, time to send a request and to take an answer; every request, however
malformed, gets a coded answer and none leaves a traceback in the log. Nothing here ever sends
a secret: the answers carry ids, kinds, buses and observed state, never device settings or keys.

Where the socket lives (the CLI derives the same from the config, see ``candidates``):
``/run/gatewayd/control.sock`` when ``/run/gatewayd`` exists and is writable (systemd's
``RuntimeDirectory=``), else ``<data_dir>/control.sock``; ``$GATEWAYD_CONTROL_SOCKET``
overrides both. A socket another process still listens on is never taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd import __version__, plugins
from gatewayd.alarms import Refusal as AlarmRefusal
from gatewayd.commands.service import Forbidden
from gatewayd.control.peer import Peer
from gatewayd.control.session import IDLE_TIMEOUT, MAX_CLIENTS, Sessions
from gatewayd.control.wire import (
    DEVICE_ERROR,
    FORBIDDEN,
    INTERNAL,
    INVALID,
    MAX_LINE,
    NOT_FOUND,
    TIMEOUT,
    Refusal,
    refusal,
)
from gatewayd.errors import ConfigError, DeviceError, DeviceTimeout, GatewayError, InvalidArgument
from gatewayd.model import Action
from gatewayd.schema import Schema, validate

if TYPE_CHECKING:
    from gatewayd.driver import DeviceConfig
    from gatewayd.family import Family
    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.control")

RUN_DIR = "/run/gatewayd"
SOCKET_NAME = "control.sock"
ENV_VAR = "GATEWAYD_CONTROL_SOCKET"
CALL_TIMEOUT = 15.0
# What `call` may reach: the methods a bus's driver offers (``Driver.bus_methods``: a
# receiver's pair mode), and the actions a family offers locally (``ActionSpec.local``: ones
# that can only make a house safer or tell something; opening a door is for the signed,
# audited command path, not for whoever is in the gatewayd group).

__all__ = ["MAX_CLIENTS", "MAX_LINE", "ControlServer", "Peer", "find_socket", "serve"]


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


# -- the server --------------------------------------------------------------------------------


class ControlServer:
    """Serves one gateway. ``close`` stops listening, ends every client and unlinks the path.
    The connections are ``sessions`` (gatewayd.control.session); the commands are here."""

    def __init__(
        self,
        gateway: Gateway,
        path: str,
        *,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.gateway = gateway
        self.path = path
        self.server: asyncio.Server | None = None
        self.sessions = Sessions(
            self.handle, gateway.listeners, max_clients=max_clients, idle_timeout=idle_timeout
        )

    async def start(self) -> ControlServer:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        _claim(self.path)
        # Bind under a umask that never lets a moment pass with a world-writable socket.
        old = os.umask(0o117)
        try:
            self.server = await asyncio.start_unix_server(
                self.sessions.client, self.path, limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        self.sessions.gid = os.stat(self.path).st_gid
        log.info("control socket on %s", self.path)
        return self

    async def close(self) -> None:
        if self.server is None:
            return  # never bound: the path, if any, is someone else's
        self.server.close()
        await self.sessions.close()
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

    async def handle(self, request: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """One request, one answer; every failure becomes a coded refusal."""
        cmd = request["cmd"]
        handler: Callable[[Mapping[str, Any], Peer], Any] | None = {
            "status": self._status,
            "alarms": self._alarms,
            "ack": self._ack,
            "reset": self._reset,
            "call": self._call,
            "reload": self._reload,
            "drill": self._drill,
        }.get(cmd)
        if handler is None:
            return refusal(INVALID, f"unknown command {cmd!r}")
        try:
            answer = handler(request, peer)
            if asyncio.iscoroutine(answer):
                answer = await answer
        except Refusal as exc:
            return exc.answer()
        except AlarmRefusal as exc:  # unknown alarm, or one that cannot be reset yet
            return refusal(NOT_FOUND if exc.code == "invalid" else FORBIDDEN, exc.detail)
        except DeviceTimeout as exc:
            return refusal(TIMEOUT, f"timeout: {exc}")
        except TimeoutError:
            return refusal(TIMEOUT, f"timeout: no answer in {CALL_TIMEOUT:g} s")
        except InvalidArgument as exc:
            return refusal(INVALID, f"{exc.code}: {exc.detail}")
        except DeviceError as exc:
            return refusal(DEVICE_ERROR, f"{exc.code}: {exc.detail}" if exc.detail else exc.code)
        except GatewayError as exc:
            return refusal(DEVICE_ERROR, str(exc))
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback a client can cause
            log.error("control: %r failed: %s: %r", cmd, type(exc).__name__, str(exc))
            return refusal(INTERNAL, f"internal error ({type(exc).__name__}); see the daemon log")
        return {"ok": True, **answer}

    # -- commands --------------------------------------------------------------------------

    def _status(self, _req: Mapping[str, Any], _peer: Peer) -> dict[str, Any]:
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
                **_supervision(gw.house.family_of(d.id), d),
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

    def _alarms(self, _req: Mapping[str, Any], _peer: Peer) -> dict[str, Any]:
        return {
            "fire_mode": self.gateway.alarms.fire_mode,
            "alarms": [a.to_json() for a in self.gateway.alarms.active()],
        }

    def _ack(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        alarm = _str_arg(req, "alarm")
        self.gateway.responses.ack(alarm, peer.user, note=peer.note, source="control")
        return {"alarm": alarm, "acked_by": peer.user, "note": peer.note}

    def _reset(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``{"alarm": id}`` resets that latched alarm; without it, fire mode."""
        out = {"by": peer.user}
        if req.get("alarm") is not None:
            alarm = _str_arg(req, "alarm")
            self.gateway.responses.reset(alarm, peer.user, note=peer.note, source="control")
            return {
                **out,
                "reset": True,
                "alarm": alarm,
                "fire_mode": self.gateway.alarms.fire_mode,
            }
        was = self.gateway.responses.fire_reset(peer.user, note=peer.note, source="control")
        return {**out, "reset": bool(was), "fire_mode": self.gateway.alarms.fire_mode}

    async def _drill(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``{"actuate": bool}``: a fire drill (gatewayd.drill), run as the peer's OS account."""
        actuate = req.get("actuate", False)
        if not isinstance(actuate, bool):
            raise Refusal(INVALID, "actuate must be true or false")
        summary = await self.gateway.drill.run(actuate, peer.user, "control", peer.note)
        return {**summary, "by": peer.user, "note": peer.note}

    def _reload(self, _req: Mapping[str, Any], _peer: Peer) -> dict[str, Any]:
        refused = self.gateway.reload()
        out: dict[str, Any] = {"reloaded": refused is None}
        if refused is not None:
            out["refused"] = refused
        return {**out, "devices": len(self.gateway.config.devices)}

    async def _call(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """``{bus, method, args}``: a method the bus's driver offers (a receiver's pair mode);
        ``{device, method, args}``: an action its family offers locally, through the command
        service (the rules' permit first)."""
        method = _str_arg(req, "method")
        args = req.get("args") or {}
        if not isinstance(args, dict):
            raise Refusal(INVALID, "args must be an object")
        gw, uid = self.gateway, peer.uid
        if "bus" in req:
            bus = _str_arg(req, "bus")
            sup = gw.buses.get(bus)
            if sup is None:
                raise Refusal(NOT_FOUND, f"no bus {bus!r}")
            if sup.driver is None:
                raise Refusal(DEVICE_ERROR, f"bus {bus} is not running (restarts: {sup.restarts})")
            offered = type(sup.driver).bus_methods
            if method not in offered:
                known = ", ".join(sorted(offered)) or "none"
                raise Refusal(FORBIDDEN, f"bus {bus} has no {method!r} (it offers: {known})")
            valid = _valid(args, offered[method], method)
            log.info("control: %s on bus %s by uid %d", method, bus, uid)
            async with asyncio.timeout(CALL_TIMEOUT):
                result = await getattr(sup.driver, method)(**valid)
            return {"result": result}
        device = _str_arg(req, "device")
        cfg = gw.config.device(device)
        if cfg is None:
            raise Refusal(NOT_FOUND, f"no device {device!r}")
        actions = plugins.family(cfg.kind).actions
        local = sorted(name for name, spec in actions.items() if spec.local)
        if method not in local:
            raise Refusal(
                FORBIDDEN, f"{method!r} is not offered locally (only {', '.join(local) or 'none'})"
            )
        action = Action(
            device, method, _valid(args, actions[method].args, method),
            reason="control", origin=f"control:uid{uid}",
        )  # fmt: skip
        log.info("control: %s on %s by uid %d", method, device, uid)
        try:
            return {"result": dict(await gw.service.execute(action))}
        except Forbidden as exc:
            raise Refusal(FORBIDDEN, f"forbidden: {exc.reason}") from None


def _supervision(family: Family | None, device: DeviceConfig) -> dict[str, Any]:
    """Its model, and whether the gateway would notice it falling silent (``status`` shows a
    legacy detector as unsupervised)."""
    if family is None:
        return {}
    model = family.model(device)
    return {"supervised": family.supervised(device), **({"model": model} if model else {})}


def _str_arg(req: Mapping[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise Refusal(INVALID, f"{key} must be a non-empty string")
    return value


def _valid(args: Mapping[str, Any], schema: Schema, method: str) -> dict[str, Any]:
    """Arguments that do not fit are the client's mistake, said before anything is called."""
    try:
        return validate(dict(args), schema, method, "args")
    except ConfigError as exc:
        raise Refusal(INVALID, str(exc)) from None


def _claim(path: str) -> None:
    """Unlink a socket left at ``path`` by a daemon that was killed; refuse (EADDRINUSE) when
    a live process still accepts connections on it: a second daemon must not take over."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return  # not a socket: binding fails and says so
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody listens
        return
    except BlockingIOError:
        pass  # its backlog is full: very much alive
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another process is listening on it")


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
