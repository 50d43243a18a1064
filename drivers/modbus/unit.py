"""The seam between the modbus driver and the device families on its line.

An RS-485 line (or a Modbus TCP gateway) is shared: piles, electrical fire detectors, whatever
a plugin family brings. The driver owns the line (``line.Line``: one request at a time, safety
first) and knows no device; each device is a ``UnitSession`` that its family builds
(``ModbusFamily.session``) from its config and the bus (``UnitBus``). A family on Modbus
subclasses ``ModbusFamily``; its devices are then polled on the same line as the piles with no
change to the driver.

``Session`` is the base most sessions want: every request through the line at a priority,
with failure accounting (a unit that went quiet gets short timeouts, then an open breaker: no
polls until a probe, retried with capped, jittered backoff, so it cannot stall the others on
its line). It decides nothing about the device: what going offline or coming back means is
the subclass's (``went_offline``, ``went_online``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from drivers.modbus.line import Line, Priority
from drivers.modbus.transport import ExceptionReply, Link, rtu_sizes
from gatewayd.errors import TransientError
from gatewayd.family import Family
from gatewayd.model import Action, Event, Severity

if TYPE_CHECKING:
    from gatewayd.driver import DeviceConfig, DriverContext

T = TypeVar("T")
log = logging.getLogger("gatewayd.drivers.modbus")


#: A pile at rest is polled this many times less often than a busy one, unless the bus says
#: ``idle_seconds``: 5 s at the shipped 1 s (docs/chargers.md, "Idle piles").
IDLE_FACTOR = 5.0


@dataclass(frozen=True)
class Timing:
    """The bus's timing settings (``ModbusDriver.bus_schema``), shared by every unit on it."""

    fast_seconds: float = 1.0
    slow_seconds: float = 10.0
    timeout_seconds: float = 0.3
    suspect_timeout_seconds: float = 0.1
    breaker_failures: int = 3
    breaker_max_seconds: float = 30.0
    max_gap: int = 16
    max_read_registers: int = 125
    write_attempts: int = 3
    watch_celsius: float = 50.0
    #: The summary period of a pile at rest (``readings.at_rest``); None: ``IDLE_FACTOR`` ×
    #: ``fast_seconds``.
    idle_seconds: float | None = None

    def idle_period(self) -> float:
        """How often a pile at rest has its summary read (never faster than a busy one)."""
        idle = (
            self.idle_seconds if self.idle_seconds is not None else IDLE_FACTOR * self.fast_seconds
        )
        return max(idle, self.fast_seconds)


@dataclass(frozen=True)
class UnitBus:
    """What a family's session gets of the bus it is on."""

    name: str
    line: Line
    ctx: DriverContext
    timing: Timing
    #: An RS-485 line (broadcasts possible), not Modbus TCP.
    rtu: bool


class UnitSession(Protocol):
    """One device on a Modbus bus, as the driver runs it."""

    device: str
    unit: int
    #: Unix time of the device's last valid reply (0: never).
    answered_at: float

    async def run(self) -> None:
        """Poll the device through the bus's line until cancelled."""

    async def execute(self, action: Action) -> Mapping[str, Any]:
        """Carry out one of its family's actions; raise ``DeviceError``/``DeviceTimeout``."""

    def stats(self) -> Mapping[str, float]:
        """Counters the driver adds up over its units for the metrics endpoint (no I/O)."""


class ModbusFamily(Family):
    """A device family whose devices sit on a ``modbus`` bus and are addressed by ``unit``."""

    buses: ClassVar[tuple[str, ...]] = ("modbus",)
    address: ClassVar[str | None] = "unit"

    def session(self, device: DeviceConfig, bus: UnitBus) -> UnitSession:
        """The session that polls ``device`` on ``bus`` (its code imported when called)."""
        raise NotImplementedError(f"family {self.kind} does not say how to poll its devices")


class BreakerOpen(TransientError):
    """A poll of an offline unit, dropped when its turn came: it costs the line nothing."""


