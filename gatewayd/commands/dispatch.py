"""Remote commands, from verified payload to result: the half of the command gate that acts.

``gatewayd.commands`` decides whether a payload is an authentic, fresh, unique and well-formed
command; this module carries it out (gateway actions here, device actions through the rules'
``permit`` and the driver), audits commands meant for doors, and publishes exactly one result
for every payload, even when something inside fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from typing import TYPE_CHECKING

from gatewayd import plugins
from gatewayd.alarms import Refusal
from gatewayd.commands.gate import Command, Refused, Result
from gatewayd.commands.service import Forbidden
from gatewayd.errors import DeviceError, DeviceTimeout, InvalidArgument, StorageFailed
from gatewayd.events import DRILL_FLAG
from gatewayd.family import ActionSpec
from gatewayd.model import Action

if TYPE_CHECKING:
    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.commands")


class CommandHandler:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.results: dict[str, int] = {}  # code -> count, for metrics

    async def handle(self, payload: bytes) -> None:
        gw = self.gw
        t0 = time.perf_counter()
        try:
            cmd = gw.gate.verify(payload)
            result = await self._dispatch(cmd)
        except Refused as exc:
            result = Result(exc.cid, exc.code, exc.detail)
        except Exception as exc:  # a bug must still answer the platform, and not actuate twice
            log.exception("command failed unexpectedly")
            cid = _peek(payload).get("id")
            result = Result(
                cid if isinstance(cid, str) else None,
                "device_error",
                f"internal error: {type(exc).__name__}",
            )
        result.ms = (time.perf_counter() - t0) * 1000
        self._audit(payload, result)
        self.results[result.code] = self.results.get(result.code, 0) + 1
        if not result.ok:
            log.info("command %s refused: %s (%s)", result.id, result.code, result.detail)
        gw.publisher.result(result.to_json())

    async def _dispatch(self, cmd: Command) -> Result:
        gw = self.gw
        if cmd.device == gw.config.gateway_id:
            if cmd.action == "drill":
                return await self._drill(cmd)
            try:
                return self._gateway_action(cmd)
            except Refusal as exc:
                return Result(cmd.id, exc.code, exc.detail)
        action = Action(
            cmd.device, cmd.action, cmd.args, reason="command", origin=f"command:{cmd.user}"
        )
        try:
            gw.service.check(action)  # refused before its id need be made durable
        except Forbidden as exc:
            return Result(cmd.id, "forbidden", exc.reason)
        except StorageFailed as exc:  # nothing may open (or lock) a door unrecorded
            return Result(cmd.id, "storage_failed", f"cannot record it ({exc.detail})")
        # The id is on disk before anything moves: the sync runs while the driver gets ready
        # (reads a lock's challenge) and the driver waits for it before it actuates.
        synced = asyncio.ensure_future(gw.replay.sync())
        action = dataclasses.replace(action, ready=synced)
        if self._spec(cmd).attributed:
            gw.audit.expect(cmd.device, cmd.user, cmd.id)
        try:
            data = await gw.service.execute(action)
        except Forbidden as exc:  # the world changed while the id was being synced
            return Result(cmd.id, "forbidden", exc.reason)
        except StorageFailed as exc:  # the id could not be made durable: nothing moved
            return Result(cmd.id, "storage_failed", f"cannot record the command id ({exc})")
        except DeviceTimeout as exc:
            return Result(cmd.id, "timeout", str(exc))
        except InvalidArgument as exc:  # out of this device's range: nothing moved
            return Result(cmd.id, "invalid", f"{exc.code}: {exc.detail}")
        except DeviceError as exc:
            return Result(
                cmd.id, "device_error", f"{exc.code}: {exc.detail}" if exc.detail else exc.code
            )
        finally:
            # Done even when nothing moved: the id is spent (a failed sync was answered above).
            with contextlib.suppress(StorageFailed):
                await asyncio.shield(synced)
        return Result(cmd.id, "ok", data=dict(data))

    def _gateway_action(self, cmd: Command) -> Result:
        """ping, and what people do about alarms; ``Refusal`` says why one cannot be done."""
        user = cmd.user or "platform"
        if cmd.action == "ping":
            return Result(cmd.id, "ok", data={"pong": time.time()})
        if cmd.action == "ack_alarm":
            alarm = self.gw.responses.ack(cmd.args["alarm"], user)
            return Result(cmd.id, "ok", data={"alarm": alarm.to_json()})
        if cmd.action == "reset_alarm":
            alarm = self.gw.responses.reset(cmd.args["alarm"], user)
            return Result(cmd.id, "ok", data={"alarm": alarm.id})
        if cmd.action == "fire_confirm":
            alarm = self.gw.responses.fire_confirm(cmd.args["alarm"], user)
            return Result(cmd.id, "ok", data={"alarm": alarm.id})
        if not self.gw.responses.fire_reset(user):  # the only other gateway action
            return Result(cmd.id, "ok", "not in fire mode")
        return Result(cmd.id, "ok")

    async def _drill(self, cmd: Command) -> Result:
        """A fire drill; its result says what each step moved (or would have moved). One
        that moves things waits, like a device command, until its id is on disk."""
        actuate = bool(cmd.args["actuate"])
        flag = {DRILL_FLAG: True}
        try:
            if actuate:
                await self.gw.replay.sync()
            summary = await self.gw.drill.run(actuate, cmd.user or "platform", "platform")
        except StorageFailed as exc:
            return Result(
                cmd.id, "storage_failed", f"cannot record the command id ({exc})", data=flag
            )
        except Refusal as exc:
            return Result(cmd.id, exc.code, exc.detail, data=flag)
        return Result(cmd.id, "ok", data=summary)

    def _spec(self, cmd: Command) -> ActionSpec:
        device = self.gw.config.device(cmd.device)
        assert device is not None  # the gate let it through
        return plugins.family(device.kind).actions.get(cmd.action, ActionSpec())

    def _audited(self, device: str) -> bool:
        cfg = self.gw.config.device(device)
        return cfg is not None and plugins.family(cfg.kind).audited

    def _audit(self, payload: bytes, result: Result) -> None:
        """Commands meant for a door lock are access decisions, refused ones included."""
        raw = _peek(payload)
        device = raw.get("device")
        cfg = self.gw.config.device(device) if isinstance(device, str) else None
        if cfg is None or not self._audited(cfg.id):
            return
        user, action = raw.get("user"), raw.get("action")
        self.gw.audit.command(
            cfg.id, str(action)[:64], str(user)[:128], result.id, result.code, result.detail
        )


def _peek(payload: bytes) -> dict[str, object]:
    """The payload as a dict when it is one (for ids and auditing of refused commands)."""
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return raw
