"""`gatewayd status` and `gatewayd alarm`: the running daemon, through its
local control socket (no broker needed on site). Exit 4 when the daemon is not reachable."""

from __future__ import annotations

import time
from typing import Any

import click

from gatewayd.cli import client
from gatewayd.cli.common import config_option, json_option, print_json
from gatewayd.cli.i18n import t
from gatewayd.cli.show import MOMENTS, brief_lines, columns, is_moment
from gatewayd.cli.show import ago as _ago


def _device_lines(devices: list[dict[str, Any]]) -> list[str]:
    """Each device: its id, kind and when it last spoke, aligned; below, what it reports."""
    heads = []
    for dev in devices:
        state = dev["state"]
        seen = next((state[k] for k in MOMENTS if is_moment(k, state.get(k))), None)
        when = (
            t("status_seen", ago=_ago(time.time() - seen))
            if seen is not None
            else ("" if state else t("status_no_news"))
        )
        if dev.get("supervised") is False:  # it can die unnoticed: say so on every status
            when += t("status_unsupervised", model=dev.get("model") or "?")
        heads.append([f"  {dev['id']}", dev["kind"], when])
    lines = []
    for dev, head in zip(devices, columns(heads), strict=True):
        lines.append(head)
        rest = [(k, v) for k, v in dev["state"].items() if k not in MOMENTS]
        lines += brief_lines(rest, indent="      ")
    return lines


@click.command()
@config_option
@json_option
def status(config_path: str, as_json: bool) -> None:
    """What the running daemon sees: broker, fire mode, outbox, buses and each device's
    latest state.

    \b
    Examples:
      gatewayd status
      gatewayd status --json | jq .devices
    """
    with client.connect(config_path) as c:
        st = c.request({"cmd": "status"})
    st.pop("ok", None)
    if as_json:
        print_json(st)
        return
    broker = t("connected") if st["broker_connected"] else t("offline")
    click.echo(
        t(
            "status_gateway",
            gateway=st["gateway"],
            site=st.get("site") or "-",
            version=st["version"],
            uptime=_ago(st["uptime"]),
        )
    )
    click.echo(t("status_counts", broker=broker, outbox=st["outbox_depth"], alarms=st["alarms"]))
    box = st.get("outbox") or {}
    if box.get("depth"):
        drops = ", ".join(
            f"{k.removeprefix('dropped_')} {int(v)}"
            for k, v in box.items()
            if k.startswith("dropped_") and v
        )
        waiting = t(
            "status_waiting",
            oldest=_ago(box["oldest_age_seconds"]),
            mb=f"{box['disk_bytes'] / 1e6:.1f}",
        )
        click.echo(f"  {waiting}" + (t("status_dropped", drops=drops) if drops else ""))
    if st["fire_mode"]:
        click.secho(t("status_fire"), bold=True)
    for name, bus in st["buses"].items():
        mark = "✓" if bus["running"] else "✗"
        restarts = t("status_restarts", count=bus["restarts"]) if bus["restarts"] else ""
        click.echo(f"{mark} {t('status_bus', bus=name, driver=bus['driver'])}{restarts}")
    from gatewayd import plugins

    for family in plugins.families().values():
        for line in family.describe_gateway(st.get("gateway_state") or {}):
            click.echo(f"  {line}")
    for line in _device_lines(st["devices"]):
        click.echo(line)


@click.group()
def alarm() -> None:
    """Active alarms of the running daemon: list, acknowledge, reset fire mode.

    \b
    Examples:
      gatewayd alarm list
      gatewayd alarm ack smoke-301/smoke.alarm --note "Li, on site"
      gatewayd alarm reset --note "Li: checked room 301"   # leave fire mode once it is safe
    """


@alarm.command("list")
@config_option
@json_option
def alarm_list(config_path: str, as_json: bool) -> None:
    """Every active alarm, oldest first."""
    with client.connect(config_path) as c:
        answer = c.request({"cmd": "alarms"})
    if as_json:
        print_json({"fire_mode": answer["fire_mode"], "alarms": answer["alarms"]})
        return
    if answer["fire_mode"]:
        click.secho(t("alarm_fire"), bold=True)
    if not answer["alarms"]:
        click.echo(t("alarm_none"))
    for a in answer["alarms"]:
        acked = t("alarm_acked_by", user=a["acked_by"]) if a.get("acked_by") else ""
        waiting = t("alarm_awaiting") if a.get("state") == "cleared" else ""
        parts = [p for p, st in (a.get("parts") or {}).items() if st == "active"]
        where = f" ({', '.join(parts)})" if parts else ""
        since = t("alarm_since", ago=_ago(time.time() - a["since"]))
        click.echo(f"{a['severity']:<8} {a['id']}{where}  {since}{acked}{waiting}")


def _note_option(f: Any) -> Any:
    """``--note``: free text kept beside the OS account the daemon records (``--user``, the
    old name, is still taken and sent as the note)."""
    f = click.option("--user", "old_user", default=None, hidden=True)(f)
    return click.option(
        "--note", default=None, help="A note kept with who you are, e.g. your name or a ticket."
    )(f)


@alarm.command("ack")
@click.argument("alarm_id")
@_note_option
@config_option
def alarm_ack(alarm_id: str, note: str | None, old_user: str | None, config_path: str) -> None:
    """Acknowledge ALARM_ID (as `gatewayd alarm list` shows it). The alarm stays active until
    its cause is gone; the platform sees who acknowledged it: the account you run this as."""
    with client.connect(config_path) as c:
        answer = c.request(_with_note({"cmd": "ack", "alarm": alarm_id}, note or old_user))
    click.echo(f"✓ {t('alarm_acked', alarm=answer['alarm'], who=_who(answer, 'acked_by'))}")


@alarm.command("reset")
@click.argument("alarm_id", required=False)
@_note_option
@config_option
def alarm_reset(
    alarm_id: str | None, note: str | None, old_user: str | None, config_path: str
) -> None:
    """Reset ALARM_ID, a latched alarm (an overheat, a welded relay, fire mode) whose cause
    is over; without ALARM_ID, leave fire mode (doors return to normal locking). Refused
    while the cause is still there: a port still hot, a detector still reporting smoke. The
    reset is recorded as done by the account you run this as."""
    request: dict[str, Any] = _with_note({"cmd": "reset"}, note or old_user)
    if alarm_id:
        request["alarm"] = alarm_id
    with client.connect(config_path) as c:
        answer = c.request(request)
    if alarm_id:
        click.echo(f"✓ {t('alarm_reset', alarm=alarm_id, who=_who(answer, 'by'))}")
    elif answer["reset"]:
        click.echo(f"✓ {t('alarm_fire_reset', who=_who(answer, 'by'))}")
    else:
        click.echo(f"✓ {t('alarm_no_fire')}")


def _with_note(request: dict[str, Any], note: str | None) -> dict[str, Any]:
    return {**request, "note": note} if note else request


def _who(answer: dict[str, Any], key: str) -> str:
    """The account the daemon recorded (from the kernel, not from us), and the note kept."""
    note = answer.get("note")
    return f"{answer.get(key)}" + (t("alarm_note", note=note) if note else "")
