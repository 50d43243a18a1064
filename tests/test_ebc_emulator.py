"""The EBC emulator speaks the datasheet: map, exceptions, relays, commands, broadcast, timing.

It is the peer every Modbus driver test trusts, so it is checked here against pymodbus's own
client (over TCP and over the pty line) and against the model directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from firmware_stubs.ebc_model import CHARGING, DISABLED, FAULT, FULL, IDLE
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from firmware_stubs.modbus_frames import crc16, rtu_frame, split_rtu_requests

Body = Callable[[EbcEmulator, Any], Awaitable[None]]


def over_tcp(body: Body, piles: list[Pile] | None = None) -> None:
    async def main() -> None:
        async with EbcEmulator(piles or [Pile(unit=1, ports_n=12)]) as emu:
            port = await emu.serve_tcp()
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
            await client.connect()
            try:
                await body(emu, client)
            finally:
                client.close()

    asyncio.run(main())


def over_rtu(body: Body, piles: list[Pile], baud: int = 9600) -> None:
    async def main() -> None:
        async with EbcEmulator(piles, baud=baud) as emu:
            client = AsyncModbusSerialClient(emu.open_rtu(), baudrate=baud, timeout=0.5, retries=0)
            await client.connect()
            try:
                await body(emu, client)
            finally:
                client.close()

    asyncio.run(main())


def test_identity_block_and_port_count() -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        r = await c.read_input_registers(0, count=7, device_id=1)
        assert r.registers[0] == 0x4542
        assert r.registers[2] == 12
        assert r.registers[5] == 2280  # 228.0 V mains

    over_tcp(body)


@pytest.mark.parametrize(
    ("fc", "address", "count", "code"),
    [
        (4, 7, 1, 2),  # the hole between the pile block and port 1
        (4, 16 + 8 * 12, 1, 2),  # port 13 on a 12-port pile
        (4, 0, 8, 2),  # a read that runs off the end of the pile block
        (4, 262, 1, 2),  # after the summary
        (3, 4, 1, 2),  # a fifth holding register
        (1, 12, 1, 2),  # the relay of port 13
    ],
)
def test_addresses_outside_the_map_are_refused(
    fc: int, address: int, count: int, code: int
) -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        read = {1: c.read_coils, 3: c.read_holding_registers, 4: c.read_input_registers}[fc]
        r = await read(address, count=count, device_id=1)
        assert r.isError()
        assert r.exception_code == code

    over_tcp(body)


def test_unknown_function_is_exception_01() -> None:
    pile = Pile(unit=1)
    assert pile.handle(bytes([2, 0, 0, 0, 1])) == bytes([0x82, 1])  # no discrete inputs
    # More than 125 registers (pymodbus will not even send this one).
    assert pile.handle(bytes([4, 0, 0, 0, 126])) == bytes([0x84, 3])


def test_opening_a_relay_ends_the_session_and_disables_the_port() -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        pile = emu.pile(1)
        pile.plug(3)
        pile.advance(60)
        port3 = 16 + 8 * 2
        r = await c.read_input_registers(port3, count=8, device_id=1)
        assert r.registers[0] == CHARGING
        assert r.registers[3] == 240
        assert (r.registers[4] << 16 | r.registers[5]) == 4  # 240 W for a minute
        await c.write_coil(2, False, device_id=1)
        pile.advance(1)
        r = await c.read_input_registers(port3, count=8, device_id=1)
        assert r.registers[0] == DISABLED
        assert r.registers[3] == 0
        coils = await c.read_coils(0, count=12, device_id=1)
        assert coils.bits[:4] == [True, True, False, True]
        await c.write_coil(2, True, device_id=1)
        pile.advance(1)
        r = await c.read_input_registers(port3, count=8, device_id=1)
        assert r.registers[0] == CHARGING
        assert (r.registers[4] << 16 | r.registers[5]) == 0  # a new session

    over_tcp(body)


def test_closing_a_faulted_port_is_exception_04_until_cleared() -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        pile = emu.pile(1)
        pile.plug(2)
        pile.overpower(2, 1200)  # above the 1000 W hardware limit
        pile.advance(1)
        assert pile.state(pile.port(2)) == FAULT
        r = await c.read_input_registers(16 + 8, count=8, device_id=1)
        assert r.registers[7] == 2  # over-power
        r = await c.write_coil(1, True, device_id=1)
        assert r.isError()
        assert r.exception_code == 4
        assert (await c.write_register(3, 0x5A5A, device_id=1)).isError() is False
        assert not (await c.write_coil(1, True, device_id=1)).isError()
        assert pile.port(2).relay

    over_tcp(body)


def test_command_register_estop_clear_and_bad_value() -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        pile = emu.pile(1)
        pile.plug(1)
        r = await c.write_register(3, 0x1234, device_id=1)
        assert r.exception_code == 3
        await c.write_register(3, 0xA5A5, device_id=1)
        coils = await c.read_coils(0, count=12, device_id=1)
        assert not any(coils.bits[:12])
        status = (await c.read_input_registers(3, count=1, device_id=1)).registers[0]
        assert status & 1  # pile fault while e-stopped
        await c.write_register(3, 0x5A5A, device_id=1)
        status = (await c.read_input_registers(3, count=1, device_id=1)).registers[0]
        assert status == 0
        assert not pile.port(1).relay  # clearing does not re-close anything

    over_tcp(body)


def test_offline_failsafe_opens_relays_and_sets_bit_5() -> None:
    pile = Pile(unit=1, ports_n=4)
    pile.handle(bytes([6, 0, 2, 0, 30]))  # 30 s
    pile.plug(1)
    pile.advance(29)
    assert pile.port(1).relay
    pile.advance(2)
    assert not any(p.relay for p in pile.ports)
    assert pile.status() & 32
    pile.handle(bytes([6, 0, 3, 0x5A, 0x5A]))
    assert not pile.status() & 32


def test_charging_curve_heat_and_energy() -> None:
    pile = Pile(unit=1, ports_n=2)
    pile.holding[2] = 0  # nobody polls this pile: keep the offline fail-safe out of it
    battery = pile.plug(1, soc=0.5, capacity_wh=500)
    pile.advance(600)
    port = pile.port(1)
    assert port.power_w == 240
    assert 35 < port.temp_c < 40 + 1  # warm, not hot: 25 + 0.06·240 at the limit
    assert pile.state(port) == CHARGING
    pile.advance(3 * 3600)
    assert battery.soc == 1.0
    assert port.power_w < 30
    assert pile.state(port) == FULL
    assert 250 < port.energy_wh < 300  # half of 500 Wh plus float
    pile.heat_port(1, 70.0)
    pile.advance(10)
    assert port.temp_c >= 70
    pile.handle(bytes([5, 0, 0, 0, 0]))  # cut: the bad contact stops heating
    pile.advance(600)
    assert port.temp_c < 40
    assert pile.state(pile.port(2)) == IDLE


def test_held_heat_outlasts_the_cut_and_cooling_ends_it() -> None:
    pile = Pile(unit=1, ports_n=4)
    pile.holding[2] = 0
    pile.plug(2)
    pile.hold_temperature(2, 70.0)
    pile.handle(bytes([5, 0, 1, 0, 0]))  # cut
    pile.advance(600)
    assert pile.port(2).temp_c == 70.0 and not pile.port(2).relay
    summary = pile.input_registers(256, 2)
    assert summary == [700, 2]  # the summary names it: the other ports hide behind it
    pile.cool_port(2)
    pile.advance(1)
    assert pile.port(2).temp_c < 30
    pile.heat_port(3, 66.0)
    pile.cool_port(3)
    pile.advance(600)
    assert pile.port(3).temp_c < 30  # a mended contact no longer holds the socket hot


def test_hardware_overtemperature_trip() -> None:
    pile = Pile(unit=1, ports_n=2)
    pile.plug(1)
    pile.heat_port(1, 86.0)
    pile.advance(1)
    assert pile.port(1).fault == 1
    assert not pile.port(1).relay


def test_welded_relay_acknowledges_and_stays_closed() -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        pile = emu.pile(1)
        pile.plug(5)
        pile.weld_relay(5)
        r = await c.write_coil(4, False, device_id=1)
        assert not r.isError()
        assert (await c.read_coils(4, count=1, device_id=1)).bits[0] is True
        pile.advance(1)
        assert pile.port(5).power_w > 0
        await c.write_register(3, 0xA5A5, device_id=1)
        pile.advance(1)
        assert pile.port(5).power_w == 0  # the e-stop drops the whole pile

    over_tcp(body)


def test_broadcast_is_executed_without_a_reply_except_by_deaf_piles() -> None:
    piles = [Pile(unit=u, ports_n=4) for u in (1, 2, 3)]
    piles[2].ignore_broadcast = True

    async def body(emu: EbcEmulator, c: Any) -> None:
        await c.write_register(3, 0xA5A5, device_id=0, no_response_expected=True)
        await asyncio.sleep(0.1)
        assert emu.stats.replies == 0
        assert not any(p.relay for p in piles[0].ports + piles[1].ports)
        assert all(p.relay for p in piles[2].ports)

    over_rtu(body, piles)


def test_rtu_reply_arrives_after_the_wire_time() -> None:
    async def body(emu: EbcEmulator, c: Any) -> None:
        t0 = time.monotonic()
        r = await c.read_input_registers(16, count=96, device_id=1)
        took = time.monotonic() - t0
        assert len(r.registers) == 96
        wire = (8 + 5 + 192) * 10 / 9600 + 2 * 3.5 * 10 / 9600 + 0.005
        assert wire * 0.95 < took < wire + 0.1

    over_rtu(body, [Pile(unit=1, ports_n=12)])


def test_silent_garbled_and_absent_units() -> None:
    piles = [Pile(unit=1, ports_n=4), Pile(unit=2, ports_n=4)]

    async def body(emu: EbcEmulator, c: Any) -> None:
        piles[0].silent = True
        with pytest.raises(ModbusIOException):
            await c.read_input_registers(256, count=6, device_id=1)
        piles[1].garble = True
        with pytest.raises(ModbusIOException):
            await c.read_input_registers(256, count=6, device_id=2)
        with pytest.raises(ModbusIOException):
            await c.read_input_registers(256, count=6, device_id=9)
        piles[1].garble = False
        await asyncio.sleep(0.01)
        assert len((await c.read_input_registers(256, count=6, device_id=2)).registers) == 6

    over_rtu(body, piles)


def test_rtu_splitter_resynchronises_after_garbage() -> None:
    good = rtu_frame(1, bytes([4, 1, 0, 0, 6]))
    frames, garbage, rest = split_rtu_requests(b"\x55\x04" + good + good[:3])
    assert frames == [good]
    assert sum(map(len, garbage)) == 2
    assert rest == good[:3]
    assert crc16(b"123456789") == 0x4B37  # the standard Modbus check value
