"""Short, safe probes the CLI uses on site: is the SRB-433 receiver on this port, is there a
pile at this Modbus id, does the broker take our login, is the Bluetooth adapter there.

Probes only read or ask (PING, input registers, MQTT CONNECT then DISCONNECT); none switches a
relay or unlocks a door. Each has a short timeout and returns a result or raises ``ProbeError``
with one line for a person. Drivers are imported lazily: a missing one is ``DriverMissing``.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gatewayd.errors import GatewayError

if TYPE_CHECKING:
    from gatewayd.config import MqttConfig

PING, PAIR, STATUS, PAIRED = 0x80, 0x81, 0x70, 0x71


class ProbeError(GatewayError):
    """The probe could not say yes: one line of why."""


class DriverMissing(ProbeError):
    """The driver a probe needs is not installed (yet)."""


# -- SRB-433 receiver ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    port: str
    firmware: str
    paired: int


class ReceiverPort:
    """A serial port opened to talk SRB-433 frames: ping it, or put it in pair mode."""

    def __init__(self, port: str, baudrate: int = 9600) -> None:
        import serial

        from drivers.srb433.codec import Decoder

        self.port = port
        try:
            self.serial = serial.Serial(port, baudrate, timeout=0, exclusive=True)
        except (OSError, ValueError) as exc:
            text = str(exc)
            if "exclusively lock" in text or "Resource temporarily unavailable" in text:
                raise ProbeError(f"{port}: busy (held by another program: the daemon?)") from None
            if isinstance(exc, FileNotFoundError) or "No such file" in text:
                raise ProbeError(f"{port}: no such port") from None
            if "Inappropriate ioctl" in text:
                raise ProbeError(f"{port}: not a serial port") from None
            raise ProbeError(f"{port}: cannot open ({text})") from None
        self.decoder = Decoder()
        self._seq = 0

    def close(self) -> None:
        self.serial.close()

    def __enter__(self) -> ReceiverPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, type_: int, payload: bytes = b"") -> None:
        from drivers.srb433.codec import Frame, encode

        self._seq = (self._seq + 1) & 0xFF
        self.serial.write(encode(Frame(type_, 0, self._seq, payload)))

    def frames(self, seconds: float) -> Iterator[Any]:
        """Frames from the receiver itself (DEVICE 0) for ``seconds``."""
        deadline = time.monotonic() + seconds
        fd = self.serial.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ProbeError(f"{self.port}: read failed ({exc.strerror})") from None
            if not data:
                raise ProbeError(f"{self.port}: the device went away")
            for frame in self.decoder.feed(data):
                if frame.device == 0:
                    yield frame

    def ping(self, timeout: float = 0.5) -> Receiver | None:
        self.serial.reset_input_buffer()
        self.send(PING)
        for frame in self.frames(timeout):
            if frame.type == STATUS and len(frame.payload) >= 3:
                fw = int.from_bytes(frame.payload[:2], "big")
                return Receiver(self.port, f"{fw >> 8}.{fw & 0xFF}", frame.payload[2])
        return None

    def pair(
        self,
        seconds: int,
        on_join: Callable[[str, int], None],
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Pair mode for ``seconds``; ``on_join(address, model)`` for each detector, and
        ``tick()`` about once a second (a countdown)."""
        self.send(PAIR, bytes((seconds,)))
        deadline = time.monotonic() + seconds + 0.5
        while (left := deadline - time.monotonic()) > 0:
            tick()
            for frame in self.frames(min(left, 1.0)):
                if frame.type == PAIRED and len(frame.payload) >= 5:
                    on_join(f"{int.from_bytes(frame.payload[:4], 'big'):08X}", frame.payload[4])


def find_receiver(port: str, baudrate: int = 9600, timeout: float = 0.5) -> Receiver | None:
    with ReceiverPort(port, baudrate) as rp:
        # One retry: a noise burst can eat one answer (the driver does the same).
        return rp.ping(timeout) or rp.ping(timeout)


# -- Modbus piles --------------------------------------------------------------------------------


def modbus_link(
    port: str | None, baudrate: int, parity: str, host: str | None, tcp_port: int
) -> Any:
    try:
        from drivers.modbus.transport import LinkConfig, PymodbusLink
    except ImportError as exc:
        raise DriverMissing(f"the Modbus driver is not installed ({exc.name})") from None
    return PymodbusLink(LinkConfig(port, baudrate, parity, host, tcp_port))


async def identify_pile(link: Any, unit: int, timeout: float) -> dict[str, Any] | None:
    """Model, firmware and port count of the pile at ``unit``; None when nobody answers or
    the answer is not an EBC pile's."""
    from drivers.modbus.profiles import EBC

    try:
        regs = await link.read_registers(unit, 0, 3, timeout)
    except GatewayError:
        return None
    if regs[0] != EBC.model_id:
        return None
    return {
        "unit": unit,
        "model": "ebc",
        "firmware": f"{regs[1] >> 8}.{regs[1] & 0xFF}",
        "ports": regs[2],
    }


