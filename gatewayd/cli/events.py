"""`gatewayd events`: what happens in the house, as it happens, and what happened lately.

The daemon keeps the recent events in memory (gatewayd.control.history): ``--since 1h`` shows
them first. Following survives a daemon restart: the stream ends, the command waits for the
daemon to come back and goes on from the last event it showed (nothing shown twice; what the
daemon saw while it was down is nothing: it was not watching).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import click

from gatewayd.cli import client
from gatewayd.cli.common import NO_DAEMON, USAGE, Fail, config_option, fail, json_option
from gatewayd.cli.i18n import t

RETRY_MAX = 5.0  # s between attempts to reach a restarting daemon
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """``90s``, ``30m``, ``1h``, ``2d`` ago, or a local date-time (``2024-05-01 08:00``,
    ``08:00`` today) as a Unix time; Fail (exit 2) otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text.strip()):
            today = datetime.fromtimestamp(now).date().isoformat()
            return datetime.fromisoformat(f"{today} {text.strip()}").timestamp()
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        fail(t("events_bad_since", value=text), USAGE)


def _line(ev: dict[str, Any], now: float) -> str:
    ts = ev.get("ts", now)
    fmt = "%H:%M:%S" if now - ts < 20 * 3600 else "%m-%d %H:%M:%S"
    when = time.strftime(fmt, time.localtime(ts))
    data = ", ".join(f"{k}={v}" for k, v in (ev.get("data") or {}).items() if v is not None)
    return f"{when} {ev.get('severity', ''):<8} {ev.get('device')}: {ev.get('type')}" + (
        f" ({data})" if data else ""
    )


@click.command()
@config_option
@click.option(
    "--follow/--no-follow",
    "-f/-F",
    default=True,
    show_default=True,
    help="Keep following (also across a daemon restart); --no-follow stops after the history.",
)
@click.option(
    "--since", help="Show what happened since: 90s, 30m, 1h, 2d ago, or 08:00, 2024-05-01 08:00."
)
@click.option("-n", "--count", type=click.IntRange(1), default=None, help="Stop after N events.")
@click.option("--device", "devices", multiple=True, help="Only these devices (repeatable).")
@click.option(
    "--type", "types", multiple=True, help="Only these event types, e.g. smoke.* (repeatable)."
)
@json_option
def events(
    config_path: str,
    follow: bool,
    since: str | None,
    count: int | None,
    devices: tuple[str, ...],
    types: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print every event as it happens, until Ctrl-C (or --count); with --since, what
    happened lately first (since the daemon started, the last 2000 events at most).

    \b
    Examples:
      gatewayd events --follow
      gatewayd events --since 1h --type 'smoke.*'           # the last hour's smoke events
      gatewayd events --since 08:00 --device door-main --no-follow
      gatewayd events --device smoke-301 --count 1          # wait for one event of that detector
      gatewayd events --json | jq -c 'select(.severity == "critical")'
    """
    request: dict[str, Any] = {"cmd": "events", "follow": follow}
    if since is not None:
        request["since"] = parse_since(since, time.time())
    if devices:
        request["devices"] = list(devices)
    if types:
        request["types"] = list(types)
    shown = 0
    last_ts: float | None = None
    at_last: set[str] = set()  # ids shown with ts == last_ts: a replay from there repeats them
    reconnecting = False
    while True:
        c = client.connect(config_path) if not reconnecting else _wait_for_daemon(config_path)
        if reconnecting:  # on stderr: --json output stays one object per line
            click.echo(t("events_back"), err=True)
        with c:
            for ev in c.stream(request):
                if "dropped" in ev:
                    click.echo(t("events_dropped", count=ev["dropped"]), err=True)
                    continue
                ts, eid = ev.get("ts"), str(ev.get("id"))
                if eid in at_last:
                    continue  # shown before the restart already
                if isinstance(ts, int | float):
                    if last_ts is None or ts > last_ts:
                        last_ts, at_last = float(ts), set()
                    if ts == last_ts:
                        at_last.add(eid)
                click.echo(
                    json.dumps(ev, ensure_ascii=False) if as_json else _line(ev, time.time())
                )
                shown += 1
                if count is not None and shown >= count:
                    return
        if not follow:
            return
        # The daemon stopped (a restart, an upgrade): go on from the last event shown.
        click.echo(t("events_lost"), err=True)
        request["since"] = last_ts if last_ts is not None else time.time()
        reconnecting = True


def _wait_for_daemon(config_path: str) -> client.Client:
    """A connection once the daemon answers again; Ctrl-C ends the wait (exit 130)."""
    delay = 0.2
    while True:
        try:
            return client.connect(config_path)
        except Fail as exc:
            if exc.exit_code != NO_DAEMON:
                raise
        time.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)
