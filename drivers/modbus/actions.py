"""Relay actions on one pile: cut with read-back, escalation to the pile's e-stop.

A cut is only done when the pile says the relay is open: write, read back, retry. A relay
that acknowledges and stays closed is welded; the only thing left to do from here is the
pile's emergency stop, and a person must come (``charger.relay_welded``, critical).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from drivers.modbus import events as ev
from drivers.modbus.line import Priority
from drivers.modbus.pile import PileSession
from drivers.modbus.transport import ExceptionReply
from gatewayd.errors import DeviceError, DeviceTimeout, InvalidArgument, TransientError
from gatewayd.events import drill_mark
from gatewayd.model import Action

log = logging.getLogger("gatewayd.drivers.modbus")


async def execute(pile: PileSession, action: Action) -> Mapping[str, Any]:
    """One of the charger family's actions on ``pile`` (``PileSession.execute``)."""
    reason = action.reason or action.name
    if action.name == "port_off":
        port = check_port(pile, action.args.get("port"))
        return await cut(pile, [port], reason, action.origin)
    if action.name == "all_off":
        await pile.ready.wait()
        return await cut(pile, list(range(1, pile.ports_n + 1)), reason, action.origin)
    if action.name == "port_on":
        port = check_port(pile, action.args.get("port"))
        return await port_on(pile, port)
    raise DeviceError(action.device, "unsupported", f"no action {action.name!r}")


def check_port(pile: PileSession, port: Any) -> int:
    """``port`` when this pile has it (its own port count once identified)."""
    last = pile.ports_n or pile.profile.max_ports
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= last:
        raise InvalidArgument(
            pile.device, "bad_port", f"port {port!r} is not 1..{last} (this pile has {last} ports)"
        )
    return port


async def _open_and_verify(pile: PileSession, ports: list[int]) -> tuple[list[int], int]:
    """Open ``ports``; return (ports still closed by the pile's own account, attempts)."""
    closed = list(ports)
    attempts = 0
    last: Exception | None = None
    answered = False
    write = True  # False once a write was acknowledged and only its read-back is missing
    while closed and attempts < pile.timing.write_attempts:
        attempts += 1
        try:
            whole = closed == list(range(closed[0], closed[-1] + 1))
            span = len(closed) == len(ports) > 1 and whole
            if write and span:
                await pile.write_relays(Priority.SAFETY, closed[0], [False] * len(closed))
            elif write:
                for p in closed:
                    await pile.write_relays(Priority.SAFETY, p, [False])
            write = False  # acknowledged: a lost read-back is asked again, not the write
            relays = await pile.read_relays(Priority.SAFETY, patient=True)
        except (TransientError, ExceptionReply) as exc:
            last = exc
            continue
        answered = True
        closed = [p for p in closed if relays[p - 1]]
        write = True  # what the pile still shows closed is written again
    if not answered:
        raise DeviceTimeout(
            pile.device, f"relay write unanswered after {attempts} attempts: {last}"
        )
    return closed, attempts


async def cut(pile: PileSession, ports: list[int], reason: str, origin: str) -> dict[str, Any]:
    """Open the relays of ``ports``; escalate to e-stop if any stays closed."""
    await pile.ready.wait()
    try:
        closed, attempts = await _open_and_verify(pile, ports)
    except DeviceTimeout:
        pile.emit(
            ev.CUT_FAILED,
            "critical",
            {"ports": ports, "reason": reason, "error": "no_reply"},
        )
        raise
    opened = [p for p in ports if p not in closed]
    _mark_open(pile, opened)
    if closed:
        estop = await emergency_stop(pile, reason=f"relay welded on port(s) {closed}")
        log.error(
            "%s: relay of port(s) %s refused to open; e-stop %s", pile.device, closed, estop["done"]
        )
        for p in closed:
            pile.emit(
                ev.RELAY_WELDED,
                "critical",
                {"port": p, "reason": reason, "estop": estop["done"], "power_w": estop["power_w"]},
            )
        _cut_event(pile, ports, reason, origin, "emergency_stop", attempts)
        raise DeviceError(
            pile.device, "relay_welded", f"port(s) {closed} stayed closed; e-stop {estop['done']}"
        )
    _cut_event(pile, ports, reason, origin, "relay_opened", attempts)
    pile.request_refresh(ports)
    return {"ports": ports, "relay": "open", "verified": True, "attempts": attempts}


def _cut_event(
    pile: PileSession, ports: list[int], reason: str, origin: str, done: str, attempts: int
) -> None:
    # Always a list, so the platform reads one shape whether one port or all were cut.
    data = {"ports": ports, "reason": reason, "origin": origin, "done": done, "attempts": attempts,
            **drill_mark(origin)}  # fmt: skip
    pile.emit(ev.PORT_CUT, "warning", data)


def _mark_open(pile: PileSession, ports: list[int]) -> None:
    for p in ports:
        if p in pile.ports:
            pile.ports[p] = {**pile.ports[p], "relay": False}
    pile.publish_state()


async def emergency_stop(pile: PileSession, reason: str) -> dict[str, Any]:
    """Write the pile's e-stop command and read back what it did."""
    done = "unanswered"
    power = None
    for _ in range(pile.timing.write_attempts):
        try:
            await pile.write_register(
                Priority.SAFETY, pile.profile.command_reg, pile.profile.estop_value
            )
            done = "written"
            if pile.ports_n:  # a pile never identified yet: nothing known to read back
                await pile.read_relays(Priority.SAFETY, patient=True)
            start, count = pile.profile.summary_span()
            regs = await pile.read(Priority.SAFETY, start, count)
            pile.image.update(zip(range(start, start + count), regs, strict=True))
            total = next(r for r in pile.profile.summary_regs if r.name == "total_power_w")
            power = pile.image[start + total.offset]
            break
        except (TransientError, ExceptionReply) as exc:
            log.warning("%s: e-stop attempt failed: %s", pile.device, exc)
    still = [p for p, closed in enumerate(pile.relays, start=1) if closed]
    pile.request_refresh(range(1, pile.ports_n + 1))
    return {"done": done, "reason": reason, "relays_closed": still, "power_w": power}


async def port_on(pile: PileSession, port: int) -> dict[str, Any]:
    await pile.ready.wait()
    try:
        await pile.write_relays(Priority.COMMAND, port, [True])
        relays = await pile.read_relays(Priority.COMMAND, patient=True)
    except ExceptionReply as exc:
        if exc.code == 4:
            raise DeviceError(
                pile.device, "port_fault", f"port {port} is in fault; clear it first"
            ) from None
        raise DeviceError(pile.device, f"modbus_exception_{exc.code:02d}", str(exc)) from None
    except TransientError as exc:
        raise DeviceTimeout(pile.device, str(exc)) from None
    pile.request_refresh([port])
    if not relays[port - 1]:
        raise DeviceError(pile.device, "refused", f"port {port} relay did not close")
    return {"port": port, "relay": "closed", "verified": True}
