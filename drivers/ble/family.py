"""The door-lock family: DL-B2 entrance lock controllers over Bluetooth LE.

What the rest of the house knows about door locks: settings, actions, events, state, their
part in a fire (escape-route doors are released, then locked again after the reset), the
access decisions kept in the audit log, and their metrics. The driver (``drivers.ble``)
knows the radio and the lock's protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.ble import events as ev
from gatewayd.alarms.catalogue import AlarmSpec
from gatewayd.family import (
    ActionSpec,
    AddMetric,
    EventSpec,
    Family,
    Role,
    Stage,
    Tally,
    fields,
    problems_shown,
)
from gatewayd.model import Action, Alarm, Event
from gatewayd.schema import Bool, Float, Int, Str
from gatewayd.secrets import Secret, SecretFile
from gatewayd.settings import Settings, setting

if TYPE_CHECKING:
    from gatewayd.uplink.volume import Traffic

MAC_PATTERN = r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}"
UNLOCKS, DENIED, FORCED = "unlocks", "denied", "forced"


@dataclass(frozen=True, kw_only=True)
class DoorSettings(Settings):
    address: str = setting(
        Str(
            pattern=MAC_PATTERN,
            expected="a Bluetooth address like C0:FF:EE:00:00:01",
            transform=str.upper,
        )
    )
    key_file: Secret = setting(
        SecretFile(16, doc="the lock's 16-byte device key, 32 hex digits, mode 0600")
    )
    escape_route: bool = setting(Bool(default=False, doc="the door is on an evacuation route"))
    unlock_timeout_seconds: float = setting(
        Float(0.5, 30, default=4.0, doc="deadline for an action, connection included")
    )
    room: str = setting(Str(default="", doc="where the door is, for people: 大门 (main gate)"))


# ``user``: the lock's own user id (a card's, a PIN's; null when none) or, for a remote unlock,
# the app user who asked (the audit log attributes it).
_ACCESS = {
    **fields(method="string", counter="integer"),
    "user": {"type": ["integer", "string", "null"]},
}
# A linkage action confirmed: why, by which rule, and the lock's own answer (its ACK and the
# STATUS that confirmed it: gatewayd.linkage puts the action's result in the event).
_DONE = fields(reason="string", rule="string", ack="string", seq="integer", lock="string",
               door="string", battery_mv="integer", verified="boolean")  # fmt: skip

EVENTS: Mapping[str, EventSpec] = {
    ev.UNLOCKED: EventSpec("info", "Unlocked: method remote (user: the app user), card, pin, "
                           "fingerprint, mechanical_key, exit_button, evacuation_release.",
                           {**_ACCESS, **fields(command="string")}, urgent=True),
    ev.LOCKED: EventSpec("info", "Locked: method auto_relock, command, end_of_hold_open.",
                         fields(method="string", counter="integer"), urgent=True),
    ev.OPENED: EventSpec("info", "The door leaf opened.", fields(counter="integer"), urgent=True),
    ev.CLOSED: EventSpec("info", "The door leaf closed.", fields(counter="integer"), urgent=True),
    ev.HELD_OPEN: EventSpec("warning", "Open too long.", fields(seconds="integer",
                                                                counter="integer")),
    ev.FORCED: EventSpec("critical", "Opened while locked.", fields(counter="integer")),
    ev.ACCESS_DENIED: EventSpec("warning", "A card, PIN or fingerprint refused.", _ACCESS,
                                outcome="denied"),
    ev.ON_BATTERY: EventSpec("warning", "Mains lost: on the backup battery.",
                             fields(battery_mv="integer", counter="integer")),
    ev.TAMPER: EventSpec("critical", "The controller's cover was opened.",
                         fields(counter="integer")),
    ev.RELEASED: EventSpec("warning", "Held open by the fire linkage, confirmed by the lock.",
                           _DONE, urgent=True),
    ev.RESTORED: EventSpec("info", "Locked again after a fire reset, confirmed by the lock.",
                           _DONE, urgent=True),
}  # fmt: skip

METRICS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "gatewayd_door_locked": (("device",), "1 while the lock reports itself locked."),
    "gatewayd_door_held_open": (("device",), "1 while the lock is held open (evacuation release)."),
    "gatewayd_door_open": (("device",), "1 while the door leaf is open."),
    "gatewayd_door_unlocks_total": (("device", "method"), "Unlocks, by method (card, pin, remote...)."),
    "gatewayd_door_denied_total": (("device",), "Refused unlock attempts (unknown card, wrong PIN...)."),
    "gatewayd_door_forced_total": (("device",), "Times the door was opened without an unlock."),
}  # fmt: skip


class DoorFamily(Family):
    kind: ClassVar[str] = "door_lock"
    title: ClassVar[str] = "door lock"
    buses: ClassVar[tuple[str, ...]] = ("ble",)
    Settings = DoorSettings
    address: ClassVar[str | None] = "address"
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "unlock": ActionSpec(
            {"seconds": Int(1, 30, default=5, doc="relock after this many seconds")},
            "Unlock; the lock relocks by itself after `seconds`.",
            attributed=True,
        ),
        "lock": ActionSpec(doc="Lock now."),
        "hold_open": ActionSpec(doc="Stay unlocked until an explicit lock (evacuation)."),
        "status": ActionSpec(doc="Ask the lock where it is.", local=True),
    }
    events = EVENTS
    state = fields(
        lock="string", door="string", battery_mv="integer", battery_pct="integer",
        mains="boolean", connected="boolean", rssi="integer", escape_route="boolean",
        key_ok="boolean",  # the lock took our key (an ok ACK) or refused it (bad MAC)
    )  # fmt: skip
    readings: ClassVar[frozenset[str]] = frozenset({"battery_mv", "battery_pct", "rssi"})
    metrics = METRICS
    audited = True

    def traffic(self, device: Any, bus: Mapping[str, Any]) -> Traffic:
        """An entrance opened 50 times a day (unlocked, opened, closed, locked), as
        bench/bench_uplink.py runs it: 200 events and 101 state changes a day."""
        from gatewayd.uplink.volume import Traffic

        return Traffic(events=200, event_bytes=187, changes=101, state_bytes=131)

    audit_events = frozenset({ev.UNLOCKED, ev.ACCESS_DENIED, ev.FORCED, ev.RELEASED, ev.LOCKED})
    refused_in_fire: ClassVar[Mapping[str, str]] = {"lock": "escape doors stay open"}
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = (
        AlarmSpec(
            ev.RELEASE_FAILED, "critical", latched=False,
            clears="by itself, once the lock reports itself held open (tried every few seconds "
            "while fire mode lasts), or when fire mode ends",
            action="An escape door did not release in a fire: send someone to open it by hand "
            "and check the lock's power and radio.",
        ),
        AlarmSpec(
            ev.RELOCK_FAILED, "warning", latched=False,
            clears="by itself, once the lock confirms it is locked (tried until it does)",
            action="After a fire reset the entrance did not lock again: the building is open. "
            "Check the lock.",
        ),
    )  # fmt: skip

    def refuse_in_fire(self, action: Action, state: Mapping[str, Any]) -> str | None:
        # An unlock of a door the fire holds open would be answered "ok" with nothing changed
        # (a held-open lock stays held open): say what is true instead. A door that did not
        # release (its lock says so) may still be unlocked: that helps people out.
        if action.name == "unlock" and state.get("lock") == "held_open":
            return "the door is held open already and stays open until the fire is reset"
        return super().refuse_in_fire(action, state)

    def fire_actions(self, device: Any, stage: Stage) -> list[tuple[Role, Action]]:
        if stage != "confirmed" or not device.settings.get("escape_route"):
            return []
        release = Action(
            device.id,
            "hold_open",
            persist="while_fire",
            alarm=ev.RELEASE_FAILED,
            expect={"lock": "held_open"},
            done_event=(ev.RELEASED, "warning"),
        )
        return [("release", release)]

    def after_fire(self, device: Any) -> list[Action]:
        if not device.settings.get("escape_route"):
            return []
        relock = Action(
            device.id,
            "lock",
            reason="fire reset",
            persist="until_done",
            alarm=ev.RELOCK_FAILED,
            expect={"lock": "locked"},
            done_event=(ev.RESTORED, "info"),
        )
        return [relock]

    def remote_report(self, event: Event) -> bool:
        """The lock's own report of a remote unlock: it cannot know who tapped the phone."""
        return (
            event.type == ev.UNLOCKED
            and event.data.get("method") == "remote"
            and not event.data.get("user")
        )

    def count(self, event: Event, tally: Tally) -> None:
        if event.type == ev.UNLOCKED:
            method = str(event.data.get("method", "unknown"))
            tally.add(UNLOCKS, event.device, "unknown" if method.startswith("unknown") else method)
        elif event.type == ev.ACCESS_DENIED:
            tally.add(DENIED, event.device)
        elif event.type == ev.FORCED:
            tally.add(FORCED, event.device)

    def export(
        self,
        device: Any,
        state: Mapping[str, Any],
        alarms: Mapping[str, Alarm],
        tally: Tally,
        add: AddMetric,
    ) -> bool:
        dev = device.id
        if "lock" in state:
            add("gatewayd_door_locked", 1 if state["lock"] == "locked" else 0, dev)
            add("gatewayd_door_held_open", 1 if state["lock"] == "held_open" else 0, dev)
        if "door" in state:
            add("gatewayd_door_open", 1 if state["door"] == "open" else 0, dev)
        for method, n in sorted(tally.of(UNLOCKS, dev).items()):
            add("gatewayd_door_unlocks_total", n, dev, method)
        add("gatewayd_door_denied_total", sum(tally.of(DENIED, dev).values()), dev)
        add("gatewayd_door_forced_total", sum(tally.of(FORCED, dev).values()), dev)
        return bool(state.get("connected"))

    def self_test(self, device: Any, bus: Any, gateway_id: str) -> tuple[bool, dict[str, Any]]:
        from drivers.ble.probe import lock_status

        return True, {"source": "direct", **lock_status(device, bus, gateway_id)}

    def verdict(
        self, state: Mapping[str, Any], gateway_state: Mapping[str, Any], bus: str
    ) -> tuple[bool, dict[str, str]]:
        problems = [] if state.get("connected") else ["not connected"]
        if state.get("key_ok") is False:
            problems.append("key refused")
        if state.get("mains") is False:
            problems.append("on battery")
        return not problems, problems_shown(problems)
