"""`gatewayd drill fire`: the monthly fire drill, through the running daemon's control socket.

The daemon plays the fire linkage (gatewayd.drill): a detector's alarm, a second one confirming
(or a person, in a house with one detector), the reset. Every message the platform gets of it
says ``"drill": true``; the house never enters fire mode. Without ``--actuate`` nothing moves:
each step lists what a fire would move. Recorded as the account you run it as."""

from __future__ import annotations

from typing import Any

import click

from gatewayd.cli import client
from gatewayd.cli.common import config_option, json_option, print_json
from gatewayd.cli.i18n import t

#: An actuating drill waits for the devices (a lock's release and relock over BLE): longer
#: than a status request.
TIMEOUT = 90.0


@click.group()
def drill() -> None:
    """Fire drills (test mode): the fire linkage played through, flagged as a drill.

    \b
    Examples:
      gatewayd drill fire                  # say what a fire would move; nothing moves
      gatewayd drill fire --actuate --note "monthly drill, Li"
    """


@drill.command("fire")
@click.option(
    "--actuate",
    is_flag=True,
    help="Move what a fire moves: chargers cut (they stay off), detectors sounded then hushed, "
    "escape doors released then relocked.",
)
@click.option("--note", default=None, help="A note kept with who you are, e.g. your name.")
@config_option
@json_option
def drill_fire(actuate: bool, note: str | None, config_path: str, as_json: bool) -> None:
    """Play a fire drill: one detector's alarm, a second confirming, the reset. The platform
    sees every message of it marked "drill": true; fire mode is never entered. Refused while
    the house is in fire mode."""
    request: dict[str, Any] = {"cmd": "drill", "actuate": actuate}
    if note:
        request["note"] = note
    with client.connect(config_path, timeout=TIMEOUT) as c:
        answer = c.request(request)
    if as_json:
        print_json({k: v for k, v in answer.items() if k != "ok"})
        return
    who = answer.get("by", "")
    if answer.get("phase") == "aborted":
        click.secho(f"✗ {t('drill_aborted', who=who, reason=answer.get('reason'))}", bold=True)
    elif actuate:
        click.echo(f"✓ {t('drill_moved', who=who, moved=answer['moved'], failed=answer['failed'])}")
    else:
        click.echo(f"✓ {t('drill_dry', who=who)}")
    for step in answer.get("steps", []):
        by = f"{step['by']} {step.get('device') or ''}".rstrip()
        click.echo(f"  {step['phase']:<10} {by}")
        for a in step.get("actions", []):
            args = " ".join(f"{k}={v}" for k, v in (a.get("args") or {}).items())
            error = f"  ({a['error']})" if a.get("error") else ""
            line = f"{a['outcome']:<8} {a['device']} {a['action']} {args}".rstrip()
            click.echo(f"    {line}{error}")
