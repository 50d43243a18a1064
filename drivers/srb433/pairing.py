"""`gatewayd pair smoke`: put the SRB-433 receiver in pair mode and list detectors as they
join, offering to add each to gateway.toml with its room.

When the daemon runs it holds the receiver's port, so pairing goes through its control socket
(the daemon sends PAIR; joins arrive as ``DETECTOR_PAIRED`` events) and the daemon reloads
once detectors were added. Otherwise the port is opened directly (``drivers.srb433.probe``).
The smoke family declares this command (``SmokeFamily.commands``); only reads and pairs.
"""

from __future__ import annotations

import math
import re
import sys
import time
from typing import Any

import click

from drivers.srb433.driver import SerialDriver
from drivers.srb433.events import DETECTOR_PAIRED
from drivers.srb433.family import SmokeFamily
from drivers.srb433.profile import MODELS
from gatewayd.cli import client
from gatewayd.cli.common import NOT_FOUND, USAGE, config_option, fail, interactive, print_json
from gatewayd.cli.i18n import say, t


class Countdown:
    """The seconds pair mode has left, on one line redrawn in place: a person pressing
    buttons room by room sees how long they have. A terminal only; cleared before any other
    line is printed (and before a question)."""

    def __init__(self, seconds: float, enabled: bool) -> None:
        self.deadline = time.monotonic() + seconds
        self.enabled = enabled
        self.shown = False

    def show(self) -> None:
        if not self.enabled:
            return
        left = max(0, math.ceil(self.deadline - time.monotonic()))
        click.echo(f"\r  {t('pair_left', seconds=left)}\033[K", nl=False)
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False)
            self.shown = False


class Pairing:
    """What happens to each detector that joins: shown, and added when it has a room."""

    def __init__(
        self,
        config_path: str,
        bus: str,
        rooms: dict[str, str],
        prefix: str,
        ask: bool,
        as_json: bool,
    ) -> None:
        self.config_path = config_path
        self.bus = bus
        self.rooms = rooms
        self.prefix = prefix
        self.ask = ask
        self.as_json = as_json
        self.joined: list[dict[str, Any]] = []
        self.added: list[str] = []
        self.countdown = Countdown(0, False)

    def join(self, address: str, model: int) -> None:
        from gatewayd.cli.device import open_doc, save
        from gatewayd.cli.editing import EditError, add_device, free_name

        doc = open_doc(self.config_path)
        row: dict[str, Any] = {"address": address, "model": model, "device": None}
        self.joined.append(row)
        known = next(
            (
                d
                for d in doc.tables("devices")
                if d.get("bus") == self.bus and str(d.get("address", "")).upper() == address
            ),
            None,
        )
        if known is not None:
            row["device"] = known.get("id")
            self._say(f"✓ {t('pair_known', address=address, device=known.get('id'))}")
            return
        known_model = MODELS.get(model)
        name = known_model.name if known_model is not None else f"{model:#04x}"
        self._say(f"✓ {t('pair_joined', address=address, model=name)}")
        if known_model is not None and known_model.heartbeat_seconds is None:
            self._say(f"  {t('pair_unsupervised', model=name)}")
        room = self.rooms.get(address)
        if room is None and self.ask:
            room = click.prompt(
                f"  {t('pair_ask_room', address=address)}", default="", show_default=False
            ).strip()
        if not room:
            self._say(f"  {t('pair_not_added', bus=self.bus, address=address)}")
            return
        slug = re.sub(r"[^A-Za-z0-9_-]", "", room)  # an id is a topic level (ID_PATTERN)
        base = f"{self.prefix}{slug}" if slug else f"{self.prefix}{address.lower()}"
        dev_id = free_name({str(d.get("id")) for d in doc.tables("devices")}, base)
        table = {
            "id": dev_id,
            "kind": SmokeFamily.kind,
            "bus": self.bus,
            "address": address,
            "room": room,
        }
        if known_model is not None:  # its heartbeat, or that it has none (docs/smoke.md)
            table["model"] = known_model.name
        try:
            add_device(doc, table)
        except EditError as exc:
            self._say(f"✗ {address}: {say(exc)}")
            return
        save(doc)
        row["device"] = dev_id
        self.added.append(dev_id)
        self._say(f"  {t('pair_added', device=dev_id, room=room)}")

    def _say(self, text: str) -> None:
        if not self.as_json:
            self.countdown.clear()
            click.echo(text)


