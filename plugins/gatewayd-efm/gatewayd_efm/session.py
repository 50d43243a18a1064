"""One EFM-4 on a Modbus bus: its polling on the line it shares with the piles, its breaker
trip with read-back, its events and its state.

Every ``fast_seconds`` the status bits and the event counter are read (2 registers); when
either moved, and every ``slow_seconds`` anyway, the channels (values, states, peaks), the
trip output and the detector's settings are read. The detector decides its own alarms (the
threshold held for the delay, then latched, GB 14287); this session reports them, and never
takes a broken sensor's register for a value (``codec``).

Nothing here closes a breaker: the shunt trip opens it, and only a person at the box switches
it on again. ``close`` is refused with ``manual_only``; no code path writes coil 0 = 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from drivers.modbus.line import Priority
from drivers.modbus.transport import ExceptionReply
from drivers.modbus.unit import Session, UnitBus
from gatewayd.driver import DeviceConfig
from gatewayd.errors import DeviceError, DeviceTimeout, TransientError
from gatewayd.model import Action
from gatewayd_efm import codec
from gatewayd_efm import events as ev
from gatewayd_efm.profile import PROFILES, RESIDUAL, TEMPERATURE

log = logging.getLogger("gatewayd.efm")

#: The refusal of a command that would re-energise a circuit.
MANUAL_ONLY = "manual_only"
MANUAL_ONLY_WHY = ev.MANUAL_ONLY_WHY


class EfmSession(Session):
    def __init__(self, device: DeviceConfig, bus: UnitBus) -> None:
        st = device.settings
        super().__init__(device.id, int(st["unit"]), bus)
        self.profile = PROFILES[st.get("profile") or "efm4"]
        self.wanted = {
            RESIDUAL: st.get("leakage_alarm_ma"),
            TEMPERATURE: _deci(st.get("temperature_alarm_c")),
        }
        self.wanted_delay: int | None = st.get("alarm_delay_seconds")
        self.ready = asyncio.Event()
        self.identity: dict[str, Any] = {}
        self.types: list[int] = []
        self.settings: list[int] = []  # holding registers 0..6
        self.status_bits: int | None = None
        self.counter: int | None = None
        self.channels: dict[int, dict[str, Any]] = {}
        self.tripped: bool | None = None
        self._published: dict[str, Any] = {}

    # -- the unit session ----------------------------------------------------------------------

    def went_online(self) -> None:
        self.emit(ev.ONLINE, "info", {})
        self.ready.clear()  # it may have been replaced or reset: read it afresh

    def went_offline(self, exc: TransientError) -> None:
        self.emit(ev.OFFLINE, "warning", {"unit": self.unit, "reason": str(exc)})
        self.publish_state()

    async def execute(self, action: Action) -> Mapping[str, Any]:
        if action.name == "trip":
            return await self.trip(action.reason or "trip", action.origin)
        if action.name == "reset":
            return await self.reset()
        if action.name == "close":
            raise DeviceError(self.device, MANUAL_ONLY, MANUAL_ONLY_WHY)
        raise DeviceError(self.device, "unsupported", f"no action {action.name!r}")

    async def run(self) -> None:
        next_full = 0.0
        due = time.monotonic()
        while True:
            if not self.ready.is_set():
                await self._configure()
                next_full = 0.0
            await self.wait_breaker()
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            due = max(due + self.timing.fast_seconds, time.monotonic())
            try:
                moved = await self._read_status(Priority.FAST)
                full = time.monotonic() >= next_full
                if moved or full:
                    await self.read_channels(Priority.SLOW if full else Priority.CHANGED, full)
                    if full:
                        next_full = time.monotonic() + self.timing.slow_seconds
            except (TransientError, ExceptionReply) as exc:
                log.debug("%s: poll failed: %s", self.device, exc)

    # -- reading -------------------------------------------------------------------------------

    async def _configure(self) -> None:
        """Identify the detector, write the thresholds the config asks for; until it answers."""
        p = self.profile
        while not self.ready.is_set():
            await self.wait_breaker()
            try:
                self.identity = codec.decode_identity(
                    p, await self.read(Priority.COMMAND, *p.identity_span())
                )
                if self.identity["model"] != p.model_id:
                    log.error("%s: unit %d is model %#06x, not %s", self.device, self.unit,
                              self.identity["model"], p.label)  # fmt: skip
                start, count = p.types_span()
                self.types = (await self.read(Priority.COMMAND, start, count))[
                    : self.identity["channels"]
                ]
                for i, kind in enumerate(self.types):
                    want = self.wanted.get(kind)
                    if want is not None:
                        await self.write_register(Priority.COMMAND, p.threshold_base + i, want)
                if self.wanted_delay is not None:
                    await self.write_register(Priority.COMMAND, p.delay_reg, self.wanted_delay)
            except (TransientError, ExceptionReply) as exc:
                log.debug("%s: configuring failed: %s", self.device, exc)
                await asyncio.sleep(self.timing.fast_seconds)
                continue
            self.ready.set()

    async def _read_status(self, priority: Priority) -> bool:
        """The status bits and event counter; True when either moved."""
        regs = await self.read(priority, *self.profile.status_span())
        bits, counter = regs[0], regs[1]
        moved = (bits, counter) != (self.status_bits, self.counter)
        self.status_bits, self.counter = bits, counter
        return moved

    async def read_channels(self, priority: Priority, with_settings: bool = True) -> None:
        """Values, states and peaks, the trip output, and (``with_settings``) the detector's
        thresholds and delay; then the events and the state."""
        p = self.profile
        if with_settings or not self.settings:
            start, count = p.settings_span()
            self.settings = await self.read(priority, start, count, holding=True)
        start, count = p.channels_span()
        regs = await self.read(priority, start, count)
        tripped = (await self.read_coils(priority, p.trip_coil, 1))[0]
        thresholds = self.settings[p.threshold_base : p.threshold_base + p.channels]
        self_test = "self_test" in codec.status_names(self.status_bits or 0)
        for new in codec.decode_channels(p, self.types, regs, thresholds):
            for type_, severity, data in codec.channel_events(
                self.channels.get(new["channel"]), new, self_test
            ):
                self.emit(type_, severity, data)
            self.channels[new["channel"]] = new
            if new["value"] is not None:
                key = "leakage_ma" if new["unit"] == "mA" else "temperature_c"
                self.ctx.publish_telemetry(
                    self.device, {"channel": new["channel"], key: new["value"]}
                )
        self._trip_seen(tripped, "detector", "", "")
        self.publish_state()

    # -- acting ----------------------------------------------------------------------------------

    async def trip(self, reason: str, origin: str) -> dict[str, Any]:
        """Write the shunt trip (coil 0 = 1) and read the coil back until it reads 1."""
        coil = self.profile.trip_coil
        attempts, answered, last = 0, False, None
        while attempts < self.timing.write_attempts:
            attempts += 1
            try:
                await self.write_coils(Priority.SAFETY, coil, [True])
                bits = await self.read_coils(Priority.SAFETY, coil, 1, patient=True)
            except (TransientError, ExceptionReply) as exc:
                last = exc
                continue
            answered = True
            if bits[0]:
                self._trip_seen(True, "gateway", reason, origin)
                self.publish_state()
                return {"tripped": True, "verified": True, "attempts": attempts}
        if not answered:
            raise DeviceTimeout(self.device, f"trip unanswered after {attempts} attempts: {last}")
        raise DeviceError(self.device, "trip_failed", "the trip output did not read back 1")

    async def reset(self) -> dict[str, Any]:
        """The detector's reset command: its latched alarms and the trip output's reading. It
        re-energises nothing: the breaker stays open until a person switches it on."""
        p = self.profile
        try:
            await self.write_register(Priority.COMMAND, p.command_reg, p.reset_value)
            await self._read_status(Priority.COMMAND)
            await self.read_channels(Priority.COMMAND, with_settings=False)
        except ExceptionReply as exc:
            raise DeviceError(self.device, f"modbus_exception_{exc.code:02d}", str(exc)) from None
        except TransientError as exc:
            raise DeviceTimeout(self.device, str(exc)) from None
        return {"reset": "written", "tripped": bool(self.tripped)}

    def _trip_seen(self, tripped: bool, by: str, reason: str, origin: str) -> None:
        """The trip output as just read: a rise is news once, whoever saw it first."""
        before, self.tripped = self.tripped, tripped
        if not tripped or before is True:
            return
        if before is None and by == "detector":  # tripped before this gateway watched it
            data = {"by": "unknown", "reason": "found tripped", "origin": "", "verified": True}
            self.emit(ev.TRIPPED, "warning", data)
            return
        data = {"by": by, "reason": reason, "origin": origin, "verified": True}
        self.emit(ev.TRIPPED, "critical", data)

    # -- state -----------------------------------------------------------------------------------

    def publish_state(self) -> None:
        p, s = self.profile, self.settings
        channels = [self.channels[c] for c in sorted(self.channels)]
        state: dict[str, Any] = {
            "online": bool(self.online),
            "unit": self.unit,  # the profile is the devices entry's model
            "status": codec.status_names(self.status_bits or 0),
            "tripped": self.tripped,
            "channels": channels,
            "leakage_ma": _top(channels, "mA"),
            "temperature_c": _top(channels, "°C"),
        }
        if self.identity:
            state["firmware"] = self.identity["firmware"]
        if s:
            state["alarm_delay_seconds"] = s[p.delay_reg]
            state["self_trip"] = bool(s[p.self_trip_reg])
        if state != self._published:
            self._published = state
            self.ctx.publish_state(self.device, state)


def _deci(celsius: float | None) -> int | None:
    return None if celsius is None else round(celsius * 10)


def _top(channels: list[dict[str, Any]], unit: str) -> float | None:
    values = [c["value"] for c in channels if c["unit"] == unit and c["value"] is not None]
    return max(values, default=None)
