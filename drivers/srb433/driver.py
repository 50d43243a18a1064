"""The ``serial`` driver: one SRB-433 smoke-alarm receiver and the detectors paired to it.

It reads frames from the receiver, drops the radio's repeats, turns frames from configured
detectors into ``smoke.*`` events, watches that the receiver still answers (PING), and sends
the receiver's own commands (pair, hush all, remove). It survives the receiver being unplugged
and plugged back: the port is reopened with capped, jittered backoff and the driver carries
on. It must never block the event loop and never crash on what arrives over the wire.

Why ``loop.add_reader`` and not blocking reads in the executor: the port is opened
non-blocking, so a read never waits; the loop wakes us only when bytes are there. An executor
thread parked in ``read()`` cannot be cancelled: on shutdown or unplug it holds a thread and a
descriptor that another coroutine then has to close under it, which is racy. At 9600 baud
(under 1 kB/s) the callback is tiny, and no thread means no locking around the decoder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from drivers.srb433 import events as ev
from drivers.srb433 import profile
from drivers.srb433.codec import Decoder, Deduplicator, Frame, encode
from drivers.srb433.family import ADDRESS
from drivers.srb433.interconnect import HUSH_ALL, Interconnect
from drivers.srb433.transport import SerialTransport, Transport
from gatewayd import ticks
from gatewayd.backoff import Backoff
from gatewayd.driver import (
    BusConfig,
    Check,
    Commands,
    DeviceConfig,
    Driver,
    DriverContext,
    Seen,
)
from gatewayd.errors import ConfigError, DeviceError, TransientError
from gatewayd.model import Action, Event, Severity
from gatewayd.schema import Baud, Float, Int, Schema, Str

RECEIVER = 0  # DEVICE of frames to and from the receiver itself
STATUS, PAIRED = 0x70, 0x71
PING, PAIR, REMOVE = 0x80, 0x81, 0x83
PORT_CHECK_SECONDS = 1.0
RECONNECT_FIRST_SECONDS = 0.5
#: A receiver not reached in this long after the driver started counts as offline; earlier
#: failures are the start itself (a port another process is still letting go of).
STARTUP_GRACE_SECONDS = 3.0


class SerialDriver(Driver):
    """SRB-433 receiver on a serial port; devices of kind ``smoke`` are its detectors."""

    name: ClassVar[str] = "serial"
    commands: ClassVar[Commands] = {"scan": {"serial": "drivers.srb433.scan:scan_serial"}}
    bus_methods: ClassVar[Mapping[str, Schema]] = {
        "pair": {"seconds": Int(1, 255, doc="how long the receiver accepts new detectors")},
        "hush_all": {},
        "remove": {"address": ADDRESS},
    }
    bus_schema: ClassVar[Schema] = {
        "port": Str(
            expected="a serial device path",
            doc="The receiver's serial port; a /dev/serial/by-id/ path survives replugging.",
        ),
        "baudrate": Baud(1200, 115200, 9600, doc="Line speed; the SRB-433 talks 9600 8N1."),
        "ping_seconds": Float(0.05, 3600, 60.0, doc="How often to check the receiver answers."),
        "ping_timeout": Float(
            0.05, 30, 2.0, doc="Seconds to wait for the answer (the receiver needs 0.1 s)."
        ),
        "dedup_seconds": Float(
            1, 60, 5.0, doc="Copies of one event within this window count once (radio repeats)."
        ),
        "reconnect_max_seconds": Float(
            0.1, 600, 30.0, doc="Upper bound of the wait between attempts to reopen the port."
        ),
    }

    def __init__(
        self,
        bus: BusConfig,
        devices: Sequence[DeviceConfig],
        ctx: DriverContext,
        *,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(bus, devices, ctx)
        settings = bus.settings
        self.port: str = settings["port"]
        self._ping_seconds: float = settings["ping_seconds"]
        self._ping_timeout: float = settings["ping_timeout"]
        self._reconnect_max: float = settings["reconnect_max_seconds"]
        self._transport = transport or SerialTransport(self.port, settings["baudrate"])
        self._by_address: dict[int, str] = {}
        for dev in devices:
            address = int(dev.settings["address"], 16)
            other = self._by_address.setdefault(address, dev.id)
            if other != dev.id:
                raise ConfigError(
                    f"bus {bus.name}",
                    f"devices.{dev.id}.address",
                    f"a unique address ({other} has it too)",
                )
        self._decoder = Decoder()
        self._dedup = Deduplicator(settings["dedup_seconds"])
        self._unknown: set[int] = set()
        self._heard: dict[str, float] = {}  # device id -> Unix time of its last frame
        self._ping_misses = 0
        self._seq = 0
        self._online: bool | None = None  # None until we first know
        self._started = time.monotonic()
        self._connected = False
        self._answered = False  # the receiver answered during this connection
        self._lost: asyncio.Future[None] | None = None
        self._fd = -1
        self._status_waiter: asyncio.Future[Frame] | None = None
        self.receiver: dict[str, Any] = {"online": None, "port": self.port}
        self.interconnect = Interconnect(
            lambda type_, payload: self._send(type_, RECEIVER, payload),
            self._publish_receiver,
            ctx.log,
            bus.name,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(min(RECONNECT_FIRST_SECONDS, self._reconnect_max), self._reconnect_max)
        while True:
            reason = "closed"
            try:
                await self._connection()
            except* TransientError as group:
                reason = str(group.exceptions[0])
            if self._answered:  # the link worked: start the backoff over
                backoff.reset()
                self._answered = False
            self._set_online(False, reason)
            delay = backoff.next()
            self.ctx.log.debug("bus %s: reopening %s in %.1f s", self.bus.name, self.port, delay)
            await asyncio.sleep(delay)

    async def _connection(self) -> None:
        """One open port, until it fails. Only ever ends by raising."""
        loop = asyncio.get_running_loop()
        fd = self._fd = self._transport.open()
        self._decoder.reset()
        self._lost = loop.create_future()
        self._connected, self._answered = True, False
        self.interconnect.on_connection()
        loop.add_reader(fd, self._on_readable)
        self.ctx.log.info("bus %s: opened %s", self.bus.name, self.port)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._until_lost(), name=f"{self.bus.name}:reader")
                tg.create_task(self._pinger(), name=f"{self.bus.name}:ping")
                tg.create_task(self._watch_port(), name=f"{self.bus.name}:watch")
                tg.create_task(self.interconnect.run(), name=f"{self.bus.name}:sound")
        finally:
            self._connected = False
            loop.remove_reader(fd)
            self._transport.close()

    async def _until_lost(self) -> None:
        assert self._lost is not None
        await self._lost

    def _link_lost(self, exc: BaseException) -> None:
        # Stop watching at once: a hung-up descriptor stays readable and would spin the loop.
        asyncio.get_running_loop().remove_reader(self._fd)
        if self._lost is not None and not self._lost.done():
            self._lost.set_exception(exc)

    async def _watch_port(self) -> None:
        # Not every unplug hangs up the open descriptor; a path that now names another device
        # (or nothing) means ours is gone.
        while True:
            await ticks.tick(PORT_CHECK_SECONDS)  # with the daemon's other 1 s loops
            if self._transport.vanished():
                raise TransientError(f"serial {self.port}", "device path vanished")

    async def _pinger(self) -> None:
        while True:
            # One retry: a noise burst on the line can eat a single answer.
            answered = await self._ping() or await self._ping()
            self._set_online(answered, "no answer to ping")
            # Link quality for installers: a noisy or failing receiver shows as growing counts.
            counts = {"bad_crc": self._decoder.bad_crc, "bad_len": self._decoder.bad_len}
            if any(self.receiver.get(k) != v for k, v in counts.items()):
                self._publish_receiver(**counts)
            await ticks.tick(self._ping_seconds)

    async def _ping(self) -> bool:
        waiter = asyncio.get_running_loop().create_future()
        self._status_waiter = waiter
        self._send(PING, RECEIVER)
        try:
            async with asyncio.timeout(self._ping_timeout):
                await waiter
        except TimeoutError:
            self._ping_misses += 1
            return False
        finally:
            self._status_waiter = None
        return True

    def stats(self) -> Mapping[str, float]:
        d = self._decoder
        return {
            "requests_total": d.frames,  # frames received: the receiver speaks, we listen
            "errors_total": d.bad_crc + d.bad_len,
            "timeouts_total": self._ping_misses,
        }

    def last_seen(self) -> Mapping[str, float]:
        return dict(self._heard)

    @classmethod
    def check_online(
        cls, bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
    ) -> Iterator[Check]:
        from drivers.srb433.check import check_online

        return check_online(bus, devices, seen)

    # -- receiver commands -------------------------------------------------------------------

    async def pair(self, seconds: int) -> int:
        """Open pair mode for ``seconds`` (1..255); joins arrive as ``gateway.detector_paired``.
        Returns the host SEQ used."""
        if not 1 <= seconds <= 255:
            raise DeviceError(self.ctx.gateway_id, "bad_args", "pair seconds must be 1..255")
        return self._send(PAIR, RECEIVER, bytes((seconds,)))

    async def hush_all(self) -> int:
        """Silence every detector's sounder for 60 s. Does not clear any alarm."""
        return self._send(HUSH_ALL, RECEIVER)

    async def remove(self, address: int | str) -> int:
        """Make the receiver forget the detector ``address`` (int or 8 hex digits)."""
        try:
            value = int(ADDRESS.convert(address), 16) if isinstance(address, str) else address
        except ValueError:
            value = -1
        if not 0 < value <= 0xFFFFFFFF:
            raise DeviceError(self.ctx.gateway_id, "bad_args", f"not a detector id: {address!r}")
        return self._send(REMOVE, value)

    async def execute_batch(
        self, actions: Sequence[Action]
    ) -> list[Mapping[str, Any] | BaseException]:
        """The detectors' fire actions (``sound``, ``hush``): one frame for the whole batch."""
        try:
            done: Mapping[str, Any] | BaseException = self.interconnect.execute(actions)
        except (DeviceError, TransientError) as exc:
            done = exc
        return [done] * len(actions)

    async def execute(self, action: Action) -> Mapping[str, Any]:
        return self.interconnect.execute([action])

    def _send(self, type_: int, device: int, payload: bytes = b"") -> int:
        if not self._connected:
            raise TransientError(f"serial {self.port}", "receiver not connected")
        self._seq = (self._seq + 1) & 0xFF
        self._transport.write(encode(Frame(type_, device, self._seq, payload)))
        return self._seq

    # -- receiving ---------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self._transport.read()
            if not data:
                return
            now, mono = time.time(), time.monotonic()
            for frame in self._decoder.feed(data):
                self._on_frame(frame, now, mono)
        except Exception as exc:  # noqa: BLE001 - it must reach run(), not the loop's log
            self._link_lost(exc)

    def _on_frame(self, frame: Frame, now: float, mono: float) -> None:
        if frame.device == RECEIVER:
            # The receiver's own frames come over the wire, not the radio: never repeated.
            self._on_receiver_frame(frame, now)
            return
        if not self._dedup.accept(frame, mono):
            return
        device_id = self._by_address.get(frame.device)
        if device_id is None:
            self._on_unknown(frame, now)
            return
        self._heard[device_id] = now
        try:
            event = profile.frame_to_event(frame, device_id, now)
        except DeviceError as exc:
            self.ctx.log.warning("bus %s: dropped a frame: %s", self.bus.name, exc)
            return
        self.ctx.emit(event)
        self.ctx.publish_state(device_id, profile.state_update(event))
        if event.type == ev.HEARTBEAT:
            self.ctx.publish_telemetry(
                device_id,
                {"battery_mv": event.data["battery_mv"], "rssi_dbm": event.data["rssi_dbm"]},
            )

    def _on_unknown(self, frame: Frame, now: float) -> None:
        if frame.device in self._unknown:
            return
        self._unknown.add(frame.device)
        address = profile.address_hex(frame.device)
        kind = profile.KINDS.get(frame.type)
        self.ctx.log.warning(
            "bus %s: detector %s is paired to the receiver but not configured",
            self.bus.name,
            address,
        )
        self._emit(
            ev.UNKNOWN_DETECTOR,
            "warning",
            {"address": address, "first_type": kind.event if kind else f"{frame.type:#04x}"},
            now,
        )

    def _on_receiver_frame(self, frame: Frame, now: float) -> None:
        if frame.type == STATUS and len(frame.payload) >= 3:
            waiter = self._status_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            self._answered = True
            self._set_online(True, "answered")
            if self.receiver.get("paired") != frame.payload[2]:
                self._publish_receiver(paired=frame.payload[2])
            self.interconnect.on_status(int.from_bytes(frame.payload[:2], "big"))
        elif frame.type == PAIRED and len(frame.payload) >= 5:
            new = int.from_bytes(frame.payload[:4], "big")
            address = profile.address_hex(new)
            configured = new in self._by_address
            self.ctx.log.info("bus %s: detector %s paired", self.bus.name, address)
            self._emit(
                ev.DETECTOR_PAIRED,
                "info",
                {"address": address, "model": frame.payload[4], "configured": configured},
                now,
            )
        else:
            self.ctx.log.warning(
                "bus %s: unexpected receiver frame TYPE %#04x (%d payload bytes)",
                self.bus.name,
                frame.type,
                len(frame.payload),
            )

    # -- receiver health ---------------------------------------------------------------------

    def _set_online(self, online: bool, reason: str) -> None:
        previous = self._online
        if previous == online:
            return
        starting = time.monotonic() - self._started < STARTUP_GRACE_SECONDS
        if previous is None and not online and starting:
            self.ctx.log.debug("bus %s: not reached yet (%s)", self.bus.name, reason)
            return
        self._online = online
        if online:
            self.ctx.log.info("bus %s: receiver on %s answers", self.bus.name, self.port)
            # Also at first contact: it ends a receiver_offline alarm from before a restart.
            self._emit(ev.RECEIVER_ONLINE, "info", {}, time.time())
        else:
            self.ctx.log.warning("bus %s: receiver offline: %s", self.bus.name, reason)
            self._emit(ev.RECEIVER_OFFLINE, "warning", {"reason": reason}, time.time())
        self._publish_receiver(online=online)

    def _publish_receiver(self, **changes: Any) -> None:
        self.receiver.update(changes)
        self.ctx.publish_state(
            self.ctx.gateway_id, {f"receiver.{self.bus.name}": dict(self.receiver)}
        )

    def _emit(self, type_: str, severity: Severity, data: dict[str, Any], now: float) -> None:
        data = {"bus": self.bus.name, "port": self.port, **data}
        self.ctx.emit(Event(self.ctx.gateway_id, type_, severity, data, ts=now))
