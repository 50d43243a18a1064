"""One EBC charging pile as the datasheet (shared/datasheets/charger-ebc.md) describes it.

The register map, the relay rules, the command register, the pile's own trips and the offline
fail-safe, plus a small physics model (battery charging curve, socket heating) and fault
injection for tests. ``handle`` takes a request PDU and returns the reply PDU: transports
(``ebc_pile``) own framing and timing. The clock is simulated (``advance``), so tests can run
an hour of charging in a millisecond.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from firmware_stubs.modbus_frames import exception_pdu, pack_bits, unpack_bits

MODEL_ID = 0x4542
FIRMWARE = (1 << 8) | 3
ESTOP, CLEAR = 0xA5A5, 0x5A5A
IDLE, CHARGING, FULL, FAULT, DISABLED = range(5)
F_NONE, F_OVERTEMP, F_OVERPOWER, F_SHORT, F_WELDED, F_LEAKAGE = range(6)
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
SENSOR_BROKEN = 0x7FFF  # what an open thermistor reads as: 3276.7 °C
AMBIENT_C = 25.0
FLOAT_W = 12.0


class ModbusException(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Battery:
    """An e-bike pack behind its charger: constant power, then a taper to float near full."""

    capacity_wh: float = 600.0
    soc: float = 0.3
    max_power_w: float = 240.0

    def demand_w(self) -> float:
        if self.soc >= 1.0:
            return FLOAT_W
        if self.soc < 0.8:
            return self.max_power_w
        # Taper with the remaining charge from 80 %; the last few percent go in under 30 W,
        # which is what the datasheet calls full.
        return max(25.0, self.max_power_w * (1.0 - self.soc) / 0.2)


@dataclass
class Port:
    number: int
    relay: bool = True  # closed: the socket is powered and a plugged charger may draw
    welded: bool = False
    fault: int = F_NONE
    battery: Battery | None = None
    forced_w: float | None = None  # fault injection: a load drawing this much
    hot_c: float | None = None  # fault injection: a bad contact holding the socket here
    held_c: float | None = None  # fault injection: heat no relay switches off
    sensor_broken: bool = False
    power_w: float = 0.0
    energy_wh: float = 0.0
    temp_c: float = AMBIENT_C
    no_load_s: float = 0.0

    @property
    def load(self) -> bool:
        return self.battery is not None or self.forced_w is not None


@dataclass
class Pile:
    """Registers and behaviour of one pile at slave address ``unit``."""

    unit: int = 1
    ports_n: int = 12
    mains_v: float = 228.0
    holding: list[int] = field(default_factory=lambda: [1000, 850, 1800, 0])
    smoke_input: bool = False
    door_open: bool = False
    # Communication faults, applied by the transport.
    silent: bool = False
    garble: bool = False
    ignore_broadcast: bool = False
    answer_as: int | None = None  # replies framed with this unit id (a misaddressed slave)

    def __post_init__(self) -> None:
        if not 1 <= self.ports_n <= 16:
            raise ValueError("a pile has 1..16 ports")
        self.ports = [Port(p) for p in range(1, self.ports_n + 1)]
        self.now = 0.0
        self.last_request = 0.0
        self.estopped = False
        self.failsafe_tripped = False
        self.cabinet_extra_c = 0.0
        self.requests: list[tuple[int, int, int]] = []  # (fc, address, count) as received
        self.writes: list[tuple[float, int, int, int]] = []  # (sim time, fc, address, value)

    # -- fault injection and scenario helpers ----------------------------------------------

    def plug(self, port: int, **battery: float) -> Battery:
        b = Battery(**battery)
        p = self.port(port)
        p.battery = b
        if self._live(p):
            p.power_w = b.demand_w()  # the charger starts drawing at once, not at the next tick
        return b

    def unplug(self, port: int) -> None:
        self.port(port).battery = None

    def heat_port(self, port: int, celsius: float) -> None:
        """A bad contact: the socket reads ``celsius`` while its relay stays closed."""
        p = self.port(port)
        p.hot_c = celsius
        p.temp_c = celsius

    def hold_temperature(self, port: int, celsius: float) -> None:
        """Heat the pile cannot switch off (a neighbour burning, a sunlit cabinet wall): the
        socket reads ``celsius`` whatever its relay does, until ``cool_port``."""
        p = self.port(port)
        p.held_c = celsius
        p.temp_c = celsius

    def cool_port(self, port: int) -> None:
        """The bad contact mended and the socket at once as cool as its load makes it."""
        p = self.port(port)
        p.hot_c = None
        p.held_c = None
        p.temp_c = AMBIENT_C + 0.06 * p.power_w

    def heat_cabinet(self, celsius: float) -> None:
        self.cabinet_extra_c = celsius - self.cabinet_c()

    def overpower(self, port: int, watts: float) -> None:
        self.port(port).forced_w = watts

    def weld_relay(self, port: int) -> None:
        self.port(port).welded = True

    def break_sensor(self, port: int) -> None:
        self.port(port).sensor_broken = True

    def inject_fault(self, port: int, code: int) -> None:
        self._trip(self.port(port), code)

    def port(self, number: int) -> Port:
        return self.ports[number - 1]

    # -- physics ----------------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        """Move the simulated clock on by ``dt`` seconds (split so the integration is stable)."""
        while dt > 0:
            step = min(dt, 1.0)
            self._step(step)
            dt -= step

    def _step(self, dt: float) -> None:
        self.now += dt
        limit_w = self.holding[0]
        trip_c = self.holding[1] / 10
        for p in self.ports:
            live = self._live(p)
            want = 0.0
            if live and p.load:
                want = p.forced_w if p.forced_w is not None else p.battery.demand_w()  # type: ignore[union-attr]
            p.power_w = want
            if p.battery is not None and want > 0 and p.forced_w is None:
                p.battery.soc = min(1.0, p.battery.soc + want * dt / 3600 / p.battery.capacity_wh)
            p.energy_wh += want * dt / 3600
            p.no_load_s = p.no_load_s + dt if live and want < 10 else 0.0
            # Socket temperature relaxes towards ambient plus a term in the current it carries
            # (tau 120 s); a bad contact holds it high for as long as the relay stays closed.
            target = AMBIENT_C + 0.06 * want
            if p.hot_c is not None and p.relay:
                target = max(target, p.hot_c)
                p.temp_c = max(p.temp_c, p.hot_c)
            p.temp_c += (target - p.temp_c) * min(1.0, dt / 120)
            if p.held_c is not None:
                p.temp_c = p.held_c
            if p.fault == F_NONE and p.relay:
                if want >= limit_w:
                    self._trip(p, F_OVERPOWER)
                elif p.temp_c >= trip_c and not p.sensor_broken:
                    self._trip(p, F_OVERTEMP)
        timeout = self.holding[2]
        if timeout and not self.failsafe_tripped and self.now - self.last_request >= timeout:
            self.failsafe_tripped = True
            for p in self.ports:
                self._open(p)

    def _live(self, p: Port) -> bool:
        return p.relay and not self.estopped and (p.fault == F_NONE or p.welded)

    def _trip(self, p: Port, code: int) -> None:
        p.fault = code
        self._open(p)

    def _open(self, p: Port) -> None:
        if p.welded:
            p.fault = F_WELDED  # the pile sees voltage behind an open command
            return
        p.relay = False
        p.hot_c = None
        p.power_w = 0.0

    # -- registers --------------------------------------------------------------------------

    def state(self, p: Port) -> int:
        if p.fault != F_NONE:
            return FAULT
        if not p.relay:
            return DISABLED
        if not p.load or (p.power_w < 10 and p.no_load_s >= 10):
            return IDLE
        if p.power_w < 30:
            return FULL
        return CHARGING

    def cabinet_c(self) -> float:
        return AMBIENT_C + 0.004 * sum(p.power_w for p in self.ports) + self.cabinet_extra_c

    def status(self) -> int:
        bits = 0
        if self.estopped or any(p.fault for p in self.ports):
            bits |= 1
        if not 187 <= self.mains_v <= 253:
            bits |= 2
        if self.cabinet_c() >= 80:
            bits |= 4
        bits |= 8 if self.smoke_input else 0
        bits |= 16 if self.door_open else 0
        bits |= 32 if self.failsafe_tripped else 0
        return bits

    def _temp_raw(self, p: Port) -> int:
        return SENSOR_BROKEN if p.sensor_broken else _s16(round(p.temp_c * 10))

    def input_registers(self, addr: int, count: int) -> list[int]:
        """Registers addr..addr+count-1; each block is computed once per request."""
        blocks: dict[str, list[int]] = {}
        out = []
        for a in range(addr, addr + count):
            if 0 <= a <= 6:
                if "pile" not in blocks:
                    blocks["pile"] = self._pile_block()
                out.append(blocks["pile"][a])
            elif 16 <= a < 16 + 8 * self.ports_n:
                key = f"port{(a - 16) // 8}"
                if key not in blocks:
                    blocks[key] = self._port_block(self.ports[(a - 16) // 8])
                out.append(blocks[key][(a - 16) % 8])
            elif 256 <= a <= 261:
                if "summary" not in blocks:
                    blocks["summary"] = self._summary_block()
                out.append(blocks["summary"][a - 256])
            else:
                raise ModbusException(ILLEGAL_ADDRESS)
        return out

    def _total_w(self) -> int:
        return min(0xFFFF, round(sum(p.power_w for p in self.ports)))

    def _pile_block(self) -> list[int]:
        cabinet = _s16(round(self.cabinet_c() * 10))
        status = self.status()
        return [
            MODEL_ID,
            FIRMWARE,
            self.ports_n,
            status,
            cabinet,
            round(self.mains_v * 10),
            self._total_w(),
        ]

    def _port_block(self, p: Port) -> list[int]:
        energy = min(0xFFFFFFFF, int(p.energy_wh))
        return [
            self.state(p),
            round(56.0 * 10) if p.power_w > 0 else 0,
            min(0xFFFF, round(p.power_w / 56.0 * 100)),
            min(0xFFFF, round(p.power_w)),
            energy >> 16,
            energy & 0xFFFF,
            self._temp_raw(p),
            p.fault,
        ]

    def _summary_block(self) -> list[int]:
        raws = [self._temp_raw(p) for p in self.ports]
        hottest = max(range(self.ports_n), key=lambda i: _signed(raws[i]))
        charging = sum(1 << (p.number - 1) for p in self.ports if self.state(p) == CHARGING)
        faulted = sum(1 << (p.number - 1) for p in self.ports if p.fault)
        return [raws[hottest], hottest + 1, charging, faulted, self._total_w(), self.status()]

    # -- requests ---------------------------------------------------------------------------

    def handle(self, pdu: bytes, broadcast: bool = False) -> bytes:
        """Execute one request PDU; return the reply PDU (an exception PDU on refusal)."""
        fc = pdu[0] if pdu else 0
        if not broadcast:
            self.last_request = self.now
        try:
            return self._dispatch(fc, pdu[1:], broadcast)
        except ModbusException as exc:
            return exception_pdu(fc, exc.code)
        except (struct.error, IndexError):
            return exception_pdu(fc, ILLEGAL_VALUE)

    def _dispatch(self, fc: int, body: bytes, broadcast: bool) -> bytes:
        if fc in (1, 3, 4):
            addr, count = struct.unpack(">HH", body[:4])
            self.requests.append((fc, addr, count))
            if broadcast:
                raise ModbusException(ILLEGAL_FUNCTION)  # reads make no sense to everyone
            if fc == 1:
                return self._read_coils(addr, count)
            return self._read_registers(fc, addr, count)
        if fc == 5:
            addr, value = struct.unpack(">HH", body[:4])
            self.requests.append((fc, addr, 1))
            if value not in (0, 0xFF00):
                raise ModbusException(ILLEGAL_VALUE)
            self._check_coils(addr, 1)
            self._set_relay(addr + 1, value == 0xFF00)
            return bytes([fc]) + body[:4]
        if fc == 15:
            addr, count, nbytes = struct.unpack(">HHB", body[:5])
            self.requests.append((fc, addr, count))
            self._check_coils(addr, count)
            if nbytes != (count + 7) // 8 or len(body) < 5 + nbytes:
                raise ModbusException(ILLEGAL_VALUE)
            bits = unpack_bits(body[5 : 5 + nbytes], count)
            self._set_relays(addr, bits)
            return bytes([fc]) + body[:4]
        if fc == 6:
            addr, value = struct.unpack(">HH", body[:4])
            self.requests.append((fc, addr, 1))
            self._write_holding(addr, [value])
            return bytes([fc]) + body[:4]
        if fc == 16:
            addr, count, nbytes = struct.unpack(">HHB", body[:5])
            self.requests.append((fc, addr, count))
            if not 1 <= count <= 123 or nbytes != 2 * count:
                raise ModbusException(ILLEGAL_VALUE)
            values = list(struct.unpack(f">{count}H", body[5 : 5 + nbytes]))
            self._write_holding(addr, values)
            return bytes([fc]) + body[:4]
        self.requests.append((fc, 0, 0))
        raise ModbusException(ILLEGAL_FUNCTION)

    def _read_coils(self, addr: int, count: int) -> bytes:
        if not 1 <= count <= 2000:
            raise ModbusException(ILLEGAL_VALUE)
        self._check_coils(addr, count)
        data = pack_bits([self.ports[addr + i].relay for i in range(count)])
        return bytes([1, len(data)]) + data

    def _read_registers(self, fc: int, addr: int, count: int) -> bytes:
        if not 1 <= count <= 125:
            raise ModbusException(ILLEGAL_VALUE)
        if fc == 3:
            if addr + count > len(self.holding):
                raise ModbusException(ILLEGAL_ADDRESS)
            values = self.holding[addr : addr + count]
        else:
            values = self.input_registers(addr, count)
        return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *values)

    def _check_coils(self, addr: int, count: int) -> None:
        if addr + count > self.ports_n:
            raise ModbusException(ILLEGAL_ADDRESS)

    def _set_relays(self, addr: int, bits: list[bool]) -> None:
        # All or nothing: refuse before changing anything if one port cannot close.
        for i, bit in enumerate(bits):
            if bit and self.ports[addr + i].fault != F_NONE:
                raise ModbusException(DEVICE_FAILURE)
        for i, bit in enumerate(bits):
            self._set_relay(addr + i + 1, bit)

    def _set_relay(self, number: int, closed: bool) -> None:
        p = self.port(number)
        self.writes.append((self.now, 5, number - 1, int(closed)))
        if closed:
            if p.fault != F_NONE:
                raise ModbusException(DEVICE_FAILURE)
            if not p.relay:
                p.relay = True
                p.energy_wh = 0.0  # a new session starts
                p.no_load_s = 0.0
        elif p.relay:
            self._open(p)

    def _write_holding(self, addr: int, values: list[int]) -> None:
        if addr + len(values) > len(self.holding):
            raise ModbusException(ILLEGAL_ADDRESS)
        for i, value in enumerate(values):
            if addr + i == 3 and value not in (ESTOP, CLEAR):
                raise ModbusException(ILLEGAL_VALUE)
        for i, value in enumerate(values):
            reg = addr + i
            self.writes.append((self.now, 6, reg, value))
            if reg == 3:
                self._command(value)
            else:
                self.holding[reg] = value

    def _command(self, value: int) -> None:
        if value == ESTOP:
            self.estopped = True
            for p in self.ports:
                self._open(p)
                p.power_w = 0.0
        else:
            self.estopped = False
            self.failsafe_tripped = False
            for p in self.ports:
                p.fault = F_NONE
                p.forced_w = None


def _s16(value: int) -> int:
    return value & 0xFFFF


def _signed(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw
