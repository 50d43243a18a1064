"""The modbus driver hosts devices of any family on its line: a family that is not the
chargers' (declared here, as a plugin would) gets its devices polled on the same RS-485 pty
line as the piles, with no driver change; its actions reach its own device; and the fire
linkage's batch (every pile's ``all_off`` beside another family's trip) is still one broadcast
e-stop for the piles, while the other device gets its own write."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from drivers.modbus.line import Priority
from drivers.modbus.unit import ModbusFamily, Session, UnitBus, UnitSession
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from gatewayd import plugins
from gatewayd.driver import DeviceConfig
from gatewayd.errors import DeviceError
from gatewayd.family import Family
from gatewayd.model import Action
from tests.charger_harness import RulesLoop, running

FAST = {"fast_seconds": 0.2, "slow_seconds": 2.0}


class Breaker:
    """A slave that is not a pile: input registers 0..1 (model "BK", a count), coil 0 a trip
    output that latches; anything else is exception 02."""

    silent = garble = False
    ignore_broadcast = True
    answer_as = None

    def __init__(self) -> None:
        self.tripped = False
        self.writes: list[tuple[int, bool]] = []

    def advance(self, seconds: float) -> None:
        pass

    def handle(self, pdu: bytes, broadcast: bool = False) -> bytes:
        fc = pdu[0]
        addr, value = struct.unpack(">HH", pdu[1:5])
        if fc == 0x04 and addr + value <= 2:
            regs = (0x424B, 7)[addr : addr + value]
            return bytes([0x04, 2 * value]) + struct.pack(f">{value}H", *regs)
        if fc == 0x05 and addr == 0:
            self.writes.append((addr, value == 0xFF00))
            self.tripped = self.tripped or value == 0xFF00
            return pdu
        if fc == 0x01 and addr == 0 and value == 1:
            return bytes([0x01, 1, int(self.tripped)])
        return bytes([fc | 0x80, 0x02])


class BreakerSession(Session):
    async def run(self) -> None:
        while True:
            try:
                regs = await self.read(Priority.FAST, 0, 2)
            except Exception:  # a missed poll; the base counted it
                regs = None
            if regs is not None:
                self.ctx.publish_state(self.device, {"model": regs[0], "online": True})
            await asyncio.sleep(self.timing.fast_seconds)

    async def execute(self, action: Action) -> Mapping[str, Any]:
        if action.name != "trip":
            raise DeviceError(self.device, "unsupported", action.name)
        await self.write_coils(Priority.SAFETY, 0, [True])
        bits = await self.read_coils(Priority.SAFETY, 0, 1, patient=True)
        return {"tripped": bits[0]}

    def stats(self) -> Mapping[str, float]:
        return {"breakers": 1.0}


class BreakerFamily(ModbusFamily):
    kind: ClassVar[str] = "breaker"
    title: ClassVar[str] = "breaker"

    def session(self, device: DeviceConfig, bus: UnitBus) -> UnitSession:
        return BreakerSession(device.id, device.settings["unit"], bus)


@pytest.fixture
def breaker_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """The breaker family installed beside the built-in ones, as its entry point would."""
    installed: dict[str, Family] = {**plugins.families(), "breaker": BreakerFamily()}
    monkeypatch.setattr(plugins, "families", lambda: installed)


def test_another_familys_device_is_polled_and_commanded_on_the_piles_line(
    breaker_family: None,
) -> None:
    piles = [Pile(unit=1, ports_n=4), Pile(unit=2, ports_n=4)]
    for p in piles:
        p.plug(1)
    breaker = Breaker()

    async def main() -> None:
        async with EbcEmulator(piles) as emu:
            emu.piles[7] = breaker  # type: ignore[assignment]  # the emulator only carries it
            bus = {"port": emu.open_rtu(), "baudrate": 9600, **FAST}
            loop = RulesLoop()
            devices = {"pile-1": 1, "pile-2": 2}
            async with running(loop, bus, devices, extra={"brk-7": ("breaker", 7)}) as driver:
                await loop.wait_for("charger.port_started", count=2)
                for _ in range(100):
                    if loop.states.get("brk-7", {}).get("model") == 0x424B:
                        break
                    await asyncio.sleep(0.05)
                assert loop.states["brk-7"]["model"] == 0x424B
                assert set(driver.last_seen()) == {"pile-1", "pile-2", "brk-7"}
                assert driver.stats()["breakers"] == 1
                assert driver.stats()["watched_piles"] == 0
                # The fire linkage's batch: both piles' all_off and the breaker's trip.
                batch = [
                    Action("pile-1", "all_off", reason="fire: test", origin="fire"),
                    Action("brk-7", "trip", reason="fire: test", origin="fire"),
                    Action("pile-2", "all_off", reason="fire: test", origin="fire"),
                ]
                results = await driver.execute_batch(batch)
                with pytest.raises(DeviceError, match="not on bus"):
                    await driver.execute(Action("nobody", "trip"))
            assert emu.stats.broadcasts == 1  # the piles: one broadcast e-stop
            assert [p.port(1).relay for p in piles] == [False, False]
            assert results[1] == {"tripped": True}
            assert [r["done"] for r in (results[0], results[2])] == ["written", "written"]
            assert breaker.writes == [(0, True)]
            # The breaker was asked at unit 7 only, never by the broadcast.
            assert all(u in (0, 1, 2, 7) for _, u, _ in emu.trace)

    asyncio.run(main())
