"""The wire: one Modbus master (RTU line or TCP connection) behind a small face.

pymodbus is imported here and nowhere else, lazily, when a link is opened (STYLE §2). Its
errors become gatewayd errors once, here: a Modbus exception reply is ``ExceptionReply`` (the
device answered: do not retry blindly), silence is ``DeviceTimeout``, a reply that arrived but
failed its check is ``GarbledReply``, a lost port or socket is ``TransientError``.

One request at a time; the caller (``line.Line``) owns ordering and the inter-frame gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gatewayd.errors import DeviceTimeout, GatewayError, TransientError

# Bytes a reply carries besides its data: address, function, byte count, CRC (RTU).
_RTU_READ_OVERHEAD = 5


class ExceptionReply(GatewayError):
    """The device answered with a Modbus exception (01 function, 02 address, 03 value,
    04 device failure)."""

    def __init__(self, unit: int, function: int, code: int) -> None:
        self.unit = unit
        self.function = function
        self.code = code
        super().__init__(f"unit {unit}: exception {code:02d} to function {function}")


class GarbledReply(TransientError):
    """Bytes came back but not a valid reply (CRC, framing): worth a retry, worth counting."""


@dataclass
class LinkStats:
    requests: int = 0
    timeouts: int = 0
    garbled: int = 0
    exceptions: int = 0
    errors: int = 0


class Link(Protocol):
    """What the scheduler needs from a Modbus master."""

    stats: LinkStats
    #: The silence required between frames (3.5 characters on RTU, none on TCP).
    gap_seconds: float
    #: When the last bytes of a reply arrived (``time.monotonic()``; 0.0 before any): the
    #: silence runs from there, not from when the caller got round to them.
    heard_at: float

    def wire_seconds(self, request_bytes: int, reply_bytes: int) -> float: ...

    async def read_registers(
        self, unit: int, address: int, count: int, timeout: float, *, holding: bool = False
    ) -> list[int]: ...

    async def read_coils(
        self, unit: int, address: int, count: int, timeout: float
    ) -> list[bool]: ...

    async def write_coils(
        self, unit: int, address: int, values: Sequence[bool], timeout: float
    ) -> None: ...

    async def write_register(self, unit: int, address: int, value: int, timeout: float) -> None: ...

    async def broadcast_register(self, address: int, value: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LinkConfig:
    port: str | None
    baudrate: int
    parity: str
    host: str | None
    tcp_port: int

    @property
    def is_rtu(self) -> bool:
        return self.port is not None


class PymodbusLink:
    """A ``Link`` over pymodbus's async clients, RTU or TCP."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.stats = LinkStats()
        self._client: Any = None
        self._rx_bytes = 0  # bytes received since the last request: tells garbled from silent
        self.heard_at = 0.0
        if config.is_rtu:
            bits = 11 if config.parity in ("E", "O") else 10
            self._char = bits / config.baudrate
            self.gap_seconds = 0.00175 if config.baudrate > 19200 else 3.5 * self._char
        else:
            self._char = 0.0
            self.gap_seconds = 0.0

    def wire_seconds(self, request_bytes: int, reply_bytes: int) -> float:
        return (request_bytes + reply_bytes) * self._char + 2 * self.gap_seconds

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
            self.heard_at = time.monotonic()
        return data

    async def _connected(self) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        # pymodbus logs every timeout with a frame dump at error level; this driver reports
        # silence itself, once per change (charger.offline), so keep its log to real trouble.
        pmlog = logging.getLogger("pymodbus.logging")
        if pmlog.level == logging.NOTSET:
            pmlog.setLevel(logging.CRITICAL)
        cfg = self.config
        common: dict[str, Any] = {
            "timeout": 1.0,
            "retries": 0,  # retry policy is ours, per request type
            "reconnect_delay": 0,  # and so is reconnecting, with backoff
            "trace_packet": self._trace,
        }
        client: Any
        if cfg.port is not None:
            client = AsyncModbusSerialClient(
                cfg.port, baudrate=cfg.baudrate, parity=cfg.parity, **common
            )
        else:
            client = AsyncModbusTcpClient(cfg.host or "", port=cfg.tcp_port, **common)
        try:
            ok = await client.connect()
        except OSError as exc:
            raise TransientError(self._where(), f"cannot open: {exc}") from None
        if not ok:
            client.close()
            raise TransientError(self._where(), "cannot connect")
        # A silent slave on a shared link is normal here; never let pymodbus drop the link
        # for it (it closes TCP after retries+3 unanswered requests).
        client.ctx.max_until_disconnect = client.ctx.count_until_disconnect = 1 << 30
        self._client = client
        return client

    def _where(self) -> str:
        c = self.config
        return f"modbus {c.port}" if c.is_rtu else f"modbus {c.host}:{c.tcp_port}"

    async def _call(self, unit: int, timeout: float, method: str, *args: Any, **kw: Any) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException

        client = await self._connected()
        self.stats.requests += 1
        self._rx_bytes = 0
        # pymodbus reads its reply timeout from here on every request; the scheduler sets a
        # per-request value (wire time + allowance, shorter for a pile that went quiet).
        client.ctx.comm_params.timeout_connect = timeout
        try:
            async with asyncio.timeout(timeout + 1.0):  # pymodbus's own timeout, plus margin
                reply = await getattr(client, method)(*args, device_id=unit, **kw)
        except (TimeoutError, ModbusException, ConnectionException, OSError) as exc:
            if isinstance(exc, ConnectionException | OSError):
                self.stats.errors += 1
                client.close()
                self._client = None
                raise TransientError(self._where(), str(exc)) from None
            if self._rx_bytes:
                self.stats.garbled += 1
                raise GarbledReply(
                    f"unit {unit}", f"{self._rx_bytes} bytes, no valid reply"
                ) from None
            self.stats.timeouts += 1
            raise DeviceTimeout(f"unit {unit}", "no reply") from None
        if reply is not None and reply.isError():
            self.stats.exceptions += 1
            raise ExceptionReply(unit, reply.function_code & 0x7F, reply.exception_code)
        return reply

    async def read_registers(
        self, unit: int, address: int, count: int, timeout: float, *, holding: bool = False
    ) -> list[int]:
        method = "read_holding_registers" if holding else "read_input_registers"
        reply = await self._call(unit, timeout, method, address, count=count)
        if len(reply.registers) != count:
            self.stats.garbled += 1
            raise GarbledReply(f"unit {unit}", f"{len(reply.registers)} registers, not {count}")
        return list(reply.registers)

    async def read_coils(self, unit: int, address: int, count: int, timeout: float) -> list[bool]:
        reply = await self._call(unit, timeout, "read_coils", address, count=count)
        if len(reply.bits) < count:
            self.stats.garbled += 1
            raise GarbledReply(f"unit {unit}", f"{len(reply.bits)} coils, not {count}")
        return [bool(b) for b in reply.bits[:count]]  # pymodbus pads to whole bytes

    async def write_coils(
        self, unit: int, address: int, values: Sequence[bool], timeout: float
    ) -> None:
        if len(values) == 1:
            await self._call(unit, timeout, "write_coil", address, values[0])
        else:
            await self._call(unit, timeout, "write_coils", address, list(values))

    async def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        await self._call(unit, timeout, "write_register", address, value)

    async def broadcast_register(self, address: int, value: int) -> None:
        client = await self._connected()
        self.stats.requests += 1
        await client.write_register(address, value, device_id=0, no_response_expected=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def rtu_sizes(function: int, count: int) -> tuple[int, int]:
    """(request, reply) bytes of an RTU transaction, for timeouts and bus accounting."""
    if function in (3, 4):
        return 8, _RTU_READ_OVERHEAD + 2 * count
    if function == 1:
        return 8, _RTU_READ_OVERHEAD + (count + 7) // 8
    if function == 15:
        return 9 + (count + 7) // 8, 8
    if function == 16:
        return 9 + 2 * count, 8
    return 8, 8  # 05, 06
