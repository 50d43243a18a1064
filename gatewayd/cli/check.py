"""`gatewayd check`: a checklist with ✓/✗ and, for each ✗, what to do.

Without options it is fast and offline: the config (with every secret file it names) and the
permissions of the secrets and the data directory. ``--all`` adds what needs the world: the
running daemon, the broker (TCP, TLS, MQTT login) and each bus and device. An invalid config
stops the list at once: one line on stderr, exit 2. Any other ✗: exit 1.
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass, field
from typing import Any

import click

from gatewayd.cli.check_local import check_data_dir, check_drivers, check_files, check_fire
from gatewayd.cli.common import FAILED, config_option, json_option, load_config, print_json
from gatewayd.cli.i18n import t


@dataclass
class Checklist:
    items: list[dict[str, Any]] = field(default_factory=list)
    as_json: bool = False

    def add(self, name: str, passed: bool | None, text: str, **extra: str) -> None:
        """``passed`` None is a note (neither ✓ nor ✗), e.g. the daemon is not running;
        ``extra`` goes into the JSON entry (the broker's ``url``)."""
        self.items.append({"check": name, "ok": passed, "message": text, **extra})
        if not self.as_json:
            mark = {True: "✓", False: "✗", None: "·"}[passed]
            click.echo(f"{mark} {text}")

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if i["ok"] is False)


@click.command()
@config_option
@click.option(
    "--all", "everything", is_flag=True, help="Also the daemon, the broker and every device."
)
@click.option(
    "--user", default="gatewayd", show_default=True, help="The service user the daemon runs as."
)
@json_option
def check(config_path: str, everything: bool, user: str, as_json: bool) -> None:
    """Check the configuration and what it needs, without starting anything.

    \b
    Examples:
      gatewayd check                    # config, secret files, data dir (offline, fast)
      gatewayd check --all              # and the broker, the daemon, every bus and device
      gatewayd check --all --json       # for provisioning scripts
    """
    cfg = load_config(config_path)  # exit 2 with one line when invalid
    out = Checklist(as_json=as_json)
    out.add(
        "config",
        True,
        t(
            "config_ok",
            path=config_path,
            gateway=cfg.gateway_id,
            buses=len(cfg.buses),
            devices=len(cfg.devices),
        ),
    )
    service = _service_user(user)
    check_files(out, cfg, service)
    check_data_dir(out, cfg.data_dir, service, user)
    check_drivers(out, cfg)
    check_fire(out, cfg)
    if everything:
        from gatewayd.cli.check_online import check_online

        check_online(out, cfg, config_path)
    if as_json:
        print_json({"ok": out.failed == 0, "checks": out.items})
    elif out.failed:
        click.echo(t("some_failed", count=out.failed))
    else:
        click.echo(t("all_ok"))
    if out.failed:
        raise click.exceptions.Exit(FAILED)


def _service_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None  # not installed as a service (yet): check as whoever runs this
