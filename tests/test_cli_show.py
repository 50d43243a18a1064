"""What `gatewayd test`, `device list` and `device show` print for people: aligned words and
units, a pile that reports a fault never "✓ OK", no Python dicts, True or None; `--json`
gives machines the data (issue 19 item 5). `status` is covered in test_cli_daemon."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gatewayd.cli.main import cli
from tests.cli_support import ControlDaemon, gatewayd
from tests.harness import Broker, make_site, wait_until
from tests.test_cli_scan import EbcThread, piles

__all__ = ["piles"]  # the fixture, imported for pytest


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def test_test_through_the_daemon_a_faulted_pile_is_not_ok_in_words_and_units(
    tmp_path: Path, broker: Broker, piles: EbcThread
) -> None:
    body = (
        f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {piles.tcp_port}\n'
        "fast_seconds = 0.2\n\n"
        '[[devices]]\nid = "pile-2"\nkind = "charger"\nbus = "rs485"\nunit = 2\n'
    )
    site = make_site(tmp_path, broker.url, body)
    cfg = str(site.config)
    piles.call(_call(piles.emu.pile(2).inject_fault, 3, 3))  # a short circuit on port 3
    daemon = ControlDaemon(site)
    daemon.start()
    try:

        def faulted() -> Any:
            shown = gatewayd("--lang", "en", "test", "pile-2", "-c", cfg, "--json")
            answer = json.loads(shown.stdout or "{}")
            return answer if "pile_fault" in (answer.get("status") or []) else None

        answer = wait_until(faulted, 15, "the daemon to see pile-2's fault")
        text = gatewayd("--lang", "en", "test", "pile-2", "-c", cfg)
    finally:
        daemon.stop()
    # Machines: the data, as the daemon holds it.
    assert answer["ok"] is False and answer["source"] == "daemon"
    assert answer["online"] is True and isinstance(answer["ports"][0]["temperature_c"], float)
    # People: a verdict, words and units, the ports as a table.
    assert text.returncode == 1
    out = text.stdout
    assert out.splitlines()[-1] == "✗ pile-2: NOT OK"
    assert re.search(r"^  problems +fault on port\(s\) 3; pile_fault$", out, re.M), out
    assert re.search(r"^  online +yes$", out, re.M) and re.search(
        r"^  mains_v +\d+\.\d V$", out, re.M
    )
    assert re.search(r"^    port +state +relay +power_w +.*temperature_c +fault$", out, re.M), out
    assert re.search(r"^    3 +\w+ +(yes|no) +\d+ W +.* \d+\.\d °C +short_circuit$", out, re.M), out
    for raw in ("{", "[", "True", "False", "None", "'"):
        assert raw not in out, f"{raw!r} shown to people:\n{out}"


LONG_BUS = (
    '[[buses]]\nname = "rs485-basement-east-wing"\ndriver = "modbus"\nport = "/dev/ttyUSB0"\n\n'
    '[[buses]]\nname = "ble"\ndriver = "ble"\n\n'
    '[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "rs485-basement-east-wing"\nunit = 1\n\n'
    '[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "ble"\naddress = "C0:FF:EE:00:00:01"\n'
)


def test_device_list_keeps_its_columns_after_a_long_bus_name_and_show_has_words(
    tmp_path: Path,
) -> None:
    key = tmp_path / "door.key"
    key.write_text("00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    body = LONG_BUS + f'key_file = "{key}"\nescape_route = true\n'
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", body).config)
    runner = CliRunner()
    listed = runner.invoke(cli, ["--lang", "en", "device", "list", "-c", cfg]).output.splitlines()
    assert [ln.split()[0] for ln in listed] == ["pile-1", "door-main"]
    # Each column starts at the same place on every line, however long the bus name.
    for column in (("charger", "door_lock"), ("rs485-basement", "ble"), ("1", "C0:FF:EE")):
        assert len({ln.rindex(w) for ln, w in zip(listed, column, strict=True)}) == 1, listed

    shown = runner.invoke(cli, ["--lang", "en", "device", "show", "door-main", "-c", cfg]).output
    assert "True" not in shown and "None" not in shown, shown
    assert re.search(r"^escape_route +yes$", shown, re.M), shown
    assert re.search(r"^room +-$", shown, re.M), shown  # nothing written: a dash, not None
    assert re.search(r"^unlock_timeout_seconds +4\.0 s$", shown, re.M), shown
    machine = json.loads(
        runner.invoke(cli, ["device", "show", "door-main", "-c", cfg, "--json"]).output
    )
    assert machine["escape_route"] is True and machine["unlock_timeout_seconds"] == 4.0
