"""One charging pile on a bus: its polling loops, its circuit breaker, its events and state.

Three loops per pile share what they read: the fast loop reads the six-register summary block
every ``fast_seconds``; the slow loop reads the port blocks and relays every ``slow_seconds``,
and at once (only the ports concerned) when the summary moved; while a port is hot the watch
(``watch.PortWatch``) reads its powered ports at the fast period, since the summary names only
the hottest port. A pile that stops answering gets short timeouts, then an open breaker: no
polls until a probe, retried with capped, jittered backoff, so it cannot stall the other
piles on its line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers.modbus import events as ev
from drivers.modbus import readings as rd
from drivers.modbus.coalesce import coalesce
from drivers.modbus.line import Priority
from drivers.modbus.profiles import ChargerProfile, bits_named
from drivers.modbus.transport import ExceptionReply
from drivers.modbus.unit import BreakerOpen, Session, Timing, UnitBus
from drivers.modbus.watch import PortWatch
from gatewayd import ticks
from gatewayd.errors import TransientError
from gatewayd.model import Action

__all__ = ["BreakerOpen", "PileConfig", "PileSession", "Timing"]

log = logging.getLogger("gatewayd.drivers.modbus")


@dataclass
class PileConfig:
    device: str
    unit: int
    profile: ChargerProfile
    failsafe_seconds: int
    power_limit_watts: int | None


class PileSession(Session):
    def __init__(self, cfg: PileConfig, bus: UnitBus) -> None:
        super().__init__(cfg.device, cfg.unit, bus)
        self.cfg = cfg
        self.profile = cfg.profile
        self.ports_n = 0
        self.image: dict[int, int] = {}
        self.relays: list[bool] = []
        self.summary: dict[str, Any] | None = None
        self.pile: dict[str, Any] = {}
        self.ports: dict[int, dict[str, Any]] = {}
        self.status_bits: int | None = None
        self.ready = asyncio.Event()
        self._refresh = asyncio.Event()
        self._refresh_ports: set[int] = set()
        self.watch = PortWatch(self)
        self._sample_keys: dict[str, tuple[Any, ...]] = {}
        self._published: dict[str, Any] = {}
        self._hurry = asyncio.Event()  # set by a command: the summary goes fast at once
        self._busy_until = 0.0  # monotonic: fast polls at least until then (see _period)

    # -- the unit session (``drivers.modbus.unit``) ---------------------------------------------

    async def execute(self, action: Action) -> Mapping[str, Any]:
        from drivers.modbus.actions import execute  # actions build on this module

        self.hurry()
        return await execute(self, action)

    def stats(self) -> Mapping[str, float]:
        return {"watched_piles": float(self.watch.watching)}

    def went_online(self) -> None:
        self.emit(ev.ONLINE, "info", {})
        self.ready.clear()  # it may have rebooted: configure it again before polling

    def went_offline(self, exc: TransientError) -> None:
        self.emit(ev.OFFLINE, "warning", {"unit": self.unit, "reason": str(exc)})
        self.publish_state()

    async def read_relays(self, priority: Priority, patient: bool = False) -> list[bool]:
        bits = await self.read_coils(
            priority, self.profile.relay_base, self.ports_n, patient=patient
        )
        self.relays = bits
        return bits

    async def write_relays(self, priority: Priority, first_port: int, values: list[bool]) -> None:
        await self.write_coils(priority, self.profile.relay_base + first_port - 1, values)

    # -- loops ------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._fast_loop(), name=f"modbus-{self.device}-fast")
            tg.create_task(self._slow_loop(), name=f"modbus-{self.device}-slow")
            tg.create_task(self.watch.run(), name=f"modbus-{self.device}-watch")

    async def _configure(self) -> None:
        """Identify the pile and write its settings; repeat until it answers."""
        while not self.ready.is_set():
            await self.wait_breaker()
            try:
                start, count = self.profile.pile_span()
                regs = await self.read(Priority.COMMAND, start, count)
                self.image.update(zip(range(start, start + count), regs, strict=True))
                self.pile = rd.decode_pile(self.profile, self.image)
                if self.pile["model"] != self.profile.model_id:
                    log.error(
                        "%s: unit %d is model %#06x, not %s",
                        self.device,
                        self.unit,
                        self.pile["model"],
                        self.profile.name,
                    )
                self.ports_n = min(self.pile["port_count"], self.profile.max_ports)
                await self.write_register(
                    Priority.COMMAND, self.profile.failsafe_reg, self.cfg.failsafe_seconds
                )
                if self.cfg.power_limit_watts is not None:
                    await self.write_register(
                        Priority.COMMAND, self.profile.power_limit_reg, self.cfg.power_limit_watts
                    )
            except (TransientError, ExceptionReply) as exc:
                log.debug("%s: configuring failed: %s", self.device, exc)
                await asyncio.sleep(self.timing.fast_seconds)
                continue
            self.summary = None  # read everything afresh
            self.ready.set()
            self.request_refresh(range(1, self.ports_n + 1))

    async def _fast_loop(self) -> None:
        slot = float("-inf")
        while True:
            if not self.ready.is_set():
                await self._configure()
            await self.wait_breaker()
            slot = await self._next_poll(slot)
            start, count = self.profile.summary_span()
            try:
                regs = await self.read(Priority.FAST, start, count)
            except (TransientError, ExceptionReply):
                continue
            self.image.update(zip(range(start, start + count), regs, strict=True))
            self._on_summary(rd.decode_summary(self.profile, self.image, self.ports_n))

    async def _slow_loop(self) -> None:
        await self.ready.wait()
        last_full = float("-inf")
        while True:
            try:
                async with asyncio.timeout_at(ticks.after(last_full, self._full_period())):
                    await self._refresh.wait()
            except TimeoutError:
                pass
            await self.reachable.wait()
            await self.ready.wait()
            full = time.monotonic() >= ticks.after(last_full, self._full_period())
            if full:
                ports = set(range(1, self.ports_n + 1))
                last_full = time.monotonic()
            else:
                ports = set(self._refresh_ports)
            self._refresh.clear()
            self._refresh_ports.clear()
            if not ports:
                continue  # woken to plan again: the pile is busy now
            try:
                await self.read_ports(
                    sorted(ports), Priority.SLOW if full else Priority.CHANGED, pile_block=full
                )
            except (TransientError, ExceptionReply) as exc:
                log.debug("%s: port read failed: %s", self.device, exc)
                self._refresh_ports |= ports
                await asyncio.sleep(self.timing.fast_seconds)

    # -- idle piles (docs/chargers.md, "Idle piles") ----------------------------------------

    def hurry(self) -> None:
        """A command for this pile, or a reading that is not rest: the fast period from now,
        for at least ``slow_seconds``; loops sleeping out an idle period start again."""
        now = time.monotonic()
        resting = now >= self._busy_until
        self._busy_until = now + self.timing.slow_seconds
        if resting:
            self._hurry.set()
            self._refresh.set()

    def busy(self) -> bool:
        return self.summary is None or time.monotonic() < self._busy_until

    def _period(self) -> float:
        """The summary period now: fast while anything goes on and for ``slow_seconds`` after,
        the idle period for a pile at rest (nothing can be hot without current)."""
        return self.timing.fast_seconds if self.busy() else self.timing.idle_period()

    def _full_period(self) -> float:
        """The full read's period: ``slow_seconds``, stretched like the summary's at rest
        (what it brings then, the cabinet and mains readings, the summary's status bits
        already flag when they matter)."""
        t = self.timing
        return t.slow_seconds if self.busy() else t.slow_seconds * t.idle_period() / t.fast_seconds

    def _note_activity(self) -> None:
        """After every reading: a pile not at rest keeps the fast period (and its hold)."""
        if self.watch.watching or not rd.at_rest(
            self.summary, self.ports.values(), self.timing.watch_celsius
        ):
            self.hurry()

    async def _next_poll(self, slot: float) -> float:
        """Wait until the summary read after the one of ``slot`` is due, by the period the
        pile's readings call for (again when a command hurries it); its slot. Slots are the
        multiples of the period (``gatewayd.ticks``): the piles of a site, and the daemon's
        other periodic loops, wake together; a poll more than a fast period late (or hurried)
        goes at once."""
        while True:
            due = ticks.after(slot, self._period())
            now = time.monotonic()
            if now >= due:
                return due if now - due < self.timing.fast_seconds else now
            self._hurry.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self._hurry.wait()

    def request_refresh(self, ports: Any) -> None:
        self._refresh_ports.update(ports)
        self._refresh.set()

    def plan(self, ports: list[int], pile_block: bool = False) -> list[tuple[int, int]]:
        spans = [self.profile.port_span(p) for p in ports]
        if pile_block:
            spans.append(self.profile.pile_span())
        per_request = min(self.profile.max_read_registers, self.timing.max_read_registers)
        return coalesce(
            spans, per_request, self.timing.max_gap, self.profile.readable(self.ports_n)
        )

    async def read_span(self, priority: Priority, start: int, count: int) -> None:
        regs = await self.read(priority, start, count)
        self.image.update(zip(range(start, start + count), regs, strict=True))

    async def read_ports(
        self, ports: list[int], priority: Priority, *, pile_block: bool = False
    ) -> None:
        for start, count in self.plan(ports, pile_block):
            await self.read_span(priority, start, count)
        relays = await self.read_relays(priority)
        if pile_block:
            self.pile = rd.decode_pile(self.profile, self.image)
            self._on_status(self.pile["status_bits"])
        self.judge(ports, relays, telemetry=True)
        if pile_block:
            pile_values = {k: self.pile[k] for k in ("cabinet_c", "mains_v", "total_power_w")}
            self.ctx.publish_telemetry(self.device, pile_values)
        self.publish_state()

    # -- turning readings into events and state ---------------------------------------------

    def judge(self, ports: list[int], relays: list[bool], *, telemetry: bool) -> bool:
        """Decode ``ports`` from the image, emit their events and a sample; True if a port
        changed state or fault."""
        status = bits_named(self.profile.status_bits, self.status_bits or 0)
        changed = False
        for p in ports:
            relay = relays[p - 1] if p <= len(relays) else None
            new = rd.decode_port(self.profile, self.image, p, relay)
            prev = self.ports.get(p)
            news = rd.port_events(prev, new, status)
            for type_, sev, data in news:
                self.emit(type_, sev, data)
            changed = changed or bool(news)
            self.ports[p] = new
            # A port that just stopped sends its last readings too (down to 0 W), not only
            # live ones: the platform's latest telemetry must not stay at a charge's power.
            was_live = prev is not None and bool(prev["power_w"])
            if telemetry and (new["state"] in rd.ACTIVE or new["power_w"] or news or was_live):
                self.ctx.publish_telemetry(self.device, {k: new[k] for k in _TELEMETRY})
        self._sample(
            {
                "source": "ports",
                "ports": [self.ports[p] for p in sorted(self.ports)],
                "cabinet_c": self.pile.get("cabinet_c"),
                "cabinet_sensor_fault": self.pile.get("cabinet_sensor_fault", False),
                "status_bits": self.status_bits or 0,
                "status": status,
            }
        )
        self.watch.update()
        self._note_activity()
        return changed

    def _on_summary(self, summary: dict[str, Any]) -> None:
        prev, self.summary = self.summary, summary
        self._on_status(summary["status_bits"])
        self._sample({"source": "summary", **summary})
        self.watch.update(summary=True)
        self._note_activity()
        if rd.summary_changed(prev, summary):
            self.request_refresh(rd.ports_to_refresh(prev, summary, self.ports_n))

    def _on_status(self, bits: int) -> None:
        for type_, sev, data in rd.status_events(self.profile, self.status_bits, bits):
            self.emit(type_, sev, data)
        self.status_bits = bits

    def _sample(self, data: dict[str, Any]) -> None:
        """Rules judge ``charger.sample``; emitted only when the reading moved (see docs)."""
        key = rd.sample_key(data)
        if self._sample_keys.get(data["source"]) == key:
            return
        self._sample_keys[data["source"]] = key
        self.emit(ev.SAMPLE, "info", {"unit": self.unit, "ports_n": self.ports_n, **data})

    def publish_state(self) -> None:
        state: dict[str, Any] = {
            "online": bool(self.online),
            "unit": self.unit,
            "ports": [
                {k: p[k] for k in ("port", "state", "relay", "power_w", "temperature_c", "fault")}
                for p in (self.ports[n] for n in sorted(self.ports))
            ],
            "status_bits": self.status_bits or 0,
            "status": bits_named(self.profile.status_bits, self.status_bits or 0),
        }
        for key in ("cabinet_c", "mains_v", "total_power_w"):
            if key in self.pile:
                state[key] = self.pile[key]
        if self.pile:  # identified (the uplink puts these in the devices list: IDENTITY)
            state.update(firmware=self.pile["firmware"], port_count=self.ports_n)
        if state != self._published:
            self._published = state
            self.ctx.publish_state(self.device, state)


_TELEMETRY = ("port", "voltage_v", "current_a", "power_w", "energy_wh", "temperature_c")