async def pile_summary(link: Any, unit: int, timeout: float = 1.0) -> dict[str, Any]:
    """The pile block and the summary block, decoded: what `gatewayd test` shows."""
    from drivers.modbus.profiles import EBC
    from drivers.modbus.readings import decode_pile, decode_summary

    try:
        base, count = EBC.pile_span()
        pile_regs = await link.read_registers(unit, base, count, timeout)
        pile = decode_pile(EBC, dict(enumerate(pile_regs, base)))
        base, count = EBC.summary_span()
        summary_regs = await link.read_registers(unit, base, count, timeout)
    except GatewayError as exc:
        raise ProbeError(f"unit {unit}: {exc}") from None
    if pile["model"] != EBC.model_id:
        raise ProbeError(f"unit {unit}: not an EBC pile (model {pile['model']:#06x})")
    summary = decode_summary(EBC, dict(enumerate(summary_regs, base)), pile["port_count"])
    from drivers.modbus.profiles import bits_named

    summary["status"] = bits_named(EBC.status_bits, summary.pop("status_bits"))
    return {**pile, **summary}


# -- broker --------------------------------------------------------------------------------------

CONNACK_CODES = {
    1: "the broker refused the MQTT protocol version",
    2: "the broker refused the client id",
    3: "the broker is unavailable",
    4: "bad username or password",
    5: "not authorized (check the username and the broker's ACL)",
}


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _connect_packet(client_id: str, username: str | None, password: bytes | None) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += len(password).to_bytes(2, "big") + password
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + (10).to_bytes(2, "big") + payload
    length, n = b"", len(body)
    while True:
        byte, n = n % 128, n // 128
        length += bytes((byte | (0x80 if n else 0),))
        if not n:
            break
    return b"\x10" + length + body


def check_broker(mqtt: MqttConfig, client_id: str, timeout: float = 5.0) -> str:
    """TCP connect, TLS handshake for mqtts, MQTT CONNECT with our credentials, DISCONNECT.
    Returns what worked; raises ProbeError with what did not and what to do."""
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        raw = socket.create_connection((mqtt.host, mqtt.port), timeout=timeout)
    except socket.gaierror:
        raise ProbeError(
            f"cannot resolve {mqtt.host}: check DNS and the uplink (4G/Ethernet)"
        ) from None
    except TimeoutError:
        raise ProbeError(
            f"no answer from {where} in {timeout:.0f} s: check the uplink and the firewall"
        ) from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where} ({exc.strerror or exc})") from None
    sock: socket.socket = raw
    try:
        sock.settimeout(timeout)
        if mqtt.tls:
            ctx = ssl.create_default_context(cafile=mqtt.ca_file)
            try:
                if mqtt.cert_file:
                    ctx.load_cert_chain(mqtt.cert_file, mqtt.key_file)
                sock = ctx.wrap_socket(raw, server_hostname=mqtt.host)
            except ssl.SSLCertVerificationError as exc:
                raise ProbeError(
                    f"TLS: the broker's certificate is not trusted ({exc.verify_message}); check mqtt.ca_file"
                ) from None
            except (ssl.SSLError, OSError) as exc:
                raise ProbeError(f"TLS handshake with {where} failed ({exc})") from None
        password = mqtt.password.value if mqtt.password else None
        sock.sendall(_connect_packet(client_id, mqtt.username, password))
        answer = b""
        while len(answer) < 4:
            chunk = sock.recv(4 - len(answer))
            if not chunk:
                raise ProbeError(
                    f"{where} closed the connection: is it an MQTT broker? (TLS port with mqtt://?)"
                )
            answer += chunk
        if answer[0] != 0x20:
            raise ProbeError(f"{where} did not answer like an MQTT broker")
        if answer[3]:
            raise ProbeError(CONNACK_CODES.get(answer[3], f"refused with code {answer[3]}"))
        sock.sendall(b"\xe0\x00")
    except TimeoutError:
        raise ProbeError(f"{where}: no MQTT answer in {timeout:.0f} s") from None
    except OSError as exc:
        raise ProbeError(f"{where}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return f"login accepted{' over TLS' if mqtt.tls else ''}"


# -- network and Bluetooth -----------------------------------------------------------------------


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        raise ProbeError("no answer") from None
    except OSError as exc:
        raise ProbeError(exc.strerror or str(exc)) from None


def adapter_present(adapter: str, timeout: float = 2.0) -> bool:
    """The kernel's view first; else ask BlueZ on the system bus (also what a fake BlueZ
    answers in tests)."""
    if os.path.exists(f"/sys/class/bluetooth/{adapter}"):
        return True
    import asyncio

    async def ask() -> bool:
        try:
            from dbus_fast import BusType
            from dbus_fast.aio import MessageBus
        except ImportError:
            return False
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            node = await bus.introspect("org.bluez", f"/org/bluez/{adapter}")
            return any(i.name == "org.bluez.Adapter1" for i in node.interfaces)
        finally:
            bus.disconnect()

    async def bounded() -> bool:
        async with asyncio.timeout(timeout):
            return await ask()

    try:
        return asyncio.run(bounded())
    except Exception:  # noqa: BLE001 - no bus, no BlueZ, no adapter: all mean "not present"
        return False
