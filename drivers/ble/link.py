"""One DL-B2 lock's link: keep it connected, turn its notifications into events, carry out
commands with the challenge/MAC/ACK exchange.

The transport is bleak (any backend); frames go through ``protocol``, what the lock says
through ``report``. A link never reports a command as done without the lock's ACK with the
same SEQ; a link lost before that ACK is retried once within the caller's deadline and is
otherwise a ``DeviceTimeout``. A lock is reached by its advertisements or, when BlueZ already
holds it connected (a gateway killed mid-connection), through that link (``held``). The
device key is held here and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDeviceNotFoundError, BleakError

from drivers.ble import protocol as p
from drivers.ble.answers import Answers, LinkLost
from drivers.ble.held import HeldLinks
from drivers.ble.report import LockReport
from gatewayd.backoff import Backoff
from gatewayd.driver import DriverContext
from gatewayd.errors import DeviceError, DeviceTimeout

log = logging.getLogger(__name__)

#: A sighting this long after the previous one means the lock was away (out of range,
#: unpowered): reconnect at once instead of finishing the backoff.
RETURN_GAP_SECONDS = 3.0
#: Connection failures back off from this, doubling up to the cap, with jitter.
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 30.0
#: Waiting for bleak to hang up (it releases a D-Bus connection) is bounded by this.
CLOSE_TIMEOUT = 5.0
#: While no advert comes, BlueZ's connected devices are looked at this often (a dictionary
#: lookup in bleak's copy of BlueZ's object tree: no radio, no D-Bus round trip).
HELD_CHECK_SECONDS = 1.0
#: A STATUS asked because the lock moved without saying where to waits for this long a lull
#: in commands: a state refresh must never hold up a door being opened.
REFRESH_LULL = 0.25


@dataclass(frozen=True)
class LinkSettings:
    device: str
    address: str
    key: bytes = field(repr=False)  # never logged
    adapter: str
    backend: type[BaseBleakClient] | None
    keepalive: float
    scan_seconds: float
    connect_timeout: float


class LockLink:
    """The gateway's side of one lock. ``run`` keeps it connected; ``command`` uses it."""

    def __init__(
        self,
        settings: LinkSettings,
        ctx: DriverContext,
        slots: asyncio.Semaphore,
        held: HeldLinks | None = None,
    ) -> None:
        self.s = settings
        self.ctx = ctx
        self.slots = slots
        self.held = held
        self.report = LockReport(settings.device, ctx)
        self.device: BLEDevice | None = None
        self.seen_at = 0.0
        self.writes = self.errors = self.timeouts = 0  # commands sent, refused/failed, unanswered
        self._client: BleakClient | None = None
        self._sighted = asyncio.Event()
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._nudge = asyncio.Event()  # wakes the upkeep loop: link lost, or a STATUS due
        self._cmd_lock = asyncio.Lock()
        self._answers = Answers()
        self._seq = random.randrange(0x10000)
        self._last_io = 0.0
        self._commands = 0  # callers' commands in progress
        self._lull_from = 0.0  # monotonic time before which no state refresh is asked

    @property
    def malformed(self) -> int:
        return self.report.malformed

    @property
    def heard_at(self) -> float:
        return self.report.heard_at

    # -- advertisements -------------------------------------------------------------------

    def saw(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """One advertisement of this lock (from the bus's scanner)."""
        now = time.monotonic()
        away = now - self.seen_at > RETURN_GAP_SECONDS
        self.device, self.seen_at = device, now
        self._sighted.set()
        connected = self._up.is_set()
        if self.report.advert(adv, connected) or (away and not connected):
            # Events happened that this gateway did not hear: reconnect now and ask STATUS.
            self._wake.set()

    async def _locate(self, timeout: float) -> BLEDevice | None:
        """The lock's BLEDevice: seen within ``scan_seconds``, held connected by BlueZ (a
        lock with a central does not advertise), or seen within ``timeout``; else None."""
        if self.device is not None and time.monotonic() - self.seen_at < self.s.scan_seconds:
            return self.device
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._sighted.clear()
        while True:
            if self.held is not None and (device := await self.held.find(self.s.address)):
                return device
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, HELD_CHECK_SECONDS)):
                    await self._sighted.wait()
                return self.device

    # -- connection upkeep ----------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_CAP)
        absent_logged = False
        self.report.publish({"connected": False})
        while True:
            device = await self._locate(self.s.scan_seconds)
            if device is None:
                if not absent_logged:
                    self.ctx.log.warning(
                        "%s: lock %s not seen on %s in %.0f s of scanning; out of range or unpowered?",
                        self.s.device,
                        self.s.address,
                        self.s.adapter,
                        self.s.scan_seconds,
                    )
                    absent_logged = True
                continue
            absent_logged = False
            if device is not self.device:
                self.ctx.log.info(
                    "%s: lock %s not advertising but held connected by BlueZ; using that link",
                    self.s.device,
                    self.s.address,
                )
            self._wake.clear()
            try:
                async with self.slots:
                    await self._open(device)
                    backoff.reset()
                    await self._serve()
            except (BleakError, TimeoutError, OSError, EOFError, LinkLost, DeviceTimeout) as exc:
                if isinstance(exc, BleakDeviceNotFoundError):
                    self.device = None  # BlueZ forgot it; wait for a fresh sighting
                self.ctx.log.info("%s: link down (%s)", self.s.device, _describe(exc))
            except Exception:
                # A surprise from the BLE stack must not end the bus's other locks: report it
                # and reconnect with backoff like any other failure.
                self.ctx.log.exception("%s: unexpected error on the link", self.s.device)
            finally:
                await self._close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next()):
                    await self._wake.wait()

    async def _open(self, device: BLEDevice) -> None:
        self._lost.clear()
        client = BleakClient(
            device,
            disconnected_callback=self._on_disconnected,
            timeout=self.s.connect_timeout,
            bluez={"adapter": self.s.adapter},
            backend=self.s.backend,
        )
        self._client = client
        async with asyncio.timeout(self.s.connect_timeout):
            await client.connect()
            # The lock forgets subscriptions with the link: enable them on every connection.
            await client.start_notify(p.EVENTS_UUID, self._on_notify)
        # Resynchronise state (and the event counter) after any time away, before anyone
        # else may use the link.
        try:
            await self._status_now(client)
        except DeviceError as exc:  # bad_mac: a wrong key file, which no reconnecting fixes
            hint = "; is key_file the key of this lock?" if exc.code == "bad_mac" else ""
            what = (self.s.device, self.s.address, exc.code, hint)
            self.ctx.log.warning("%s: lock %s refused STATUS (%s)%s", *what)
        self._up.set()
        self.report.publish({"connected": True})
        self.ctx.log.info("%s: connected to %s", self.s.device, self.s.address)

    async def _serve(self) -> None:
        """Hold the link until it drops. A STATUS about once a minute keeps the lock from
        hanging up on an idle central (it does after 120 s); one is also asked, in a lull
        between commands, when the lock moved without saying where to."""
        while True:
            if self._lost.is_set():
                return
            due = self._status_due()
            if due <= 0 and self._client is not None:
                try:
                    await self._status_now(self._client)
                except DeviceError as exc:  # busy or jammed: the link itself is fine
                    self.ctx.log.info("%s: STATUS refused (%s)", self.s.device, exc.code)
                    self._last_io = time.monotonic()  # a gatt_error has no ACK to set it
                    self._lull_from = self._last_io + REFRESH_LULL
                continue
            self._nudge.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due):
                    await self._nudge.wait()

    def _status_due(self) -> float:
        """Seconds until the upkeep loop asks STATUS."""
        now = time.monotonic()
        due = self._last_io + self.s.keepalive - now
        if self.report.unsure and not self._commands:
            due = min(due, self._lull_from - now)
        return due

    async def _status_now(self, client: BleakClient) -> None:
        """STATUS on the upkeep loop's own link: no waiting for a reconnection (that loop is
        the one that would make it) and no retry; a lost link ends the connection."""
        deadline = asyncio.get_running_loop().time() + self.s.connect_timeout
        await self._exchange(client, p.Op.STATUS, 0, deadline)

    async def _close(self) -> None:
        self._up.clear()
        self._answers.fail()
        client, self._client = self._client, None
        if client is not None:
            # Also after a remote hang-up: it releases the client's D-Bus connection.
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.disconnect()
            except (BleakError, TimeoutError, OSError, EOFError) as exc:
                log.debug("%s: disconnect: %r", self.s.device, exc)
        self.report.publish({"connected": False})

    def _on_disconnected(self, client: BleakClient) -> None:
        if client is self._client:
            self._lost.set()
            self._nudge.set()
            self._up.clear()
            self._answers.fail()

    # -- notifications ----------------------------------------------------------------------

    def _on_notify(self, char: BleakGATTCharacteristic, data: bytearray) -> None:
        record = self.report.notification(bytes(data))
        if record is not None:
            self._answers.deliver(record)
        elif self.report.unsure:
            self._nudge.set()  # the upkeep loop asks STATUS once commands pause

    # -- commands -------------------------------------------------------------------------

    async def command(
        self, op: p.Op, arg: int, timeout: float, ready: Awaitable[None] | None = None
    ) -> tuple[p.Ack, p.Status | None]:
        """Send one command and return its ok ACK (and the STATUS for a status request).
        ``ready`` (see ``Action.ready``) is awaited after the challenge is read and before
        the command is written: the wait overlaps the radio round trip.

        Raises ``DeviceError`` for a refusal (code from the ACK, or ``not_found``) and
        ``DeviceTimeout`` when no ACK came in time.
        """
        self._commands += 1
        try:
            return await self._command(op, arg, timeout, ready)
        finally:
            self._commands -= 1
            self._lull_from = time.monotonic() + REFRESH_LULL
            self._nudge.set()

    async def _command(
        self, op: p.Op, arg: int, timeout: float, ready: Awaitable[None] | None
    ) -> tuple[p.Ack, p.Status | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in (1, 2):
            client = await self._ready(deadline)
            try:
                return await self._exchange(client, op, arg, deadline, ready)
            except LinkLost:
                # Not acknowledged, so not known to be done. Every DL-B2 command is safe to
                # repeat (unlock restarts its timer), so try once more on a fresh link.
                if attempt == 2 or deadline - loop.time() < 0.5:
                    self.timeouts += 1
                    raise DeviceTimeout(
                        self.s.device, f"link lost before the lock acknowledged {op.name}"
                    ) from None
                self.ctx.log.info("%s: link lost during %s; retrying", self.s.device, op.name)
        raise AssertionError("unreachable")

    async def _ready(self, deadline: float) -> BleakClient:
        """The connected client, waiting for the upkeep loop to (re)connect if need be."""
        if self._up.is_set() and self._client is not None:
            return self._client
        self._wake.set()  # cut a reconnect backoff short: someone is waiting at the door
        loop = asyncio.get_running_loop()
        if await self._locate(min(self.s.scan_seconds, deadline - loop.time())) is None:
            raise DeviceError(
                self.s.device,
                "not_found",
                f"lock {self.s.address} not seen on {self.s.adapter}; out of range or unpowered?",
            )
        try:
            async with asyncio.timeout_at(deadline):
                while not (self._up.is_set() and self._client is not None):
                    await self._up.wait()
                    await asyncio.sleep(0)
        except TimeoutError:
            raise DeviceTimeout(self.s.device, "could not connect to the lock in time") from None
        return self._client

    async def _exchange(
        self,
        client: BleakClient,
        op: p.Op,
        arg: int,
        deadline: float,
        ready: Awaitable[None] | None = None,
    ) -> tuple[p.Ack, p.Status | None]:
        """One challenge, one command, its ACK; counted for the metrics endpoint. Whether
        the lock takes our key (``key_ok``: an ok ACK, or bad_mac) goes into its state."""
        try:
            answer = await self._transact(client, op, arg, deadline, ready)
        except DeviceTimeout:
            self.timeouts += 1
            raise
        except DeviceError as exc:
            self.errors += 1
            if exc.code == "bad_mac":
                self.report.publish({"key_ok": False})
            raise
        self.report.publish({"key_ok": True})
        return answer

    async def _transact(
        self,
        client: BleakClient,
        op: p.Op,
        arg: int,
        deadline: float,
        ready: Awaitable[None] | None,
    ) -> tuple[p.Ack, p.Status | None]:
        try:
            async with asyncio.timeout_at(deadline), self._cmd_lock:
                # One command at a time per lock: a challenge is good for one command.
                challenge = await client.read_gatt_char(p.CHALLENGE_UUID)
                self._seq = seq = (self._seq + 1) & 0xFFFF
                with self._answers.expect(seq, op == p.Op.STATUS) as (ack_fut, status_fut):
                    frame = p.build_command(self.s.key, bytes(challenge), op, seq, arg)
                    if ready is not None:  # nothing moves before this (a timeout here must
                        await asyncio.shield(ready)  # not cancel the sync it waits for)
                    self.writes += 1
                    await client.write_gatt_char(p.COMMAND_UUID, frame, response=True)
                    ack = await ack_fut
                    self._last_io = time.monotonic()  # any answer restarts the lock's idle timer
                    if ack.result != 0:
                        raise DeviceError(self.s.device, ack.code, f"{op.name} refused by the lock")
                    status = await status_fut if status_fut is not None else None
                return ack, status
        except TimeoutError:
            raise DeviceTimeout(self.s.device, f"no ACK for {op.name} in time") from None
        except (BleakError, EOFError, OSError) as exc:
            # A GATT call failing because the link went down is a lost link. bleak's
            # disconnect callback may trail the failed reply by a moment, or come first and
            # get the client closed under the call (the BlueZ backend then fails the call with
            # the D-Bus connection's EOFError).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.3):
                    await self._lost.wait()
            if self._lost.is_set() or not client.is_connected:
                raise LinkLost from exc
            raise DeviceError(self.s.device, "gatt_error", _describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
