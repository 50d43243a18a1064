"""One way from an action someone asked for to the device that carries it out.

A signed command from the platform, a person on the local control socket and a rule's decision
all come here: the rules' permit first (a port under a latched alarm stays off, a door stays
open during a fire), then, for a person's request to a family whose commands are access
decisions, whether it can be recorded (a rule's action, a door released in a fire, is never
held back by a failing audit log); then the action waits for what must be durable before anything moves
(``Action.ready``: a remote command's id) and goes to the driver of its device's bus, within a
deadline. Nothing else in the gateway calls a driver's ``execute``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gatewayd.errors import DeviceError, DeviceTimeout, GatewayError, StorageFailed
from gatewayd.model import Action

if TYPE_CHECKING:
    from gatewayd.driver import Driver

ACTION_TIMEOUT = 10.0  # s a driver gets for one action before the command times out
BATCH_TIMEOUT = 15.0  # s for one bus's batch (a slow RTU line with many piles)

Result = Mapping[str, Any] | BaseException


class Forbidden(GatewayError):
    """A rule refuses the action (result code ``forbidden``)."""

    def __init__(self, action: Action, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.reason = reason


class CommandService:
    """``driver_of(device)`` -> (its bus, the running driver or None), or None for a device
    not configured; ``permit(action)`` -> why not, or None; ``unrecorded(device)`` -> why an
    access decision at it cannot be recorded now, or None."""

    def __init__(
        self,
        driver_of: Callable[[str], tuple[str, Driver | None] | None],
        permit: Callable[[Action], str | None],
        unrecorded: Callable[[str], str | None],
    ) -> None:
        self.driver_of = driver_of
        self.permit = permit
        self.unrecorded = unrecorded

    def check(self, action: Action) -> None:
        """Raise what refuses ``action`` before anything is asked of a device."""
        reason = self.permit(action)
        if reason:
            raise Forbidden(action, reason)
        why = self.unrecorded(action.device) if action.asked_by_person else None
        if why:
            raise StorageFailed("audit log", why)

    async def execute(self, action: Action) -> Mapping[str, Any]:
        """Carry out one action and return what the device reported. Raises ``Forbidden``,
        ``StorageFailed``, ``DeviceError`` or ``DeviceTimeout``."""
        self.check(action)
        where = self.driver_of(action.device)
        if where is None:
            raise DeviceError(action.device, "unknown_device")
        bus, driver = where
        if action.ready is not None and not (driver is not None and driver.overlaps_ready):
            # Shielded: a command given up on must not cancel the sync its id is waiting for.
            await asyncio.shield(action.ready)
            where = self.driver_of(action.device)  # the driver may have been replaced meanwhile
            driver = where[1] if where is not None else None
        if driver is None:
            raise DeviceError(action.device, "driver_down", f"bus {bus} is not running")
        try:
            async with asyncio.timeout(ACTION_TIMEOUT):
                return await driver.execute(action)
        except TimeoutError:
            raise DeviceTimeout(action.device, f"no answer within {ACTION_TIMEOUT:.0f} s") from None

    async def execute_batch(self, bus: str, actions: Sequence[Action]) -> list[Result]:
        """Several actions on one bus at once, as the hardware allows (a line cut with one
        broadcast). Each gets its result or the exception that refused or failed it."""
        allowed: list[Action] = []
        results: dict[int, Result] = {}
        for i, action in enumerate(actions):
            try:
                self.check(action)
                allowed.append(action)
            except GatewayError as exc:
                results[i] = exc
        driver = next((w[1] for a in allowed if (w := self.driver_of(a.device)) is not None), None)
        done: list[Result]
        if not allowed:
            done = []
        elif driver is None:
            done = [
                DeviceError(a.device, "driver_down", f"bus {bus} is not running") for a in allowed
            ]
        else:
            try:
                async with asyncio.timeout(BATCH_TIMEOUT):
                    done = await driver.execute_batch(allowed)
            except TimeoutError:
                done = [
                    DeviceTimeout(a.device, f"no answer within {BATCH_TIMEOUT:.0f} s")
                    for a in allowed
                ]
        it = iter(done)
        return [results[i] if i in results else next(it) for i in range(len(actions))]
