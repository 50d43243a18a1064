"""Fire drills (test mode, as 119 alarm-transmission systems have): the fire linkage played
through on demand, every message of it flagged ``"drill": true``.

A drill runs a *fresh* fire rule (the running one's class and settings, knowing nothing of
the house's history) over a copy of the world whose alarms live in the drill's own book. It
feeds that rule made-up fire signals from the configured detectors (``Family.drill_signal``):
one (the alarm stage), a second (the confirmed stage; a person's confirmation where the house
has one detector), then a person's reset. What comes out is published as the real thing
would be, each event with ``data.drill = true``, and told step by step in ``gateway.drill``
events; the drill's alarms are never on the retained ``alarms`` list (its events say them).

Without ``actuate`` no action reaches a driver: each step says what it would have done. With
it, the actions run through the drivers and each step says what moved (chargers cut, and they
stay off like after any fire; detectors sounded then hushed; doors released then relocked).

What a drill must never do: enter or leave the persisted fire mode (the real
``gateway.fire_mode`` alarm, its book and file are not touched), feed the real rules or the
metrics (a made-up smoke alarm is no sign of life from a detector), or get in a real fire's
way: a drill is refused while the house is in fire mode, and stops before its next step when
a real fire begins (it does not hush the sounders or relock the doors of a real fire).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gatewayd.alarms.book import AlarmBook, Refusal
from gatewayd.alarms.catalogue import FIRE_MODE, Catalogue
from gatewayd.commands.service import Forbidden
from gatewayd.events import DRILL, DRILL_FLAG, DRILL_ORIGIN, FIRE_CONFIRM, FIRE_RESET
from gatewayd.model import Action, Event
from rules.engine import ClearAlarm, Outcome, Rule, World

log = logging.getLogger("gatewayd.drill")
#: A drill's own alarm book logs nothing ("FIRE MODE entered" would be a lie in the log).
_QUIET = logging.getLogger("gatewayd.drill.book")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

STEPS = ("alarm", "confirmed", "reset")

Result = Mapping[str, Any] | BaseException


def flagged(event: Event) -> Event:
    """``event`` marked as a drill's."""
    return dataclasses.replace(event, data={**event.data, DRILL_FLAG: True})


