"""The ``ble`` driver: DL-B2 entrance locks on one Bluetooth adapter.

One scanner per adapter follows the locks' advertisements; one ``LockLink`` per lock keeps a
connection (sharing the adapter's connection slots) and carries out actions. A lock BlueZ
already holds connected (left by a gateway that was killed) is reached through that link
(``held``). bleak is imported only when the driver is instantiated, so loading the config
schema stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.ble.family import DoorFamily
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
from gatewayd.model import Action
from gatewayd.schema import Field, Float, Int, Schema, Str, validate

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from drivers.ble.link import LockLink

BACKEND_PATTERN = r"([A-Za-z_][\w.]*:[A-Za-z_]\w*)?"
SCANNER_STOP_TIMEOUT = 5.0
#: The STATUS that confirms a lock or hold-open gets at least this long, whatever of the
#: action's deadline the command itself used.
CONFIRM_MIN_SECONDS = 1.0


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _backend_field(kind: str, doc: str) -> Field:
    """ "package.module:Class" naming a bleak backend class, checked when the config loads
    (only a configured backend is imported); empty means the platform's own."""

    def convert(v: Any) -> str:
        if not isinstance(v, str) or not re.fullmatch(BACKEND_PATTERN, v):
            raise ValueError
        if v:
            try:
                cls = _import(v)
            except (ImportError, AttributeError):
                raise ValueError from None
            if not isinstance(cls, type):
                raise ValueError
        return v

    expected = f'"package.module:Class" naming an importable bleak {kind} backend, or ""'
    return Field(expected, convert, "", doc)


