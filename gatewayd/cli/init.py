"""`gatewayd init`: the first file of a visit. Writes gateway.toml (identity, broker, data
dir) and the command key (mode 0600), then prints what the platform must be told: the gateway
id and the key's fingerprint. The key itself is printed only with --show-key.

Interactive in a terminal (it asks for whatever no flag gave, and asks again at once when an
answer does not fit), or all from flags for mass provisioning; without a terminal a missing
value is an error (exit 2), never a hang. The data directory is never asked for: the default
is what install-service and the unit expect (``--data-dir`` for the rare other one).

``--force`` on a configured gateway lists the buses and devices the new file drops, asks (or
needs ``--yes``) and keeps the old file as ``gateway.toml.bak-<time>``.
"""

from __future__ import annotations

import contextlib
import os
import secrets as pysecrets
import sys
import time
import tomllib
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from gatewayd.cli.common import (
    DEFAULT_DATA_DIR,
    FAILED,
    USAGE,
    config_option,
    fail,
    interactive,
    json_option,
    ok,
    print_json,
)
from gatewayd.cli.i18n import t

if TYPE_CHECKING:
    from gatewayd.schema import Field

TEMPLATE = """\
# gateway.toml, written by `gatewayd init` on {date}.
# Edit it by hand or with `gatewayd device add|remove`; check it with `gatewayd check`.
# Every section and key is explained in the example gateway.toml shipped with gatewayd.

[gateway]
id = {id}{pad_id}# unique; the MQTT client id and topic root
site = {site}{pad_site}# free text, shown to people
data_dir = {data_dir}{pad_data}# state, outbox, audit log

[mqtt]
url = {url}{pad_url}# mqtt:// or mqtts://; a list: a cluster's nodes, tried in turn
topic_prefix = {prefix}
{credentials}# ca_file = "/etc/gatewayd/ca.pem"   # for mqtts:// when the broker's CA is not the system's

[security]
command_key_file = {key_file}   # mode 0600; the platform knows its fingerprint

# Buses and devices come next: gatewayd scan modbus --add, gatewayd scan serial --add,
# gatewayd pair smoke, gatewayd device add ...
"""


def _q(value: str | list[str]) -> str:
    import tomlkit

    return str(tomlkit.item(value).as_string())


def _pad(rendered: str, width: int = 28) -> str:
    return " " * max(1, width - len(rendered))


def _checker(field_name: str) -> Callable[[str], str]:
    """A prompt's value_proc: the answer as typed, or click's "Error: ..." and the same
    question again (a person learns of a typo at once, not three questions later)."""
    from gatewayd.config_schema import BROKER_URL, GATEWAY_SCHEMA

    schema = {"id": GATEWAY_SCHEMA["id"], "url": BROKER_URL}
    field = schema.get(field_name)

    def check(value: str) -> str:
        value = value.strip()
        if not value:
            raise click.UsageError(t("init_empty"))
        if field is not None:
            try:
                field.convert(value)
            except ValueError:
                raise click.UsageError(
                    t("init_bad_value", value=value, expected=_expected(field))
                ) from None
        return value

    return check


def _expected(field: Field) -> str:
    from gatewayd.cli.i18n import expected

    return expected(field.expected)


def _ask(
    value: str | None, flag: str, prompt: str, field: str = "", default: str | None = None
) -> str:
    """The flag's value; else the answer in a terminal (checked, asked again until it fits);
    else the default; else exit 2 naming the flag."""
    if value is not None:
        return value
    if not interactive():
        if default is not None:
            return default
        fail(t("init_flag_required", flag=flag), USAGE)
    if default is not None:
        answer: str = click.prompt(prompt, default=default)
        return answer.strip()
    return str(click.prompt(prompt, value_proc=_checker(field)))


