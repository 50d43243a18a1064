"""`gatewayd init`: the first file of a visit. Writes gateway.toml (identity, broker, data
dir) and the command key (mode 0600), then prints what the platform must be told: the gateway
id and the key's fingerprint. The key itself is printed only with --show-key.

Interactive in a terminal (it asks for whatever no flag gave), or all from flags for mass
provisioning; without a terminal a missing value is an error (exit 2), never a hang.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import sys
import time
import tomllib

import click

from gatewayd.cli.common import (
    DEFAULT_DATA_DIR,
    USAGE,
    config_option,
    fail,
    interactive,
    json_option,
    print_json,
)

TEMPLATE = """\
# gateway.toml, written by `gatewayd init` on {date}.
# Edit it by hand or with `gatewayd device add|remove`; check it with `gatewayd check`.
# Every section and key is explained in the example gateway.toml shipped with gatewayd.

[gateway]
id = {id}{pad_id}# unique; the MQTT client id and topic root
site = {site}{pad_site}# free text, shown to people
data_dir = {data_dir}{pad_data}# state, outbox, audit log

[mqtt]
url = {url}{pad_url}# mqtt:// or mqtts://
topic_prefix = {prefix}
{credentials}# ca_file = "/etc/gatewayd/ca.pem"   # for mqtts:// when the broker's CA is not the system's

[security]
command_key_file = {key_file}   # mode 0600; the platform knows its fingerprint

# Buses and devices come next: gatewayd scan modbus --add, gatewayd scan serial --add,
# gatewayd pair smoke, gatewayd device add ...
"""


def _q(value: str) -> str:
    import tomlkit

    return str(tomlkit.item(value).as_string())


def _pad(rendered: str, width: int = 28) -> str:
    return " " * max(1, width - len(rendered))


def _ask(value: str | None, flag: str, prompt: str, default: str | None = None) -> str:
    if value is not None:
        return value
    if not interactive():
        if default is not None:
            return default
        fail(f"{flag} is required (or run `gatewayd init` in a terminal to be asked)", USAGE)
    answer: str = click.prompt(prompt, default=default)
    return answer.strip()


def _validate_early(gateway_id: str, url: str) -> None:
    """The values a person typed, checked before any file is written."""
    from gatewayd.config import GATEWAY_SCHEMA, MQTT_SCHEMA

    for value, field, flag in (
        (gateway_id, GATEWAY_SCHEMA["id"], "--gateway-id"),
        (url, MQTT_SCHEMA["url"], "--broker"),
    ):
        try:
            field.convert(value)
        except ValueError:
            fail(f"{flag} {value!r}: expected {field.expected}", USAGE)


@click.command()
@config_option
@click.option("--gateway-id", help="Unique id, e.g. xz-liushu-017 (the MQTT client id).")
@click.option("--site", help="Site name shown to people, e.g. 柳墅村 17号.")
@click.option("--broker", "url", help="Broker URL: mqtts://host:8883 or mqtt://host:1883.")
@click.option("--username", help="Broker username (often the gateway id).")
@click.option(
    "--password-file", type=click.Path(dir_okay=False), help="File with the broker password (0600)."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin into --password-file."
)
@click.option("--data-dir", help=f"State directory [default: {DEFAULT_DATA_DIR}].")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    help="Command key file [default: command.key beside the config].",
)
@click.option("--topic-prefix", default="pingan/v1", show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option(
    "--new-key", is_flag=True, help="Replace an existing command key (tell the platform!)."
)
@click.option("--show-key", is_flag=True, help="Also print the key itself (keep it secret).")
@json_option
def init(
    config_path: str,
    gateway_id: str | None,
    site: str | None,
    url: str | None,
    username: str | None,
    password_file: str | None,
    password_stdin: bool,
    data_dir: str | None,
    key_file: str | None,
    topic_prefix: str,
    force: bool,
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

    if os.path.exists(config_path) and not force:
        fail(f"{config_path} exists already; use --force to replace it", USAGE)
    conf_dir = os.path.dirname(os.path.abspath(config_path))
    gateway_id = _ask(gateway_id, "--gateway-id", "Gateway id (e.g. xz-liushu-017)")
    site = _ask(site, "--site", "Site name", default="")
    url = _ask(url, "--broker", "Broker URL (mqtts://host:8883)")
    _validate_early(gateway_id, url)
    username = _ask(username, "--username", "Broker username (empty for none)", default="") or None
    data_dir = _ask(data_dir, "--data-dir", "Data directory", default=DEFAULT_DATA_DIR)
    key_file = key_file or os.path.join(conf_dir, "command.key")

    os.makedirs(conf_dir, mode=0o750, exist_ok=True)
    if username is not None:
        password_file = password_file or os.path.join(conf_dir, "mqtt.password")
        if password_stdin:
            write_secret(password_file, sys.stdin.readline().rstrip("\n"))
        elif not os.path.exists(password_file):
            if not interactive():
                fail(f"{password_file} does not exist; write it, or pass --password-stdin", USAGE)
            write_secret(password_file, click.prompt("Broker password", hide_input=True))
    elif password_file:
        fail("--password-file needs --username", USAGE)

    if os.path.exists(key_file) and not new_key:
        key = read_hex_key(key_file, 32)
        key_note = "kept the existing key"
    else:
        key = pysecrets.token_bytes(32)
        write_secret(key_file, key.hex())
        key_note = "new key, mode 0600"

    credentials = ""
    if username is not None:
        credentials = (
            f"username = {_q(username)}\npassword_file = {_q(password_file or '')}   # mode 0600\n"
        )
    values = {"id": _q(gateway_id), "site": _q(site), "data_dir": _q(data_dir), "url": _q(url)}
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
        if show_key:
            result["key"] = key.hex()
        print_json(result)
        return
    click.echo(f"✓ wrote {config_path}")
    click.echo(f"✓ command key {key_file} ({key_note})")
    click.echo("")
    click.echo("Tell the platform:")
    click.echo(f"  gateway id       {gateway_id}")
    click.echo(f"  key fingerprint  {fp}")
    if show_key:
        click.echo(f"  key              {key.hex()}")
    click.echo("")
    click.echo(
        "Next: wire the buses and add devices (gatewayd scan --help), then: gatewayd check --all"
    )