class BleDriver(Driver):
    #: A command reads the lock's challenge while the command id is made durable, and
    #: awaits ``Action.ready`` before it writes (drivers/ble/link.py).
    overlaps_ready: ClassVar[bool] = True

    name = "ble"
    bus_schema: ClassVar[Schema] = {
        "adapter": Str(default="hci0", pattern=r"hci\d{1,2}", expected="an adapter name like hci0"),
        "backend": _backend_field("client", "another bleak backend, e.g. a Bluetooth proxy"),
        "scanner_backend": _backend_field("scanner", "the scanner half of that backend"),
        "scan_seconds": Float(
            1, 120, default=10.0, doc="how long a lock may go unseen before it counts as absent"
        ),
        "keepalive_seconds": Float(
            1, 110, default=60.0, doc="STATUS this often; the lock hangs up after 120 s idle"
        ),
        "max_connections": Int(1, 10, default=4, doc="connections the adapter holds at once"),
        "connect_timeout_seconds": Float(1, 60, default=10.0),
    }
    commands: ClassVar[Commands] = {"scan": {"ble": "drivers.ble.scan:scan_ble"}}

    @classmethod
    def check_host(cls) -> Iterator[Check]:
        from drivers.ble.check import check_host

        return check_host()

    @classmethod
    def check_online(
        cls, bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
    ) -> Iterator[Check]:
        from drivers.ble.check import check_online

        return check_online(bus, devices, seen)

    def __init__(self, bus: BusConfig, devices: Sequence[DeviceConfig], ctx: DriverContext) -> None:
        super().__init__(bus, devices, ctx)
        from drivers.ble.held import HeldLinks
        from drivers.ble.link import LinkSettings, LockLink

        cfg = bus.settings
        self.adapter: str = cfg.get("adapter", "hci0")
        self.backend = _load(cfg.get("backend", ""))
        self.scanner_backend = _load(cfg.get("scanner_backend", ""))
        self.slots = asyncio.Semaphore(cfg.get("max_connections", 4))
        held = HeldLinks(self.adapter, self.backend)
        self.links: dict[str, LockLink] = {}
        self._by_address: dict[str, LockLink] = {}
        self._timeouts: dict[str, float] = {}
        for dev in devices:
            settings = dev.settings
            link = LockLink(
                LinkSettings(
                    device=dev.id,
                    address=settings["address"].upper(),
                    key=settings["key_file"].value,
                    adapter=self.adapter,
                    backend=self.backend,
                    keepalive=cfg.get("keepalive_seconds", 60.0),
                    scan_seconds=cfg.get("scan_seconds", 10.0),
                    connect_timeout=cfg.get("connect_timeout_seconds", 10.0),
                ),
                ctx,
                self.slots,
                held,
            )
            self.links[dev.id] = link
            self._by_address[link.s.address] = link
            self._timeouts[dev.id] = settings.get("unlock_timeout_seconds", 4.0)

    async def run(self) -> None:
        for dev in self.devices.values():
            self.ctx.publish_state(
                dev.id, {"escape_route": dev.settings.get("escape_route", False)}
            )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._scan(), name=f"ble:{self.bus.name}:scan")
            for dev_id, link in self.links.items():
                tg.create_task(link.run(), name=f"ble:{dev_id}")

    async def _scan(self) -> None:
        from bleak import BleakScanner
        from bleak.exc import BleakError

        from drivers.ble.protocol import SERVICE_UUID

        scanner = BleakScanner(
            detection_callback=self._on_advert,
            service_uuids=[SERVICE_UUID],
            bluez={"adapter": self.adapter},
            backend=self.scanner_backend,
        )
        try:
            await scanner.start()
        except (BleakError, OSError) as exc:
            raise TransientError(
                f"ble:{self.bus.name}", f"cannot scan on {self.adapter}: {exc}"
            ) from exc
        try:
            await asyncio.Future()  # until cancelled
        finally:
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                async with asyncio.timeout(SCANNER_STOP_TIMEOUT):
                    await scanner.stop()

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        link = self._by_address.get(device.address.upper())
        if link is not None:
            link.saw(device, adv)

    def stats(self) -> Mapping[str, float]:
        links = self.links.values()
        return {
            "requests_total": sum(k.writes for k in links),  # commands written to locks
            "errors_total": sum(k.errors for k in links),
            "timeouts_total": sum(k.timeouts for k in links),
        }

    def last_seen(self) -> Mapping[str, float]:
        return {d: k.heard_at for d, k in self.links.items() if k.heard_at}

    async def execute(self, action: Action) -> Mapping[str, Any]:
        """Carry out one action; the lock's answer as a mapping:

        - ``status``: ``{"ack": "ok", "seq", "lock", "door", "battery_mv"}`` (the STATUS);
        - ``lock``, ``hold_open``: the same, the STATUS asked after the lock's ACK and
          saying ``locked`` / ``held_open`` (``seq`` is the moving command's); otherwise
          ``DeviceError`` ``not_locked`` / ``not_released``;
        - ``unlock``: ``{"ack": "ok", "seq", "seconds"}`` (no STATUS on the door's fast path).

        A refusal is a ``DeviceError`` with the lock's code (``bad_mac``, ``busy``,
        ``jammed``, ...) or ``not_found``; no answer in time is a ``DeviceTimeout``.
        """
        from drivers.ble.profile import CONFIRMED, status_state
        from drivers.ble.protocol import Op

        link = self.links.get(action.device)
        if link is None:
            raise DeviceError(action.device, "unknown_device", f"not on bus {self.bus.name}")
        spec = DoorFamily.actions.get(action.name)
        schema = spec.args if spec is not None else None
        if schema is None:
            known = ", ".join(DoorFamily.actions)
            raise DeviceError(action.device, "unsupported", f"no action {action.name!r} ({known})")
        try:
            args = validate(dict(action.args), schema, "action", action.name)
        except ConfigError as exc:
            raise DeviceError(action.device, "bad_args", str(exc)) from None
        ops = {"unlock": Op.UNLOCK, "lock": Op.LOCK, "hold_open": Op.HOLD_OPEN, "status": Op.STATUS}
        op, arg = ops[action.name], args.get("seconds", 0)
        timeout = self._timeouts[action.device]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ack, status = await link.command(op, arg, timeout, action.ready)
        out: dict[str, Any] = {"ack": "ok", "seq": ack.seq}
        if op == Op.UNLOCK:
            out["seconds"] = arg
        if op in CONFIRMED:
            # The ACK says the lock took the command; its STATUS says where the bolt is.
            left = max(deadline - loop.time(), CONFIRM_MIN_SECONDS)
            _, status = await link.command(Op.STATUS, 0, left)
        if status is not None:
            out.update(status_state(status))
        if op in CONFIRMED:
            want, code = CONFIRMED[op]
            if out.get("lock") != want:
                raise DeviceError(
                    action.device, code, f"lock reports {out.get('lock')!r} after {op.name}"
                )
        return out


def _load(spec: str) -> Any:
    """The backend class for ``spec`` (validated by the schema); None for the default."""
    return _import(spec) if spec else None