def _validate_early(gateway_id: str, urls: list[str], site: str) -> None:
    """The values given as flags, checked before any file is written."""
    from gatewayd.config_schema import BROKER_URL, GATEWAY_SCHEMA, MAX_URLS

    if len(urls) > MAX_URLS:
        fail(t("init_too_many_brokers", n=len(urls), most=MAX_URLS), USAGE)
    for value, field, flag in (
        (gateway_id, GATEWAY_SCHEMA["id"], "--gateway-id"),
        *((url, BROKER_URL, "--broker") for url in urls),
    ):
        try:
            field.convert(value)
        except ValueError:
            fail(f"{flag} {value!r}: {t('expected', expected=_expected(field))}", USAGE)
    if not site.strip():
        fail(t("init_flag_required", flag="--site"), USAGE)


def _replacing(config_path: str, yes: bool) -> str | None:
    """Before `--force` replaces a config: say which buses and devices go with it, ask (or
    need --yes), and keep the old file beside it. Returns the backup's path."""
    import shutil

    from gatewayd.cli.editing import ConfigText, EditError

    try:
        old = ConfigText(config_path)
        buses = [str(b.get("name")) for b in old.tables("buses")]
        devices = [str(d.get("id")) for d in old.tables("devices")]
        rules = sorted(old.data.get("rules", {})) if isinstance(old.data.get("rules"), dict) else []
    except EditError:  # unreadable or not TOML: nothing to list, but still kept
        buses, devices, rules = [], [], []
    lost = []
    if buses:
        lost.append(t("init_lost_buses", count=len(buses), names=", ".join(buses)))
    if devices:
        lost.append(t("init_lost_devices", count=len(devices), names=", ".join(devices)))
    if rules:
        lost.append(t("init_lost_rules", names=", ".join(rules)))
    if lost:
        click.echo(t("init_would_remove", path=config_path), err=True)
        for line in lost:
            click.echo(f"  {line}", err=True)
        if not yes:
            if not interactive():
                fail(t("init_need_yes", path=config_path), USAGE)
            if not click.confirm(t("init_confirm"), default=False):
                fail(t("init_kept", path=config_path), FAILED)
    backup = f"{config_path}.bak-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while os.path.exists(backup):
        n += 1
        backup = f"{config_path}.bak-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    shutil.copy2(config_path, backup)  # mode and times; the owner too when we may
    st = os.stat(config_path)
    with contextlib.suppress(PermissionError):
        os.chown(backup, st.st_uid, st.st_gid)
    return backup


