"""Carrying out what the rules decided: batched per bus, reported, and retried where life
depends on it.

Actions of one rule outcome go to their drivers all at once: each bus gets its batch through
``Driver.execute_batch`` (a Modbus line turns "every pile off" into one broadcast plus per-pile
stops with read-back), and the buses run concurrently. An escape door that could not be
released is a critical alarm and is tried again every few seconds while fire mode lasts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd.errors import DeviceError, DeviceTimeout, GatewayError
from gatewayd.model import Action, Event

if TYPE_CHECKING:
    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.linkage")

BATCH_TIMEOUT = 15.0  # s for one bus's batch (a slow RTU line with many piles)
RETRY_SECONDS = 5.0


class Actuator:
    def __init__(self, gw: Gateway, spawn: Callable[[Any, str], None]) -> None:
        self.gw = gw
        self.spawn = spawn

    def run(self, actions: list[Action]) -> None:
        by_bus: dict[str, list[Action]] = {}
        for action in actions:
            device = self.gw.config.device(action.device)
            if device is None:
                self._report(action, DeviceError(action.device, "unknown_device"))
                continue
            by_bus.setdefault(device.bus, []).append(action)
        for bus, batch in by_bus.items():
            self.spawn(self._batch(bus, batch), f"actions:{bus}")

    async def _batch(self, bus: str, batch: list[Action]) -> None:
        sup = self.gw.buses.get(bus)
        results: list[Mapping[str, Any] | BaseException]
        if sup is None or sup.driver is None:
            results = [
                DeviceError(a.device, "driver_down", f"bus {bus} is not running") for a in batch
            ]
        else:
            try:
                async with asyncio.timeout(BATCH_TIMEOUT):
                    results = await sup.driver.execute_batch(batch)
            except TimeoutError:
                results = [
                    DeviceTimeout(a.device, f"no answer within {BATCH_TIMEOUT:.0f} s")
                    for a in batch
                ]
        for action, result in zip(batch, results, strict=True):
            self._report(action, result)

    def _report(self, action: Action, result: Mapping[str, Any] | BaseException) -> None:
        gw = self.gw
        releasing = action.name == "hold_open" and action.reason.startswith("fire")
        if isinstance(result, BaseException):
            if not isinstance(result, GatewayError):
                log.error("%s on %s failed unexpectedly: %r", action.name, action.device, result)
            else:
                log.error(
                    "%s on %s (%s) failed: %s", action.name, action.device, action.origin, result
                )
            gw.handle_event(
                Event(
                    action.device,
                    "gateway.action_failed",
                    "critical" if releasing else "warning",
                    {
                        "action": action.name,
                        "args": dict(action.args),
                        "rule": action.origin,
                        "reason": action.reason,
                        "error": str(result),
                    },
                )
            )
            if releasing:
                gw.alarms.raise_(
                    action.device, "door.release_failed", "critical", {"error": str(result)}
                )
                self.spawn(self._retry(action), f"retry:{action.device}")
            return
        if releasing:
            self.spawn(self._confirm_release(action), f"confirm:{action.device}")
        elif action.name == "lock" and action.reason == "fire_reset":
            gw.handle_event(
                Event(
                    action.device,
                    "door.restored",
                    "info",
                    {"reason": "fire_reset", "lock": result.get("lock")},
                )
            )

    async def _confirm_release(self, action: Action) -> None:
        """Re-check a released door: only the lock's own status says it is held open."""
        gw = self.gw
        try:
            status = await gw.execute(
                Action(action.device, "status", reason=action.reason, origin=action.origin)
            )
        except GatewayError as exc:
            self._report(action, exc)
            return
        if status.get("lock") != "held_open":
            self._report(
                action,
                DeviceError(action.device, "not_released", f"lock reports {status.get('lock')!r}"),
            )
            return
        gw.alarms.clear(action.device, "door.release_failed")
        gw.handle_event(
            Event(
                action.device,
                "door.released",
                "warning",
                {
                    "reason": action.reason,
                    "lock": "held_open",
                    "door": status.get("door"),
                    "verified": True,
                },
            )
        )

    async def _retry(self, action: Action) -> None:
        await asyncio.sleep(RETRY_SECONDS)
        if self.gw.alarms.fire_mode:
            self.run([action])
