"""What a device family is, declared in one place: the seam between the core and a family.

A device family — charging piles, smoke detectors, door locks, electrical fire detectors, or
whatever a third party adds — is one ``Family`` subclass registered under the entry-point group
``gatewayd.families`` (docs/developing.md walks through adding one). It owns everything the
rest of the house needs to know about its devices: the kind, the ``[[devices]]`` keys (typed
``Settings``), the actions and their arguments, the events with their payloads, the retained
state and the telemetry, how its figures become metrics, how people see it, and what it does in
a fire. The core, the fire rule, metrics, the control socket, the CLI and the generated contract
loop over families; none of them names one.

Nothing here does I/O. What needs a device (a probe, a self-test) is a hook whose code lives in
the family's own package and is imported only when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from gatewayd.alarms.catalogue import AlarmSpec
from gatewayd.model import Action, Alarm, Event, Severity
from gatewayd.schema import Schema
from gatewayd.settings import NoSettings, Settings

if TYPE_CHECKING:
    from gatewayd.driver import BusConfig, Commands, DeviceConfig
    from gatewayd.uplink.volume import Traffic

#: The stages of a fire (GB 50116-2013 §4.1.6): a single alarm, then a fire confirmed by a
#: second, independent signal.
Stage = Literal["alarm", "confirmed"]
STAGES: tuple[Stage, ...] = ("alarm", "confirmed")
#: What a family's part in the fire linkage is: ``cut`` de-energises (chargers), ``release``
#: opens an escape route (doors), ``sound`` wakes the other sounders (smoke interconnection).
#: Installers narrow ``cut`` and ``release`` by the triggers that may start them.
Role = Literal["cut", "release", "sound"]
#: Roles whose effect wears off (a SOUND ALL sounds for 60 s): the fire rule asks for them
#: again every ``REASSERT_SECONDS`` while fire mode lasts, so a driver restarted mid-fire (a
#: reload, a crash) picks them up again. Their actions must be harmless to repeat.
REASSERTED: tuple[Role, ...] = ("sound",)
REASSERT_SECONDS = 60.0
#: Adds one sample to a metric: (name, value, *label values).
AddMetric = Callable[..., None]


@dataclass(frozen=True)
class ActionSpec:
    """One action a family's devices take: its arguments, and where it may come from."""

    args: Schema = field(default_factory=dict)
    doc: str = ""
    #: Offered on the local control socket: only what makes a house safer or tells something
    #: (opening a door is for the signed, audited command path).
    local: bool = False
    #: The device reports it done without saying who asked (a lock's "unlocked, remote"):
    #: the audit log gives that report the commanding user.
    attributed: bool = False


@dataclass(frozen=True)
class EventSpec:
    """One event type: its usual severity, what its ``data`` holds (a JSON Schema object's
    ``properties``), and how it travels."""

    severity: Severity
    doc: str
    data: Mapping[str, Any] = field(default_factory=dict)
    #: Sent ahead of other info events (an access decision at a door).
    urgent: bool = False
    #: Feeds the rules only; never published (readings the platform gets as state/telemetry).
    internal: bool = False
    #: The severities it may take when they vary with the data.
    severities: tuple[Severity, ...] = ()
    #: The device itself spoke (its last-seen time moves); False for what rules say about it
    #: (a detector gone missing).
    from_device: bool = True
    #: In the audit log (a family's ``audit_events``): what the access decision was.
    outcome: Literal["done", "denied"] = "done"


@dataclass(frozen=True)
class FireSignal:
    """A family's event that reports a fire: which device, and what it sensed.

    Two different signals (another device, or the same device sensing something else: heat
    after smoke) within the fire rule's ``confirm_window_seconds`` confirm a fire; the repeats
    of one signal (a detector's alarm, sent again every 30 s with a new SEQ) stay one."""

    device: str
    stage: Stage  # "alarm": it starts fire mode on its own
    what: str  # for people, and what tells two signals of one device apart: "smoke", "heat"
    #: Only confirms a fire that another signal started (a charger's overheat cut): it never
    #: starts fire mode itself.
    confirms_only: bool = False