def _receiver_bus(config_path: str, name: str | None) -> dict[str, Any]:
    from gatewayd.cli.device import open_doc

    buses = [
        b for b in open_doc(config_path).tables("buses") if b.get("driver") == SerialDriver.name
    ]
    if name is not None:
        buses = [b for b in buses if b.get("name") == name]
    if len(buses) != 1:
        what = t("pair_no_bus", name=name) if name else t("pair_buses", count=len(buses))
        fail(t("pair_bus_first", what=what, path=config_path), USAGE)
    return buses[0]


@click.command("smoke")
@click.option(
    "--seconds",
    type=click.IntRange(1, 255),
    default=60,
    show_default=True,
    help="How long pair mode stays open.",
)
@click.option("--bus", "bus_name", help="The receiver's serial bus (default: the only one).")
@click.option(
    "--room",
    "rooms",
    multiple=True,
    metavar="ADDRESS=ROOM",
    help="Room of a detector, added without asking (repeatable).",
)
@click.option(
    "--id-prefix",
    default=SmokeFamily.id_prefix,
    show_default=True,
    help="New devices are named PREFIX + room.",
)
@click.option(
    "--no-ask", is_flag=True, help="Never ask for a room (add only those given with --room)."
)
@config_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print the detectors that joined as JSON at the end."
)
def pair_smoke(
    seconds: int,
    bus_name: str | None,
    rooms: tuple[str, ...],
    id_prefix: str,
    no_ask: bool,
    config_path: str,
    as_json: bool,
) -> None:
    """Open pair mode; press each detector's pair button; give it its room.

    \b
    Examples:
      gatewayd pair smoke --seconds 60                    # asks for each detector's room
      gatewayd pair smoke --room 1A2B3C4D=301 --room 1A2B3C4E=302
    """
    room_of: dict[str, str] = {}
    for item in rooms:
        address, sep, room = item.partition("=")
        if not sep or not re.fullmatch(r"[0-9A-Fa-f]{8}", address.strip()):
            fail(t("pair_bad_room", item=item), USAGE)
        room_of[address.strip().upper()] = room.strip()
    bus = _receiver_bus(config_path, bus_name)
    pairing = Pairing(
        config_path,
        str(bus["name"]),
        room_of,
        id_prefix,
        interactive() and not no_ask and not as_json,
        as_json,
    )
    if not as_json:
        click.echo(t("pair_open", seconds=seconds, bus=bus["name"]))
    pairing.countdown = Countdown(seconds, not as_json and sys.stdout.isatty())
    daemon = client.try_connect(config_path)
    try:
        if daemon is not None:
            with daemon:
                _through_daemon(daemon, config_path, str(bus["name"]), seconds, pairing)
        else:
            _direct(str(bus["port"]), int(bus.get("baudrate", 9600)), seconds, pairing)
    except KeyboardInterrupt:
        pairing.countdown.clear()
        if not as_json:
            click.echo(t("pair_stopped"))
    pairing.countdown.clear()
    if as_json:
        print_json(pairing.joined)
    else:
        click.echo(t("pair_done", joined=len(pairing.joined), added=len(pairing.added)))
    if not pairing.joined:
        raise click.exceptions.Exit(NOT_FOUND)


def _through_daemon(
    events: client.Client, config_path: str, bus: str, seconds: int, pairing: Pairing
) -> None:
    events.request({"cmd": "events"})  # subscribe before pair mode opens: no join is missed
    with client.connect(config_path) as ctl:
        ctl.request({"cmd": "call", "bus": bus, "method": "pair", "args": {"seconds": seconds}})
        deadline = time.monotonic() + seconds + 1
        while (left := deadline - time.monotonic()) > 0:
            pairing.countdown.show()
            ev = events.poll(min(left, 1.0))
            if ev is None:
                continue
            data = ev.get("data") or {}
            if ev.get("type") == DETECTOR_PAIRED and data.get("bus") == bus:
                pairing.join(str(data["address"]).upper(), int(data.get("model", 0)))
        if pairing.added:
            answer = ctl.request({"cmd": "reload"})
            pairing.countdown.clear()
            if not answer.get("reloaded", True):
                fail(t("pair_reload_refused", reason=answer.get("refused")))
            if not pairing.as_json:
                click.echo(f"✓ {t('pair_reloaded', devices=', '.join(pairing.added))}")


def _direct(port: str, baudrate: int, seconds: int, pairing: Pairing) -> None:
    from drivers.srb433.probe import ReceiverPort
    from gatewayd.errors import ProbeError

    try:
        with ReceiverPort(port, baudrate) as rx:
            rx.pair(seconds, pairing.join, tick=pairing.countdown.show)
    except ProbeError as exc:
        fail(str(exc))