class Drill:
    """``world``: the running daemon's (devices, states and families are copied from it);
    ``fresh_rule()``: a new fire rule, None when none runs; ``fire_mode()``: the real one;
    ``publish(event)``: to the platform; ``carry_out(actions)``: each action's result
    (``Actuator.results``)."""

    def __init__(
        self,
        world: World,
        fresh_rule: Callable[[], Rule | None],
        catalogue: Catalogue,
        fire_mode: Callable[[], bool],
        publish: Callable[[Event], None],
        carry_out: Callable[[list[Action]], Awaitable[list[Result]]],
    ) -> None:
        self.world = world
        self.fresh_rule = fresh_rule
        self.catalogue = catalogue
        self.fire_mode = fire_mode
        self.publish = publish
        self.carry_out = carry_out
        self.running = False

    async def run(
        self, actuate: bool, user: str, source: str, note: str | None = None
    ) -> dict[str, Any]:
        """Play a fire drill; return what each step did (or would have done). Raises
        ``Refusal`` (``forbidden``: in fire mode, or a drill already running;
        ``unsupported``: no fire rule, or no detector to start from)."""
        if self.fire_mode():
            raise Refusal("forbidden", "the house is in fire mode: no drill until it is reset")
        if self.running:
            raise Refusal("forbidden", "a fire drill is already running")
        real = self.world
        world = World(real.gateway_id, dict(real.devices),
                      {d: dict(s) for d, s in real.states.items()}, families=real.families)  # fmt: skip
        signals = [
            e for d in world.devices.values() if (e := world.family(d).drill_signal(d)) is not None
        ]
        rule = self.fresh_rule()
        if rule is None or not signals:
            what = "no fire rule runs" if rule is None else "no detector a drill can start from"
            raise Refusal("unsupported", f"no fire drill: {what}")
        gid = world.gateway_id
        book = AlarmBook(gid, self.catalogue, logger=_QUIET)
        person = {"user": user, "note": note, "source": source}
        confirm = signals[1] if len(signals) > 1 else Event(
            gid, FIRE_CONFIRM, "warning", {"alarm": book.fire_id, **person}
        )  # fmt: skip
        reset = Event(gid, FIRE_RESET, "warning", person)
        inputs = zip(STEPS, (signals[0], confirm, reset), strict=True)
        told = {**person, "actuate": actuate}
        self.running = True
        log.warning("fire drill by %s (%s)%s", user, source, ", actuating" if actuate else "")
        try:
            self._tell(Event(gid, DRILL, "warning", {"phase": "started", **told}))
            steps: list[dict[str, Any]] = []
            for phase, event in inputs:
                if self.fire_mode():  # a real fire: leave its sounders and doors alone
                    return self._end(steps, told, "aborted", "a real fire began")
                if phase == "reset":
                    book.clear(gid, FIRE_MODE)
                    book.reset(book.fire_id)  # as a person's reset does, before the rules hear it
                steps.append(await self._step(phase, event, rule, world, book, actuate, told))
            return self._end(steps, told, "finished")
        finally:
            self.running = False

    async def _step(
        self, phase: str, event: Event, rule: Rule, world: World, book: AlarmBook,
        actuate: bool, told: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        world.alarms, world.fire_mode, world.now = book.alarms, book.fire_mode, event.ts
        out = rule.on_event(event, world) or Outcome()
        self._tell(event)
        for change in out.alarms:
            if isinstance(change, ClearAlarm):
                book.clear(change.device, change.type, change.part, now=event.ts)
            else:
                book.raise_(change.device, change.type, change.data, change.part, now=event.ts)
        for derived in out.events:
            self._tell(derived)
        actions = [_quiet(a) for a in out.actions]
        results: list[Result | None] = [None] * len(actions)
        if actuate and actions:
            results = list(await self.carry_out(actions))
        entries = [_entry(a, r) for a, r in zip(actions, results, strict=True)]
        device = event.device if event.device != world.gateway_id else None
        data = {"phase": phase, **told, "by": event.type, "device": device, "actions": entries}
        self._tell(Event(world.gateway_id, DRILL, "warning", data))
        return {"phase": phase, "by": event.type, "device": device, "actions": entries}

    def _end(
        self, steps: list[dict[str, Any]], told: Mapping[str, Any], phase: str,
        reason: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        outcomes = [a["outcome"] for s in steps for a in s["actions"]]
        sums = {"moved": outcomes.count("done"), "failed": sum(o in ("failed", "refused")
                                                               for o in outcomes)}  # fmt: skip
        data = {"phase": phase, **told, **sums, "reason": reason}
        self._tell(Event(self.world.gateway_id, DRILL, "warning", data))
        log.warning("fire drill %s: %d moved, %d failed%s", phase, sums["moved"],
                    sums["failed"], f" ({reason})" if reason else "")  # fmt: skip
        return {DRILL_FLAG: True, "phase": phase, "actuate": told["actuate"], **sums,
                "reason": reason, "steps": steps}  # fmt: skip

    def _tell(self, event: Event) -> None:
        self.publish(flagged(event))


def _quiet(action: Action) -> Action:
    """A drill's action: told, never retried or alarmed (a drill's failure is its news)."""
    return dataclasses.replace(action, reason=f"drill: {action.reason}", origin=DRILL_ORIGIN,
                               persist="once", alarm=None, done_event=None)  # fmt: skip


def _entry(action: Action, result: Result | None) -> dict[str, Any]:
    """One action of a step: ``would`` (not actuated), ``done``, ``refused`` (a rule said
    no), ``failed`` (with the device's error)."""
    out: dict[str, Any] = {"device": action.device, "action": action.name}
    if action.args:
        out["args"] = dict(action.args)
    if result is None:
        out["outcome"] = "would"
    elif isinstance(result, BaseException):
        out["outcome"] = "refused" if isinstance(result, Forbidden) else "failed"
        out["error"] = str(result)
    else:
        out["outcome"] = "done"
    return out
