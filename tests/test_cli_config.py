"""`gatewayd init`, `check` and `device`, run as an installer runs them: real subprocesses for
the visit's main path, click's runner for the many small cases. Every refusal is one clear
line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatewayd import config
from gatewayd.cli.main import cli
from gatewayd.commands.signing import fingerprint
from tests.cli_support import gatewayd, one_clear_line


def init_site(tmp_path: Path, *extra: str) -> Path:
    cfg = tmp_path / "etc" / "gateway.toml"
    pw = tmp_path / "pw"
    pw.write_text("broker-secret\n")
    pw.chmod(0o600)
    result = gatewayd(
        "init", "-c", str(cfg), "--gateway-id", "xz-liushu-017", "--site", "柳墅村 17号",
        "--broker", "mqtts://broker.example.cn:8883", "--username", "xz-liushu-017",
        "--password-file", str(pw), "--data-dir", str(tmp_path / "data"), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return cfg


def test_init_from_flags_writes_a_config_check_accepts_and_prints_what_the_platform_needs(
    tmp_path: Path,
) -> None:
    cfg = init_site(tmp_path)
    key_file = tmp_path / "etc" / "command.key"
    key = bytes.fromhex(key_file.read_text().strip())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    out = gatewayd("init", "-c", str(tmp_path / "x.toml"), "--help").stdout
    assert "--show-key" in out
    loaded = config.load(str(cfg))
    assert (loaded.gateway_id, loaded.site, loaded.mqtt.username) == (
        "xz-liushu-017",
        "柳墅村 17号",
        "xz-liushu-017",
    )
    check = gatewayd("check", "-c", str(cfg))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "✓ config" in check.stdout and "✗" not in check.stdout
    # What the platform is told: the id and the fingerprint, never the key.
    again = gatewayd(
        "init", "-c", str(cfg), "--force", "--gateway-id", "xz-liushu-017", "--site", "柳墅村 17号",
        "--broker", "mqtt://127.0.0.1:1883", "--data-dir", str(tmp_path / "data"), "--json",
    )  # fmt: skip
    told = json.loads(again.stdout)
    assert told["fingerprint"] == fingerprint(key)  # the existing key was kept
    assert key.hex() not in again.stdout + again.stderr
    shown = gatewayd(
        "init", "-c", str(cfg), "--force", "--gateway-id", "xz-liushu-017", "--site", "17",
        "--broker", "mqtt://127.0.0.1:1883", "--data-dir", str(tmp_path / "data"), "--show-key",
    )  # fmt: skip
    assert key.hex() in shown.stdout and f"fingerprint  {fingerprint(key)}" in shown.stdout


def test_init_takes_each_node_of_a_cluster_in_order(tmp_path: Path) -> None:
    nodes = ["mqtts://n1.example.cn:8883", "mqtts://n2.example.cn:8883", "mqtts://10.0.0.3:8883"]
    cfg = tmp_path / "gateway.toml"
    base = ["init", "-c", str(cfg), "--gateway-id", "gw1", "--site", "17", "--data-dir",
            str(tmp_path / "d")]  # fmt: skip
    done = gatewayd(*base, *(a for n in nodes for a in ("--broker", n)))
    assert done.returncode == 0, done.stderr
    assert [b.url for b in config.load(str(cfg)).mqtt.brokers] == nodes
    assert 'url = ["mqtts://n1.example.cn:8883", "mqtts://n2' in cfg.read_text()
    cfg.unlink()
    line = one_clear_line(gatewayd(*base, "--broker", nodes[0], "--broker", "mqtt://bad host"))
    assert line.endswith(
        "--broker 'mqtt://bad host': expected mqtt://host[:port] or mqtts://host[:port]"
    )
    line = one_clear_line(gatewayd(*base, "--broker", nodes[0], "--broker", "mqtt://n2:1883"))
    assert "every url needs the same scheme as the first" in line
    line = one_clear_line(gatewayd(*base, *("--broker", nodes[0]) * 9))
    assert line.endswith("--broker given 9 times: at most 8 nodes")
    assert not cfg.exists()


def test_init_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    base = ["init", "-c", str(cfg), "--data-dir", str(tmp_path / "d"), "--site", "17"]
    line = one_clear_line(gatewayd(*base, "--gateway-id", "bad id!", "--broker", "mqtt://x"))
    assert "--gateway-id 'bad id!': expected an id of letters" in line
    line = one_clear_line(gatewayd(*base, "--gateway-id", "gw1", "--broker", "http://x"))
    assert line.endswith("--broker 'http://x': expected mqtt://host[:port] or mqtts://host[:port]")
    line = one_clear_line(gatewayd(*base, "--broker", "mqtt://x"))  # no terminal, no id
    assert "--gateway-id is required" in line
    assert not cfg.exists()
    cfg.write_text("")
    line = one_clear_line(gatewayd(*base, "--gateway-id", "gw1", "--broker", "mqtt://x"))
    assert "exists already; use --force" in line


def test_init_from_flags_needs_the_site_as_the_docs_say(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    flags = ["init", "-c", str(cfg), "--gateway-id", "gw1", "--broker", "mqtt://x"]
    line = one_clear_line(gatewayd(*flags))
    assert line == "✗ --site is required (or run `gatewayd init` in a terminal to be asked)"
    assert one_clear_line(gatewayd(*flags, "--site", " ")).startswith("✗ --site is required")
    assert not cfg.exists()
    assert gatewayd(*flags, "--site", "柳墅村 17号").returncode == 0
    assert config.load(str(cfg)).site == "柳墅村 17号"


def test_init_force_on_a_configured_gateway_says_what_goes_asks_and_keeps_a_backup(
    tmp_path: Path,
) -> None:
    cfg = edited_site(tmp_path)
    before = cfg.read_text()
    again = ["init", "-c", str(cfg), "--force", "--gateway-id", "xz-liushu-017", "--site",
             "17", "--broker", "mqtt://127.0.0.1:1883", "--data-dir", str(tmp_path / "data")]  # fmt: skip
    refused = gatewayd(*again)  # no terminal to ask in, no --yes
    assert refused.returncode == 2
    assert "2 bus(es): rs485, smoke-rx" in refused.stderr
    assert "2 device(s): pile-1, smoke-301" in refused.stderr
    assert "rule settings: charger_overheat" in refused.stderr
    assert refused.stderr.rstrip().splitlines()[-1].startswith("✗ ")
    assert "add --yes to replace it anyway" in refused.stderr
    assert cfg.read_text() == before
    assert not list(tmp_path.glob("etc/gateway.toml.bak*"))
    done = gatewayd(*again, "--yes")
    assert done.returncode == 0, done.stderr
    [backup] = tmp_path.glob("etc/gateway.toml.bak-*")
    assert backup.read_text() == before  # every bus, device and comment kept there
    assert stat.S_IMODE(backup.stat().st_mode) == stat.S_IMODE(cfg.stat().st_mode)
    assert f"✓ kept the old config as {backup}" in done.stdout
    assert config.load(str(cfg)).devices == ()
    # Without buses or devices to lose, nothing is asked; a backup is still kept.
    assert gatewayd(*again).returncode == 0
    assert len(list(tmp_path.glob("etc/gateway.toml.bak-*"))) == 2


def test_check_names_a_loose_secret_and_the_fix_in_one_line(tmp_path: Path) -> None:
    cfg = init_site(tmp_path)
    (tmp_path / "pw").chmod(0o644)
    result = gatewayd("check", "-c", str(cfg))
    assert result.returncode == 2
    line = one_clear_line(result)
    assert "mqtt.password_file" in line and f"chmod 600 {tmp_path / 'pw'}" in line


def test_check_json_is_a_checklist_a_script_can_read(tmp_path: Path) -> None:
    cfg = init_site(tmp_path)
    result = gatewayd("check", "-c", str(cfg), "--json")
    assert result.returncode == 0
    body = json.loads(result.stdout)
    assert body["ok"] is True
    checks = [c["check"] for c in body["checks"]]
    assert checks == ["config", "secrets", "data_dir", "uplink_volume"]
    assert body["checks"][-1]["ok"] is None  # the uplink estimate is a note, never a ✗


def test_check_all_reports_unreachable_broker_and_missing_port_with_what_to_do(
    tmp_path: Path,
) -> None:
    cfg = init_site(tmp_path)
    body = cfg.read_text().replace("mqtts://broker.example.cn:8883", "mqtt://127.0.0.1:9")
    cfg.write_text(
        body + f'\n[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{tmp_path}/ttyUSB9"\n'
    )
    result = gatewayd("check", "--all", "-c", str(cfg))
    assert result.returncode == 1
    assert "· daemon not running" in result.stdout
    assert "✗ broker mqtt://127.0.0.1:9: cannot connect to 127.0.0.1:9" in result.stdout
    assert (
        f"✗ smoke-rx: serial port {tmp_path}/ttyUSB9 does not exist; plug the adapter in"
        in result.stdout
    )
    assert "2 check(s) failed" in result.stdout
    zh = gatewayd("--lang", "zh", "check", "--all", "-c", str(cfg))
    assert "串口" in zh.stdout and "项检查未通过" in zh.stdout


EXAMPLE_EDIT = """\
[[buses]]
name = "rs485"   # the line in the bike shed
driver = "modbus"
port = "/dev/ttyUSB0"