@dataclass(frozen=True)
class Found:
    """A device a bus scan recognised as one of its family's (``Family.identify``)."""

    kind: str
    #: For people, one line: "EBC pile, firmware 1.3, 10 ports".
    summary: str
    #: What `scan --json` shows of it besides its address and kind: model, firmware...
    details: Mapping[str, Any] = field(default_factory=dict)
    #: The ``[[devices]]`` keys `scan --add` writes besides id, kind, bus and the address
    #: (a pile model that is not the default profile).
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deadband:
    """How far a measurement must move before the uplink sends it at once (report by
    exception, docs/integrator.md): ``absolute`` in its unit, or ``relative`` to the value last
    sent (0.05: 5 %); either is enough. Smaller moves wait for ``telemetry_max_seconds``.
    ``step`` is the sensor's resolution: the value is rounded to it before it is compared or
    sent (no ``229.70000000000002`` on a 4G card)."""

    absolute: float | None = None
    relative: float | None = None
    step: float | None = None

    def rounded(self, value: Any) -> Any:
        step = self.step
        if step is None or not _number(value) or not math.isfinite(value):
            return value  # NaN and the like are "no reading": passed on as they are
        out = round(round(value / step) * step, 9)  # round(…, 9): no float noise left
        return int(out) if float(step).is_integer() else out

    def moved(self, sent: Any, value: Any) -> bool:
        """Whether ``value`` is far enough from ``sent`` (what the platform has) to go now."""
        if sent == value:
            return False
        if not _number(sent) or not _number(value):
            return True  # a reading appeared, vanished or is not a number: say so
        delta = abs(value - sent)
        if self.absolute is None and self.relative is None:
            return True
        if self.absolute is not None and delta >= self.absolute:
            return True
        return self.relative is not None and delta >= self.relative * abs(sent)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fields(**types: str) -> dict[str, Any]:
    """JSON Schema ``properties`` in short: ``fields(port="integer", ports="integer[]",
    temperature_c="number?")``: ``[]`` an array of, ``?`` may be null, ``{}`` an object."""

    def one(t: str) -> dict[str, Any]:
        if t.endswith("?"):
            inner = one(t[:-1])
            return {**inner, "type": [inner["type"], "null"]} if "type" in inner else inner
        if t.endswith("[]"):
            return {"type": "array", "items": one(t[:-2])}
        if t == "{}":
            return {"type": "object"}
        return {"type": t}

    return {name: one(t) for name, t in types.items()}


