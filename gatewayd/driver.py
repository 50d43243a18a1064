"""The face every device driver shows the core, and the face the core shows a driver.

A driver owns one bus (an RS-485 line, a serial receiver, a Bluetooth adapter) and the devices
on it. It turns wire bytes into Events through ``DriverContext`` and carries out Actions. It
knows nothing of MQTT or rules. What its devices *are* (their settings, actions and events) is
their family's (``gatewayd.family``); drivers and families are plugins: see ``gatewayd.plugins``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from gatewayd.model import Action, Event
from gatewayd.schema import Schema

#: The `gatewayd` subcommands a driver or a device family brings: group ("scan", "pair") ->
#: command name -> "module:attribute" of a click command. The module is imported only when the
#: command runs or a help lists it (``gatewayd.cli.plugged``), so ``gatewayd --help`` stays fast.
Commands = Mapping[str, Mapping[str, str]]
#: One line of `gatewayd check`: (what is checked, passed (None: a note), one line for a person).
Check = tuple[str, bool | None, str]


@dataclass(frozen=True)
class BusConfig:
    name: str
    driver: str
    settings: Mapping[str, Any]  # validated against the driver's bus_schema


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    kind: str
    bus: str
    settings: Mapping[str, Any]  # the family's typed Settings (a mapping of the same)


@dataclass(frozen=True)
class Seen:
    """What the running daemon sees, for `gatewayd check --all` (it holds the ports then)."""

    states: Mapping[str, Mapping[str, Any]]  # device id -> its retained state
    gateway: Mapping[str, Any]  # the gateway's own state: what drivers keep about their buses


class DriverContext(Protocol):
    """What the runtime offers a driver. All methods are cheap and never block."""

    gateway_id: str
    log: logging.Logger

    def emit(self, event: Event) -> None:
        """Hand one normalized event to the bus (rules, uplink, metrics)."""

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        """Merge ``state`` into the device's retained state."""

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        """Best-effort measurements (QoS 0)."""


class Driver(ABC):
    """Base of every driver. Subclasses set the class variables and implement ``run``."""

    #: The name a ``[[buses]]`` entry uses in ``driver = "..."``.
    name: ClassVar[str]
    #: Keys of a ``[[buses]]`` table besides ``name`` and ``driver``.
    bus_schema: ClassVar[Schema] = {}
    #: Families this driver carries that are not its own (a Zigbee bridge's smoke detectors),
    #: with the keys their devices need on this bus. A family's own drivers (``Family.buses``)
    #: use the family's ``Settings`` and declare nothing here.
    device_schemas: ClassVar[Mapping[str, Schema]] = {}
    #: Methods of the bus itself offered on the local control socket (a receiver's pair
    #: mode), with the schema of their arguments; each is an async method of the driver.
    bus_methods: ClassVar[Mapping[str, Schema]] = {}
    #: True when ``execute`` awaits ``Action.ready`` itself before it actuates (and may talk
    #: to the device before); otherwise the runtime waits for it before calling ``execute``.
    overlaps_ready: ClassVar[bool] = False
    #: Its `gatewayd` subcommands (``Commands``): a bus scan, ``{"scan": {"modbus":
    #: "drivers.modbus.scan:scan_modbus"}}``.
    commands: ClassVar[Commands] = {}

    def __init__(self, bus: BusConfig, devices: Sequence[DeviceConfig], ctx: DriverContext) -> None:
        self.bus = bus
        self.devices = {d.id: d for d in devices}
        self.ctx = ctx

    @abstractmethod
    async def run(self) -> None:
        """Talk to the bus until cancelled. Raising means the driver failed: the supervisor
        reports it and starts a fresh instance after a backoff."""

    @classmethod
    def check_bus(cls, settings: Mapping[str, Any]) -> str | None:
        """Checks across keys of a ``[[buses]]`` table that the schema cannot express; return
        what is wrong (the config loader names the file and the bus), or None."""
        return None

    @classmethod
    def check_rules(
        cls, settings: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, str, Any] | None:
        """Checks of a ``[[buses]]`` table against the rules' settings (defaults filled in):
        return (the bus key, what was expected, what it is), or None."""
        return None

    # -- `gatewayd check` (the CLI on site; the code lives in the driver's package) ------------

    @classmethod
    def check_host(cls) -> Iterator[Check]:
        """What this driver needs of the host, fast and offline (a compiled library): asked
        once by `gatewayd check` when a bus uses the driver."""
        return iter(())

    @classmethod
    def check_online(
        cls, bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
    ) -> Iterator[Check] | None:
        """`gatewayd check --all` for one bus and its devices: from what the running daemon
        ``seen``, or, when none runs (``None``), by short probes that only read or ask. None:
        no check known. A ``GatewayError`` raised becomes a failed line for the bus."""
        return None

    async def execute_batch(
        self, actions: Sequence[Action]
    ) -> list[Mapping[str, Any] | BaseException]:
        """Carry out several actions at once, as the hardware allows (the fire linkage cuts a
        whole line with one broadcast). The default runs them concurrently; the result for
        each action is what ``execute`` returned or the exception it raised."""
        import asyncio

        if len(actions) == 1:  # no task in between: a rule's cut starts in the caller's step
            try:
                return [await self.execute(actions[0])]
            except Exception as exc:  # noqa: BLE001 - the result, as gather would return it
                return [exc]
        return await asyncio.gather(*(self.execute(a) for a in actions), return_exceptions=True)

    async def execute(self, action: Action) -> Mapping[str, Any]:
        """Carry out one action and return what the device reported. Raise ``DeviceError``
        when the device refused, ``DeviceTimeout`` when it did not answer."""
        from gatewayd.errors import DeviceError

        raise DeviceError(action.device, "unsupported", f"no action {action.name!r}")

    def stats(self) -> Mapping[str, float]:
        """Counters the driver already keeps, for the metrics endpoint (no I/O: it is called
        on the event loop at each scrape): any of ``requests_total``, ``errors_total``,
        ``timeouts_total`` (since this instance started) and ``utilisation_ratio``."""
        return {}

    def last_seen(self) -> Mapping[str, float]:
        """Device id -> Unix time the device last answered (a reply, a frame, an advert)."""
        return {}
