"""Carrying out what the rules decided: batched per bus, reported, verified and retried as
each action asks.

Actions of one rule outcome go to their drivers all at once: each bus gets its batch through
``Driver.execute_batch`` (a Modbus line turns "every pile off" into one broadcast plus per-pile
stops with read-back), and the buses run concurrently. What happens next reads only the
action's typed fields (``gatewayd.model.Action``), never its free-text reason:

- ``expect``: the device must report this state; when the result does not say, a ``status``
  is asked for. Only the device's own report counts as done.
- ``alarm``: raised on the device while the action fails, cleared once it is done (or no
  longer wanted).
- ``persist``: ``while_fire`` tries again every few seconds while fire mode lasts (escape
  doors); ``until_done`` until the device confirms, unless the rules come to forbid it
  (relocking after a fire stops if a new fire starts).
- ``done_event``: the event that says it was done and confirmed (``door.released``).

Any failure is a ``gateway.action_failed`` event: the rules make alarms of the ones that
matter (a cut that did not happen).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd.errors import DeviceError, DeviceTimeout, GatewayError
from gatewayd.events import ACTION_FAILED
from gatewayd.model import Action, Event

if TYPE_CHECKING:
    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.linkage")

RETRY_SECONDS = 5.0

Result = Mapping[str, Any] | BaseException


class Actuator:
    def __init__(self, gw: Gateway, spawn: Callable[[Any, str], None]) -> None:
        self.gw = gw
        self.spawn = spawn
        self.retry_seconds = RETRY_SECONDS

    def run(self, actions: list[Action]) -> None:
        by_bus, unknown = self._by_bus(actions)
        for action in unknown:
            self._report(action, DeviceError(action.device, "unknown_device"))
        for bus, batch in by_bus.items():
            self.spawn(self._batch(bus, batch), f"actions:{bus}")

    async def results(self, actions: list[Action]) -> list[Result]:
        """Carry ``actions`` out as ``run`` does (a batch per bus, the buses at once), each
        checked against its ``expect``, and return what each came to: reported to no one,
        retried never (a fire drill's, gatewayd.drill, which tells it itself)."""
        by_bus, _unknown = self._by_bus(actions)
        got: dict[int, Result] = {}

        async def bus_batch(bus: str, batch: list[Action]) -> None:
            results = await self.gw.service.execute_batch(bus, batch)
            checked = await asyncio.gather(*map(self._confirmed, batch, results))
            got.update({id(a): r for a, r in zip(batch, checked, strict=True)})

        await asyncio.gather(*(bus_batch(bus, batch) for bus, batch in by_bus.items()))
        return [got.get(id(a), DeviceError(a.device, "unknown_device")) for a in actions]

    def _by_bus(self, actions: list[Action]) -> tuple[dict[str, list[Action]], list[Action]]:
        by_bus: dict[str, list[Action]] = {}
        unknown: list[Action] = []
        for action in actions:
            device = self.gw.config.device(action.device)
            if device is None:
                unknown.append(action)
            else:
                by_bus.setdefault(device.bus, []).append(action)
        return by_bus, unknown

    async def _batch(self, bus: str, batch: list[Action]) -> None:
        results = await self.gw.service.execute_batch(bus, batch)
        for action, result in zip(batch, results, strict=True):
            self._report(action, result)

    def _report(self, action: Action, result: Result) -> None:
        if isinstance(result, BaseException):
            self._failed(action, result)
        elif action.expect and not _satisfies(result, action.expect):
            self.spawn(self._verify(action), f"verify:{action.device}")
        else:
            self._done(action, result)

    async def _verify(self, action: Action) -> None:
        status = await self._confirmed(action, {})
        if isinstance(status, BaseException):
            self._failed(action, status)
        else:
            self._done(action, status)

    async def _confirmed(self, action: Action, result: Result) -> Result:
        """``result``, or the device's status when the result does not show ``expect``: only
        the device's own report says it is done (an exception says why not)."""
        if isinstance(result, BaseException) or _satisfies(result, action.expect):
            return result
        try:
            status = await self.gw.service.execute(
                Action(action.device, "status", reason=action.reason, origin=action.origin)
            )
        except GatewayError as exc:
            return exc
        if not _satisfies(status, action.expect):
            seen = {k: status.get(k) for k in action.expect}
            return DeviceError(action.device, "not_confirmed", f"reports {seen}")
        return status

    def _done(self, action: Action, result: Mapping[str, Any]) -> None:
        gw = self.gw
        if action.alarm:
            gw.alarms.clear(action.device, action.alarm)
        if action.done_event:
            type_, severity = action.done_event
            data = {"reason": action.reason, "rule": action.origin, **dict(result)}
            if action.expect:
                data["verified"] = True
            gw.handle_event(Event(action.device, type_, severity, data))

    def _failed(self, action: Action, error: BaseException) -> None:
        gw = self.gw
        if not isinstance(error, GatewayError):
            log.error("%s on %s failed unexpectedly: %r", action.name, action.device, error)
        else:
            log.error("%s on %s (%s) failed: %s", action.name, action.device, action.origin, error)
        persistent = action.persist != "once"
        gw.handle_event(
            Event(
                action.device,
                ACTION_FAILED,
                "critical" if persistent else "warning",
                {
                    "action": action.name,
                    "args": dict(action.args),
                    "rule": action.origin,
                    "reason": action.reason,
                    "error": str(error),
                    "code": error.code if isinstance(error, DeviceError) else _code(error),
                    "retry": persistent,
                },
            )
        )
        if action.alarm:
            gw.alarms.raise_(action.device, action.alarm, {"error": str(error)})
        if persistent:
            self.spawn(self._retry(action), f"retry:{action.device}")

    async def _retry(self, action: Action) -> None:
        await asyncio.sleep(self.retry_seconds)
        if self._wanted(action):
            self.run([action])
        elif action.alarm:
            gw = self.gw
            gw.alarms.clear(action.device, action.alarm)  # no longer asked for: not failing

    def _wanted(self, action: Action) -> bool:
        gw = self.gw
        if action.persist == "while_fire":
            return gw.alarms.fire_mode
        return gw.engine.permit(action, gw.world) is None


def _code(error: BaseException) -> str:
    return "timeout" if isinstance(error, DeviceTimeout | TimeoutError) else "failed"


def _satisfies(result: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
    return all(result.get(k) == v for k, v in expect.items())
