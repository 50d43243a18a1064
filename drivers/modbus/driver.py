"""The ``modbus`` driver: one RS-485 line (RTU) or Modbus TCP link, and the devices on it.

Layers: ``transport`` (pymodbus, errors converted once) → ``line`` (one request at a time,
safety first) → one ``unit.UnitSession`` per device, built by the device's family
(``unit.ModbusFamily.session``): charging piles (``pile``, device knowledge in ``profiles``)
and whatever other family shares the line. This module holds the bus's config schema, wires
the layers together and hands each action to its device's session; it never decides policy
(thresholds and cuts belong to rules). It knows piles in one place only: the fire linkage's
broadcast emergency stop (``execute_batch``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from drivers.modbus import actions
from drivers.modbus import events as ev
from drivers.modbus.line import Line, Priority
from drivers.modbus.pile import PileSession
from drivers.modbus.transport import Link, LinkConfig, PymodbusLink, rtu_sizes
from drivers.modbus.unit import ModbusFamily, Timing, UnitBus, UnitSession
from gatewayd.driver import (
    BusConfig,
    Check,
    Commands,
    DeviceConfig,
    Driver,
    DriverContext,
    Seen,
)
from gatewayd.errors import ConfigError, DeviceError, PluginError
from gatewayd.events import drill_mark
from gatewayd.model import Action, Severity
from gatewayd.schema import Baud, Float, Int, OneOf, Schema, Str

log = logging.getLogger("gatewayd.drivers.modbus")


class ModbusDriver(Driver):
    name: ClassVar[str] = "modbus"
    commands: ClassVar[Commands] = {"scan": {"modbus": "drivers.modbus.scan:scan_modbus"}}
    bus_schema: ClassVar[Schema] = {
        "port": Str(
            default=None,
            expected="a serial device path",
            doc="RTU: the RS-485 adapter; or give host",
        ),
        "baudrate": Baud(1200, 921600, default=9600, doc="RTU line speed"),
        "parity": OneOf("N", "E", "O", default="N", doc="RTU parity (8 data bits, 1 stop bit)"),
        "host": Str(
            default=None,
            expected="a host name or address",
            doc="TCP: the pile or gateway; or give port",
        ),
        "tcp_port": Int(1, 65535, default=502, doc="TCP port"),
        "fast_seconds": Float(0.1, 60, default=1.0, doc="summary block poll period per pile"),
        "slow_seconds": Float(1, 3600, default=10.0, doc="full port block poll period per pile"),
        "idle_seconds": Float(
            0.1,
            60,
            default=None,
            doc="summary poll period of a pile at rest (nothing charging, powered, faulted, hot or flagged, no command for slow_seconds); 5 × fast_seconds when absent; at most fast_seconds keeps every pile fast",
        ),
        "timeout_seconds": Float(
            0.05, 10, default=0.3, doc="reply allowance beyond the frame's wire time"
        ),
        "suspect_timeout_seconds": Float(
            0.02, 10, default=0.1, doc="allowance for a pile that just missed a reply"
        ),
        "breaker_failures": Int(1, 100, default=3, doc="missed replies before a pile is offline"),
        "breaker_max_seconds": Float(
            1, 3600, default=30.0, doc="longest wait between probes of an offline pile"
        ),
        "max_gap": Int(
            0, 124, default=16, doc="unwanted registers a read may span to save a request"
        ),
        "max_read_registers": Int(
            8,
            125,
            default=125,
            doc="cap per read; lower it on a slow shared line to shorten the longest transaction a safety write can wait behind",
        ),
        "write_attempts": Int(
            1, 10, default=3, doc="relay write + read-back attempts before escalating"
        ),
        "watch_celsius": Float(
            30,
            100,
            default=50.0,
            doc="while a port of a pile is at or above this (or in over-temperature fault), the blocks of that pile's ports whose relay may be closed are read at the fast period; must be below charger_overheat.port_max_celsius",
        ),
    }

    def __init__(
        self,
        bus: BusConfig,
        devices: Sequence[DeviceConfig],
        ctx: DriverContext,
        *,
        link: Link | None = None,
    ) -> None:
        super().__init__(bus, devices, ctx)
        s = bus.settings
        problem = self.check_bus(s)
        if problem:  # normally caught when the config was loaded
            raise ConfigError("gateway.toml", f"buses.{bus.name}", problem)
        self.link_config = LinkConfig(
            port=s.get("port"),
            baudrate=s.get("baudrate", 9600),
            parity=s.get("parity", "N"),
            host=s.get("host"),
            tcp_port=s.get("tcp_port", 502),
        )
        self.timing = Timing(**{k: s[k] for k in Timing.__dataclass_fields__ if k in s})
        self.link: Link = link or PymodbusLink(self.link_config)
        self.line = Line(
            self.link, age_seconds=max(self.timing.slow_seconds / 2, self.timing.fast_seconds * 3)
        )
        unit_bus = UnitBus(bus.name, self.line, ctx, self.timing, self.link_config.is_rtu)
        self.sessions: dict[str, UnitSession] = {
            d.id: _family(d).session(d, unit_bus) for d in devices
        }
        # The piles, for the broadcast emergency stop of the fire linkage.
        self.piles: dict[str, PileSession] = {
            d: s for d, s in self.sessions.items() if isinstance(s, PileSession)
        }

    async def run(self) -> None:
        others = len(self.sessions) - len(self.piles)
        log.info("modbus bus %s: %d pile(s), %d other", self.bus.name, len(self.piles), others)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.line.run(), name=f"modbus-{self.bus.name}-line")
                for unit in self.sessions.values():
                    tg.create_task(unit.run(), name=f"modbus-{unit.device}")
        finally:
            self.link.close()

    def stats(self) -> Mapping[str, float]:
        s = self.link.stats
        out = {
            "requests_total": s.requests,
            "errors_total": s.garbled + s.exceptions + s.errors,
            "timeouts_total": s.timeouts,
            "utilisation_ratio": self.line.utilisation(),
        }
        # The units' own counters, added up over the bus: ``watched_piles`` (the charger
        # watch: piles whose powered ports are read each fast period), a plugin's own.
        totals: dict[str, float] = {"watched_piles": 0.0}
        for unit in self.sessions.values():
            for key, value in unit.stats().items():
                totals[key] = totals.get(key, 0.0) + value
        return {**out, **totals}

    def last_seen(self) -> Mapping[str, float]:
        return {d: u.answered_at for d, u in self.sessions.items() if u.answered_at}

    async def execute(self, action: Action) -> Mapping[str, Any]:
        unit = self.sessions.get(action.device)
        if unit is None:
            raise DeviceError(action.device, "unknown_device", f"not on bus {self.bus.name}")
        return await unit.execute(action)

    @classmethod
    def check_bus(cls, settings: Mapping[str, Any]) -> str | None:
        if (settings.get("port") is None) == (settings.get("host") is None):
            return "expected exactly one of port (RTU) or host (TCP)"
        return None

    @classmethod
    def check_rules(
        cls, settings: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, str, Any] | None:
        # The watch is for a pile with a port cut hot: started above the cut, a port cut and
        # still hot between the two would hide a second port until the next full read; at
        # the cut itself there is no margin. So it must begin below it.
        cut = rules.get("charger_overheat", {}).get("port_max_celsius")
        watch = settings.get("watch_celsius", Timing.watch_celsius)
        if cut is not None and watch >= cut:
            key = "rules.charger_overheat.port_max_celsius"
            return "watch_celsius", f"expected below {key} ({cut:g})", watch
        return None

    @classmethod
    def check_online(
        cls, bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
    ) -> Iterator[Check]:
        from drivers.modbus.check import check_online

        return check_online(bus, devices, seen)

    async def execute_batch(
        self, actions: Sequence[Action]
    ) -> list[Mapping[str, Any] | BaseException]:
        """``all_off`` for every pile on the bus (the fire linkage) becomes one broadcast
        emergency stop on an RTU line, then each pile's own stop with read-back. The other
        actions of the batch (other families' devices on the line) go to their own devices at
        the same time; their writes queue behind the broadcast at the same safety priority."""
        stops = [a for a in actions if a.name == "all_off" and a.device in self.piles]
        if not self.piles or {a.device for a in stops} != set(self.piles):
            return await super().execute_batch(actions)
        chosen = {id(a) for a in stops}
        rest = [a for a in actions if id(a) not in chosen]
        first = stops[0]
        estop = asyncio.ensure_future(
            self.emergency_stop_all(first.reason or "emergency stop", first.origin)
        )
        await asyncio.sleep(0)  # the broadcast takes the line before the others' writes queue
        others = await super().execute_batch(rest)
        by_pile = await estop
        results = dict(zip(map(id, rest), others, strict=True))
        return [by_pile[a.device] if id(a) in chosen else results[id(a)] for a in actions]

    async def emergency_stop_all(
        self, reason: str = "emergency stop", origin: str = ""
    ) -> dict[str, Any]:
        """Open every relay on the bus: one broadcast (RTU), then each pile's own e-stop with
        read-back. For the fire linkage; returns what each pile reported."""
        # Everything is queued at once, broadcast first: were the per-pile stops queued only
        # after the broadcast finished, the line would slip a poll in between (up to ~160 ms
        # of a 9600-baud line, measured by bench_fire).
        broadcasts: list[asyncio.Future[None]] = []
        if self.link_config.is_rtu:
            commands = {(p.profile.command_reg, p.profile.estop_value) for p in self.piles.values()}
            request, _ = rtu_sizes(6, 1)
            # A broadcast has no reply: the line is busy for its own frame only, and the line
            # keeps its 3.5-character silence afterwards by itself.
            frame = self.link.wire_seconds(request, 0) - 2 * self.link.gap_seconds
            broadcasts = [
                asyncio.ensure_future(
                    self.line.call(
                        Priority.SAFETY,
                        functools.partial(_broadcast, register=reg, value=value, wire=frame),
                        frame,
                    )
                )
                for reg, value in sorted(commands)
            ]
        stops = [
            asyncio.ensure_future(actions.emergency_stop(p, reason)) for p in self.piles.values()
        ]
        sent = await asyncio.gather(*broadcasts, return_exceptions=True)
        for failure in (r for r in sent if isinstance(r, BaseException)):
            log.warning(
                "%s: broadcast e-stop failed (%s); the per-pile stops follow",
                self.bus.name,
                failure,
            )
        results = await asyncio.gather(*stops)
        out: dict[str, Any] = {}
        for pile, result in zip(self.piles.values(), results, strict=True):
            severity: Severity = (
                "critical" if result["relays_closed"] or result["done"] != "written" else "warning"
            )
            ports = list(range(1, pile.ports_n + 1))
            data = {**result, "ports": ports, "origin": origin, "how": "emergency_stop",
                    **drill_mark(origin)}  # fmt: skip
            pile.emit(ev.PORT_CUT, severity, data)
            out[pile.device] = result
        return out


def _family(device: DeviceConfig) -> ModbusFamily:
    from gatewayd import plugins

    family = plugins.family(device.kind)
    if not isinstance(family, ModbusFamily):
        raise PluginError(f"device family {device.kind!r} does not run on a modbus bus")
    return family


async def _broadcast(link: Link, register: int, value: int, wire: float) -> None:
    await link.broadcast_register(register, value)
    # No reply comes, but the frame still occupies the line and the piles need a moment.
    await asyncio.sleep(wire)