class Session:
    """Requests to one unit through the shared line, with failure accounting (see above)."""

    def __init__(self, device: str, unit: int, bus: UnitBus) -> None:
        self.device = device
        self.unit = unit
        self.bus = bus
        self.line = bus.line
        self.ctx = bus.ctx
        self.timing = bus.timing
        self.online: bool | None = None
        self.answered_at = 0.0  # Unix time of the last valid reply
        self.failures = 0
        self.breaker_until = 0.0
        self.backoff = 1.0
        self.reachable = asyncio.Event()  # cleared while offline: only the probing loop asks

    # -- what the subclass decides ------------------------------------------------------------

    def went_online(self) -> None:
        """It answers again after being offline."""

    def went_offline(self, exc: TransientError) -> None:
        """It stopped answering (``breaker_failures`` requests in a row)."""

    def stats(self) -> Mapping[str, float]:
        return {}

    def emit(self, type_: str, severity: Severity, data: dict[str, Any]) -> None:
        self.ctx.emit(Event(device=self.device, type=type_, severity=severity, data=data))

    # -- transactions with failure accounting -----------------------------------------------

    def _timeout(self, wire: float, patient: bool) -> float:
        short = self.failures and not patient
        return wire + (
            self.timing.suspect_timeout_seconds if short else self.timing.timeout_seconds
        )

    async def transact(
        self,
        priority: Priority,
        sizes: tuple[int, int],
        call: Callable[[Link, float], Awaitable[T]],
        *,
        patient: bool = False,
    ) -> T:
        """One request through the line; ``patient`` (safety writes) keeps the full timeout
        even for a unit that went quiet."""
        wire = self.line.link.wire_seconds(*sizes)
        timeout = self._timeout(wire, patient)

        async def guarded(link: Link) -> T:
            # Checked when the request reaches the wire, not when it was queued: requests
            # queued before the breaker opened must not each cost a timeout.
            if self.breaker_open() and not patient:
                raise BreakerOpen(self.device, "offline")
            return await call(link, timeout)

        try:
            result = await self.line.call(priority, guarded, wire)
        except BreakerOpen:
            raise
        except ExceptionReply:
            self._answered()  # an exception is an answer: the unit is alive
            raise
        except TransientError as exc:
            self._silent(exc)
            raise
        self._answered()
        return result

    async def read(
        self, priority: Priority, address: int, count: int, *, holding: bool = False
    ) -> list[int]:
        return await self.transact(
            priority,
            rtu_sizes(3 if holding else 4, count),
            lambda link, t: link.read_registers(self.unit, address, count, t, holding=holding),
        )

    async def read_coils(
        self, priority: Priority, address: int, count: int, *, patient: bool = False
    ) -> list[bool]:
        return await self.transact(
            priority,
            rtu_sizes(1, count),
            lambda link, t: link.read_coils(self.unit, address, count, t),
            patient=patient,
        )

    async def write_coils(self, priority: Priority, address: int, values: Sequence[bool]) -> None:
        await self.transact(
            priority,
            rtu_sizes(5 if len(values) == 1 else 15, len(values)),
            lambda link, t: link.write_coils(self.unit, address, values, t),
            patient=True,
        )

    async def write_register(self, priority: Priority, address: int, value: int) -> None:
        await self.transact(
            priority,
            rtu_sizes(6, 1),
            lambda link, t: link.write_register(self.unit, address, value, t),
            patient=True,
        )

    def _answered(self) -> None:
        self.answered_at = time.time()
        self.failures = 0
        self.backoff = 1.0
        if self.online is False:
            log.info("%s: answering again", self.device)
            self.went_online()
        self.online = True
        self.reachable.set()

    def _silent(self, exc: TransientError) -> None:
        self.failures += 1
        if self.online is not False and self.failures < self.timing.breaker_failures:
            return
        if self.online is not False:
            log.warning("%s: not answering (%s)", self.device, exc)
            self.online = False
            self.reachable.clear()
            self.went_offline(exc)
        jitter = random.uniform(0.8, 1.2)
        self.breaker_until = time.monotonic() + self.backoff * jitter
        self.backoff = min(self.backoff * 2, self.timing.breaker_max_seconds)

    def breaker_open(self) -> bool:
        return self.online is False and time.monotonic() < self.breaker_until

    async def wait_breaker(self) -> None:
        while self.breaker_open():
            await asyncio.sleep(max(0.0, self.breaker_until - time.monotonic()))