[[buses]]
name = "smoke-rx"
driver = "serial"
port = "/dev/ttyUSB1"

# pile by the gate
[[devices]]
id = "pile-1"
kind = "charger"
bus = "rs485"
unit = 1   # set on its DIP switches

# the hallway detector
[[devices]]
id = "smoke-301"
kind = "smoke"
bus = "smoke-rx"
address = "1A2B3C4D"
room = "301"

[rules.charger_overheat]
port_max_celsius = 60   # the fire brigade asked for 60
"""


def edited_site(tmp_path: Path) -> Path:
    cfg = init_site(tmp_path)
    with cfg.open("a") as f:
        f.write("\n" + EXAMPLE_EDIT)
    return cfg


def test_device_add_and_remove_keep_every_comment(tmp_path: Path) -> None:
    cfg = edited_site(tmp_path)
    cfg.chmod(0o640)
    before = cfg.read_text()
    added = gatewayd(
        "device",
        "add",
        "pile-2",
        "--bus",
        "rs485",
        "--kind",
        "charger",  # the line carries other families too (an installed plugin's)
        "--unit",
        "2",
        "failsafe_seconds=600",
        "-c",
        str(cfg),
    )
    assert added.returncode == 0, added.stderr
    assert "✓ added pile-2 (charger on rs485)" in added.stdout
    after = cfg.read_text()
    for comment in (
        "# the line in the bike shed",
        "# set on its DIP switches",
        "# the fire brigade asked for 60",
        "# pile by the gate",
    ):
        assert comment in after
    assert after.startswith(before.split("[rules.charger_overheat]")[0])  # untouched above
    dev = config.load(str(cfg)).device("pile-2")
    assert dev is not None and (dev.settings["unit"], dev.settings["failsafe_seconds"]) == (2, 600)
    assert after.index('id = "pile-2"') < after.index("[rules.charger_overheat]")

    removed = gatewayd("device", "remove", "pile-1", "-c", str(cfg))
    assert removed.returncode == 0, removed.stderr
    text = cfg.read_text()
    assert 'id = "pile-1"' not in text and "# pile by the gate" not in text  # its own comment went
    for comment in (
        "# the line in the bike shed",
        "# the hallway detector",
        "# the fire brigade asked for 60",
    ):
        assert comment in text
    assert [d.id for d in config.load(str(cfg)).devices] == ["smoke-301", "pile-2"]
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640  # the atomic replace kept the mode


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (
            ["pile-1", "--bus", "rs485", "--kind", "charger", "--unit", "5"],
            "a device pile-1 exists already (bus rs485)",
            2,
        ),
        (
            ["pile-9", "--bus", "rs485", "--kind", "charger", "--unit", "1"],
            "unit 1 is taken on bus rs485 by pile-1",
            2,
        ),
        (
            ["smoke-9", "--bus", "smoke-rx", "--address", "1a2b3c4d"],
            "address 1a2b3c4d is taken on bus smoke-rx by smoke-301",
            2,
        ),
        (
            ["pile-9", "--bus", "rs485", "--kind", "charger", "--unit", "300"],
            "unit=300: expected an integer 1..247",
            2,
        ),
        (
            ["pile-9", "--bus", "rs485", "--kind", "charger", "--unit", "9", "colour=red"],
            "colour: not a key of this device",
            2,
        ),
        (["pile-9", "--bus", "nowhere", "--unit", "9"], "no bus 'nowhere'", 2),
        (
            ["smoke-9", "--bus", "smoke-rx", "--kind", "charger"],
            "bus smoke-rx (serial) has no charger devices",
            2,
        ),
        (["smoke-9", "--bus", "smoke-rx"], "devices[2].address: missing; expected 8 hex digits", 2),
        (
            ["xz-liushu-017", "--bus", "rs485", "--kind", "charger", "--unit", "9"],
            "the gateway's own id",
            2,
        ),
    ],
)
def test_device_add_refusals_are_one_line_and_change_nothing(
    tmp_path: Path, args: list[str], message: str, code: int
) -> None:
    cfg = edited_site(tmp_path)
    before = cfg.read_text()
    result = CliRunner().invoke(cli, ["device", "add", *args, "-c", str(cfg)])
    assert result.exit_code == code, result.output
    assert message in result.output and result.output.count("\n") == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert cfg.read_text() == before


def test_device_list_show_and_remove_unknown(tmp_path: Path) -> None:
    cfg = edited_site(tmp_path)
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["device", "list", "-c", str(cfg), "--json"]).output)
    assert [(d["id"], d["kind"], d["bus"]) for d in listed] == [
        ("pile-1", "charger", "rs485"),
        ("smoke-301", "smoke", "smoke-rx"),
    ]
    shown = json.loads(
        runner.invoke(cli, ["device", "show", "pile-1", "-c", str(cfg), "--json"]).output
    )
    assert (
        shown["unit"] == 1 and shown["failsafe_seconds"] == 300
    )  # the driver's default, filled in
    text = runner.invoke(cli, ["device", "show", "smoke-301", "-c", str(cfg)]).output
    assert "room" in text and "301" in text
    gone = runner.invoke(cli, ["device", "remove", "pile-7", "-c", str(cfg)])
    assert gone.exit_code == 3 and gone.output == f"✗ no device pile-7 in {cfg}\n"
    missing = runner.invoke(cli, ["device", "list", "-c", str(tmp_path / "nope.toml")])
    assert (
        missing.exit_code == 2 and "no such file; write one with: gatewayd init" in missing.output
    )


def test_lock_key_file_is_validated_and_shown_as_a_path(tmp_path: Path) -> None:
    cfg = init_site(tmp_path)
    with cfg.open("a") as f:
        f.write('\n[[buses]]\nname = "ble"\ndriver = "ble"\n')
    key = tmp_path / "door.key"
    key.write_text(os.urandom(16).hex())
    key.chmod(0o644)
    runner = CliRunner()
    args = [
        "device",
        "add",
        "door-main",
        "--bus",
        "ble",
        "--address",
        "C0:FF:EE:00:00:01",
        "--key-file",
        str(key),
        "escape_route=true",
        "-c",
        str(cfg),
    ]
    loose = runner.invoke(cli, args)
    assert loose.exit_code == 2 and f"chmod 600 {key}" in loose.output
    key.chmod(0o600)
    ok = runner.invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(cli, ["device", "show", "door-main", "-c", str(cfg), "--json"]).output
    assert json.loads(shown)["key_file"] == str(key) and key.read_text() not in shown
    assert json.loads(shown)["escape_route"] is True


def test_help_is_fast_and_lists_every_group() -> None:
    import time

    t0 = time.monotonic()
    result = gatewayd("--help")
    assert time.monotonic() - t0 < 5
    for name in (
        "init",
        "device",
        "scan",
        "pair",
        "test",
        "check",
        "status",
        "events",
        "alarm",
        "install-service",
    ):
        assert f"  {name} " in result.stdout
    usage = gatewayd("device", "frobnicate")
    assert (
        usage.returncode == 2
        and "No such command 'frobnicate'" in usage.stderr
        and "Traceback" not in usage.stderr
    )


def test_an_unexpected_error_is_one_line_unless_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = edited_site(tmp_path)

    def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("gatewayd.cli.editing.ConfigText.write", broken)
    runner = CliRunner()
    plain = runner.invoke(cli, ["device", "remove", "pile-1", "-c", str(cfg)])
    assert plain.exit_code == 1
    again = f"gatewayd --debug device remove pile-1 -c {cfg}"
    assert plain.output == f"✗ RuntimeError: disk on fire (for details run again as: {again})\n"
    debug = runner.invoke(cli, again.split()[1:])
    assert isinstance(debug.exception, RuntimeError)  # the traceback a developer asked for
    # --debug is the program's option, but a person types it at the end too.
    late = runner.invoke(cli, ["device", "remove", "pile-1", "-c", str(cfg), "--debug"])
    assert isinstance(late.exception, RuntimeError)