class Tally:
    """Counts events say and state does not keep (cuts, unlocks, energy), per metric, device
    and label: the metrics endpoint's memory, filled by each family's ``count``."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], float] = {}
        self.memo: dict[tuple[str, str], Any] = {}  # a family's own bookkeeping

    def add(self, metric: str, device: str, label: str = "", amount: float = 1.0) -> None:
        key = (metric, device, label)
        self.values[key] = self.values.get(key, 0.0) + amount

    def of(self, metric: str, device: str) -> dict[str, float]:
        return {lbl: v for (m, d, lbl), v in self.values.items() if m == metric and d == device}


class Family:
    """Base of every device family. Subclasses set the class variables and override the hooks
    they need; every hook has a harmless default."""

    #: The ``kind`` of a ``[[devices]]`` entry: ``charger``.
    kind: ClassVar[str]
    #: What people call one: "charging pile".
    title: ClassVar[str]
    #: The drivers whose buses carry this family (``driver`` of a ``[[buses]]`` entry).
    buses: ClassVar[tuple[str, ...]]
    #: The ``[[devices]]`` keys besides id, kind and bus, typed.
    Settings: ClassVar[type[Settings]] = NoSettings
    #: The setting that tells two devices on one bus apart (the CLI refuses a duplicate).
    address: ClassVar[str | None] = None
    actions: ClassVar[Mapping[str, ActionSpec]] = {}
    events: ClassVar[Mapping[str, EventSpec]] = {}
    #: JSON Schema ``properties`` of the retained ``state/<device>`` and of telemetry values.
    state: ClassVar[Mapping[str, Any]] = {}
    telemetry: ClassVar[Mapping[str, Any]] = {}
    #: Report by exception (gatewayd.uplink.exception): per telemetry value, how far it must
    #: move to be sent at once and the resolution it is rounded to. A value without one is
    #: sent whenever it changes at all.
    deadbands: ClassVar[Mapping[str, Deadband]] = {}
    #: State fields (also inside a list of objects, such as a pile's ``ports``) that are
    #: readings, not discrete facts: a change of only these republishes the retained state at
    #: most every ``state_refresh_seconds``. Every other field is discrete and goes at once
    #: (online, a port's state, a relay, a fault, a lock, a door, an alarm): a family that
    #: declares nothing here keeps every change.
    readings: ClassVar[frozenset[str]] = frozenset()
    #: JSON Schema ``properties`` of what a device says of itself once (a pile's firmware and
    #: port count): its driver hands them over with its state, and the uplink carries them in
    #: the device's entry of the retained ``{root}/devices`` list instead of in every state.
    identity: ClassVar[Mapping[str, Any]] = {}
    #: JSON Schema ``patternProperties`` of what its driver keeps in the gateway's own retained
    #: state (``state/<gateway id>``): a smoke receiver's health under ``receiver.<bus>``.
    gateway_state: ClassVar[Mapping[str, Any]] = {}
    #: The metrics it exports: name -> (labels, HELP), as gatewayd.metrics' catalogue.
    metrics: ClassVar[Mapping[str, tuple[tuple[str, ...], str]]] = {}
    #: Its commands and its ``audit_events`` are access decisions, kept in the audit log; a
    #: remote command to it is refused when the audit log cannot be written.
    audited: ClassVar[bool] = False
    audit_events: ClassVar[frozenset[str]] = frozenset()
    #: Actions refused while the house is in fire mode, with why.
    refused_in_fire: ClassVar[Mapping[str, str]] = {}
    #: Alarm types the runtime raises for it (an action of its that keeps failing).
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = ()
    #: Its `gatewayd` subcommands, as ``Driver.commands``: ``{"pair": {"smoke":
    #: "drivers.srb433.pairing:pair_smoke"}}``; a bus's scan is its driver's.
    commands: ClassVar[Commands] = {}
    #: What a scan's short lines call several of them ("no piles answered"): ``several()``.
    plural: ClassVar[str] = ""
    #: A device `scan --add` adds is named this + its address: ``new_id()``.
    id_prefix: ClassVar[str] = ""

    @classmethod
    def schema(cls) -> Schema:
        return cls.Settings.schema()

    @classmethod
    def action_schemas(cls) -> dict[str, Schema]:
        """Action name -> the schema of its ``args``: what the command gate checks."""
        return {name: spec.args for name, spec in cls.actions.items()}

    # -- what the platform and people are told ----------------------------------------------

    def room(self, device: DeviceConfig) -> str:
        return str(device.settings.get("room") or "")

    def model(self, device: DeviceConfig) -> str | None:
        """The device's model, as the platform's `devices` list shows it."""
        return None

    def supervised(self, device: DeviceConfig) -> bool:
        """Whether the gateway notices when the device goes silent."""
        return True

    def traffic(self, device: DeviceConfig, bus: Mapping[str, Any]) -> Traffic | None:
        """What one device sends the platform on a typical day, from its settings and its
        bus's (``gatewayd.uplink.volume``: `gatewayd check`'s estimate); None: not known."""
        return None

    def describe_gateway(self, gateway_state: Mapping[str, Any]) -> list[str]:
        """Lines for `gatewayd status` about what its driver keeps in the gateway's state (a
        smoke receiver's firmware, and whether it can sound every detector)."""
        return []

    def remote_report(self, event: Event) -> bool:
        """Whether ``event`` is the device's own report of a remote command done without
        saying who asked (the audit log gives it the commanding user: ``ActionSpec.attributed``)."""
        return False

    def describe(self, state: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(label, words with units) for `gatewayd status` and `device show`."""
        return [(k, str(v)) for k, v in state.items() if k not in ("ts", "last_seen")]

    # -- fire (rules/fire.py asks) ------------------------------------------------------------

    def fire_signal(self, event: Event, device: DeviceConfig) -> FireSignal | None:
        """The fire this event reports, if any."""
        return None

    def drill_signal(self, device: DeviceConfig) -> Event | None:
        """The event this device would send in a fire, made up for a fire drill
        (gatewayd.drill feeds it to a drill's own fire rule; it never reaches the real one).
        None: the device is no detector a drill can start from."""
        return None

    def fire_over(self, event: Event, device: DeviceConfig) -> bool:
        """Whether this event ends the device's report of a fire."""
        return False

    def reports_fire(self, device: DeviceConfig, alarms: Mapping[str, Alarm],
                     state: Mapping[str, Any]) -> bool:  # fmt: skip
        """Whether the device still reports a fire (a fire reset is refused meanwhile)."""
        return False

    def refuse_in_fire(self, action: Action, state: Mapping[str, Any]) -> str | None:
        """Why ``action`` is refused while the house is in fire mode (None: it is not)."""
        why = self.refused_in_fire.get(action.name)
        return f"{why} until the fire is reset" if why else None

    def fire_actions(self, device: DeviceConfig, stage: Stage) -> list[tuple[Role, Action]]:
        """What this device does at a stage of a fire."""
        return []

    def after_fire(self, device: DeviceConfig) -> list[Action]:
        """What it does once a person has reset fire mode (doors lock again)."""
        return []

    # -- metrics --------------------------------------------------------------------------------

    def count(self, event: Event, tally: Tally) -> None:
        """Keep what ``export`` needs that state does not (called for every event)."""

    def export(
        self,
        device: DeviceConfig,
        state: Mapping[str, Any],
        alarms: Mapping[str, Alarm],
        tally: Tally,
        add: AddMetric,
    ) -> bool:
        """Add the device's metrics; return whether it is up (reachable and reporting)."""
        return bool(state.get("online", True))

    def export_gateway(self, gateway_state: Mapping[str, Any], add: AddMetric) -> None:
        """Add figures its driver keeps in the gateway's own state (a receiver's health)."""

    # -- the CLI --------------------------------------------------------------------------------

    def several(self) -> str:
        return self.plural or f"{self.title}s"

    def new_id(self, address: object) -> str:
        """The id `scan --add` gives a device it found: "pile-" + unit 2 is pile-2."""
        return f"{self.id_prefix or self.kind + '-'}{address}"

    async def identify(self, driver: str, link: Any, address: Any, timeout: float) -> Found | None:
        """Whether the device at ``address`` on a bus of ``driver`` is one of this family's. A
        bus scan asks every family whose ``buses`` include its driver, in turn, until one says
        yes: `gatewayd scan modbus` passes its ``drivers.modbus.transport.Link`` and a unit id,
        and `check --all` asks a configured device's own family. Only reads; None (or a
        ``GatewayError``): not one of ours, or no answer. The code lives in the family's
        package, imported when called."""
        return None

    def self_test(
        self, device: DeviceConfig, bus: BusConfig, gateway_id: str
    ) -> tuple[bool, dict[str, Any]]:
        """A safe, read-only check of the device, reached directly (no daemon running)."""
        return False, {"problem": f"no direct test for {self.title}s; start the daemon"}

    def verdict(
        self, state: Mapping[str, Any], gateway_state: Mapping[str, Any], bus: str
    ) -> tuple[bool, dict[str, str]]:
        """From the state the daemon holds (the device's, and what its driver keeps about the
        gateway): healthy or not, and what to show beside it (``problems``: why not)."""
        return bool(state.get("online", True)), {}


def problems_shown(problems: list[str]) -> dict[str, str]:
    """What a ``verdict`` shows of its problems: one line, or nothing when there are none."""
    return {"problems": "; ".join(problems)} if problems else {}