@click.command()
@config_option
@click.option("--gateway-id", help="Unique id, e.g. xz-liushu-017 (the MQTT client id).")
@click.option("--site", help="Site name shown to people, e.g. 柳墅村 17号 (required).")
@click.option(
    "--broker",
    "urls",
    multiple=True,
    help="Broker URL: mqtts://host:8883 or mqtt://host:1883; again for each node of a cluster.",
)
@click.option("--username", help="Broker username (often the gateway id).")
@click.option(
    "--password-file", type=click.Path(dir_okay=False), help="File with the broker password (0600)."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin into --password-file."
)
@click.option("--data-dir", help=f"State directory [default: {DEFAULT_DATA_DIR}]; never asked for.")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    help="Command key file [default: command.key beside the config].",
)
@click.option("--topic-prefix", default="pingan/v1", show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing config file (says which buses and devices go, keeps a backup).",
)
@click.option("--yes", is_flag=True, help="With --force: do not ask before removing buses/devices.")
@click.option(
    "--new-key", is_flag=True, help="Replace an existing command key (tell the platform!)."
)
@click.option("--show-key", is_flag=True, help="Also print the key itself (keep it secret).")
@json_option
def init(
    config_path: str,
    gateway_id: str | None,
    site: str | None,
    urls: tuple[str, ...],
    username: str | None,
    password_file: str | None,
    password_stdin: bool,
    data_dir: str | None,
    key_file: str | None,
    topic_prefix: str,
    force: bool,
    yes: bool,
    new_key: bool,
    show_key: bool,
    as_json: bool,
) -> None:
    """Write gateway.toml and the command key; print the gateway id and key fingerprint.

    \b
    Examples:
      gatewayd init                                   # asks for each value
      gatewayd init -c /etc/gatewayd/gateway.toml --gateway-id xz-liushu-017 \\
          --site "柳墅村 17号" --broker mqtts://broker.example.cn:8883 \\
          --username xz-liushu-017 --password-file /etc/gatewayd/mqtt.password
    """
    from gatewayd.commands.signing import fingerprint
    from gatewayd.secrets import read_hex_key, write_secret

    exists = os.path.exists(config_path)
    if exists and not force:
        fail(t("init_exists", path=config_path), USAGE)
    conf_dir = os.path.dirname(os.path.abspath(config_path))
    gateway_id = _ask(gateway_id, "--gateway-id", t("init_ask_id"), "id")
    site = _ask(site, "--site", t("init_ask_site"), "site")
    brokers = list(urls) or [_ask(None, "--broker", t("init_ask_broker"), "url")]
    _validate_early(gateway_id, brokers, site)
    username = _ask(username, "--username", t("init_ask_username"), default="") or None
    # Paths typed on the command line are the shell's (from here); the file holds them whole,
    # since a relative path in it would be taken from the config's folder.
    data_dir = os.path.abspath(data_dir) if data_dir else DEFAULT_DATA_DIR
    key_file = os.path.abspath(key_file) if key_file else os.path.join(conf_dir, "command.key")
    password_file = os.path.abspath(password_file) if password_file else None
    if username is None and password_file:
        fail(t("init_password_needs_user"), USAGE)
    backup = _replacing(config_path, yes) if exists else None

    os.makedirs(conf_dir, mode=0o750, exist_ok=True)
    if username is not None:
        password_file = password_file or os.path.join(conf_dir, "mqtt.password")
        if password_stdin:
            write_secret(password_file, sys.stdin.readline().rstrip("\n"))
        elif not os.path.exists(password_file):
            if not interactive():
                fail(t("init_no_password", path=password_file), USAGE)
            write_secret(password_file, click.prompt(t("init_ask_password"), hide_input=True))

    if os.path.exists(key_file) and not new_key:
        key = read_hex_key(key_file, 32)
        key_note = t("init_key_kept")
    else:
        key = pysecrets.token_bytes(32)
        write_secret(key_file, key.hex())
        key_note = t("init_key_new")

    credentials = ""
    if username is not None:
        credentials = (
            f"username = {_q(username)}\npassword_file = {_q(password_file or '')}   # mode 0600\n"
        )
    url = _q(brokers[0] if len(brokers) == 1 else brokers)  # several: a TOML array
    values = {"id": _q(gateway_id), "site": _q(site), "data_dir": _q(data_dir), "url": url}
    text = TEMPLATE.format(
        date=time.strftime("%Y-%m-%d"),
        prefix=_q(topic_prefix),
        credentials=credentials,
        key_file=_q(key_file),
        pad_id=_pad(values["id"]),
        pad_site=_pad(values["site"]),
        pad_data=_pad(values["data_dir"]),
        pad_url=_pad(values["url"]),
        **values,
    )
    from gatewayd.cli.editing import ConfigText, EditError

    doc = ConfigText(config_path, text)
    try:
        doc.validate()
    except EditError as exc:
        fail(str(exc), USAGE)
    doc.write()
    assert tomllib.loads(text)["gateway"]["id"] == gateway_id

    fp = fingerprint(key)
    if as_json:
        result = {
            "config": config_path,
            "gateway": gateway_id,
            "key_file": key_file,
            "fingerprint": fp,
        }
        if backup:
            result["backup"] = backup
        if show_key:
            result["key"] = key.hex()
        print_json(result)
        return
    if backup:
        ok(t("init_backup", path=backup))
    ok(t("init_wrote", path=config_path))
    ok(t("init_key", path=key_file, note=key_note))
    click.echo("")
    click.echo(t("init_tell"))
    click.echo(f"  {t('init_tell_id'):<16} {gateway_id}")
    click.echo(f"  {t('init_tell_fp'):<16} {fp}")
    if show_key:
        click.echo(f"  {t('init_tell_key'):<16} {key.hex()}")
    click.echo("")
    click.echo(t("init_next"))
