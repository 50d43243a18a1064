"""LANG=zh_CN.UTF-8: every message an installer or an operator reads comes in Chinese, config
errors, status, alarms, pair and click's own usage errors included, with the English key
names, ids, values and commands kept as they are for searching and typing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gatewayd.cli.i18n_text import MESSAGES
from tests.cli_support import (
    DETECTOR,
    ZH,
    ControlDaemon,
    EmulatorThread,
    english_sentences,
    gatewayd,
    one_clear_line,
)
from tests.harness import Broker, make_site, smoke_config, wait_until


def test_every_message_has_chinese_with_the_same_placeholders() -> None:
    for key, (en, zh) in MESSAGES.items():
        assert zh and re.search(r"[\u4e00-\u9fff]", zh), key
        assert set(re.findall(r"{(\w+)", en)) == set(re.findall(r"{(\w+)", zh)), key


def test_the_detector_of_english_sentences_finds_them() -> None:
    """The guard of the tests below must be able to fail."""
    assert english_sentences("✗ the daemon is not running (no control socket)")
    assert not english_sentences(
        "✗ /etc/gatewayd/gateway.toml：权限不足；请用 sudo 运行，或加入 gatewayd 组："
        "sudo usermod -aG gatewayd $USER（然后重新登录）"
    )
    assert not english_sentences("已将 smoke-302（smoke，总线 smoke-rx）添加到 /tmp/gateway.toml")


BROKEN = {
    "unknown-key": (
        '[[buses]]\nname = "rx"\ndriver = "serial"\nprot = "/dev/ttyUSB0"\n',
        "buses[0].prot",
    ),
    "missing": ('[[buses]]\nname = "rx"\ndriver = "serial"\n', "buses[0].port"),
    "baud": (
        '[[buses]]\nname = "rx"\ndriver = "serial"\nport = "/dev/ttyUSB0"\nbaudrate = 9601\n',
        "buses[0].baudrate",
    ),
    "range": (
        '[[buses]]\nname = "rs485"\ndriver = "modbus"\nport = "/dev/ttyUSB0"\n\n'
        '[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "rs485"\nunit = 300\n',
        "devices[0].unit",
    ),
    "no-bus": (
        '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "rx"\naddress = "1A2B3C4D"\n',
        "devices[0].bus",
    ),
    "fire-typo": (
        '[rules.fire]\nrelease_doors_on = ["smoke-3O1"]\n',
        "rules.fire.release_doors_on",
    ),
    "listen": ('[metrics]\nlisten = "0.0.0.0:99999"\n', "metrics.listen"),
    "section": ("[gatway]\nid = 1\n", "gatway"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_config_errors_in_chinese_keep_the_key(tmp_path: Path, case: str) -> None:
    body, key = BROKEN[case]
    cfg = make_site(tmp_path, "mqtt://127.0.0.1:9", body).config
    line = one_clear_line(gatewayd("check", "-c", str(cfg), env=ZH))
    assert key in line and re.search(r"[\u4e00-\u9fff]", line), line
    assert english_sentences(line) == [], line


def test_a_pasted_key_is_not_echoed_in_chinese_either(tmp_path: Path) -> None:
    key = "ab" * 32
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    site.config.write_text(site.config.read_text().replace(str(tmp_path / "command.key"), key))
    line = one_clear_line(gatewayd("check", "-c", str(site.config), env=ZH))
    assert key not in line and "security.command_key_file" in line and "文件不存在" in line
    assert english_sentences(line) == [], line


def test_a_loose_secret_is_said_in_chinese_with_its_fix(tmp_path: Path) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    (tmp_path / "command.key").chmod(0o644)
    line = one_clear_line(gatewayd("check", "-c", str(site.config), env=ZH))
    assert f"chmod 600 {tmp_path / 'command.key'}" in line and "同组或其他用户可读" in line
    assert english_sentences(line) == []


def test_clicks_own_messages_in_chinese() -> None:
    typo = gatewayd("staus", env=ZH)
    assert typo.returncode == 2
    assert "用法：" in typo.stderr and "错误：没有命令 'staus'。" in typo.stderr
    assert "status" in typo.stderr
    option = gatewayd("status", "--colour", env=ZH)
    assert option.returncode == 2 and "错误：没有此选项" in option.stderr
    choice = gatewayd("device", "add", "x", "--kind", "lamp", env=ZH)
    assert choice.returncode == 2 and "的值无效" in choice.stderr
    for out in (typo, option, choice):
        assert english_sentences(out.stderr) == [], out.stderr
    assert "Usage:" in gatewayd("staus", env={"LANG": "en_US.UTF-8"}).stderr


def test_status_and_alarms_in_chinese(
    tmp_path: Path, broker: Broker, smoke_receiver: EmulatorThread
) -> None:
    site = make_site(
        tmp_path, broker.url, smoke_config(smoke_receiver.rx.path, {"smoke-301": DETECTOR})
    )
    daemon = ControlDaemon(site)
    daemon.start()
    try:
        cfg = str(site.config)
        smoke_receiver.call(smoke_receiver.rx.detector(DETECTOR).heartbeat(battery_mv=2950))

        def heard() -> Any:
            shown = gatewayd("status", "-c", cfg, env=ZH)
            return shown if "前最后一次收到" in shown.stdout else None

        status = wait_until(heard, 10, "the heartbeat in the status")
        assert status.returncode == 0, status.stderr
        assert "网关 gw-test" in status.stdout and "总线 smoke-rx（serial）" in status.stdout
        assert english_sentences(status.stdout) == [], status.stdout  # device states too
        assert "battery_mv 2950 mV  rssi_dbm -60 dBm" in status.stdout
        assert gatewayd("alarm", "list", "-c", cfg, env=ZH).stdout.strip() == "没有告警"
        smoke_receiver.call(smoke_receiver.rx.detector(DETECTOR).alarm(120))
        wait_until(
            lambda: "smoke-301/smoke.alarm" in gatewayd("alarm", "list", "-c", cfg).stdout, 10,
            "the smoke alarm",
        )  # fmt: skip
        listed = gatewayd("alarm", "list", "-c", cfg, env=ZH).stdout
        assert "火警模式" in listed and "已持续" in listed
        acked = gatewayd("alarm", "ack", "smoke-301/smoke.alarm", "-c", cfg, "--note", "Li", env=ZH)
        assert "smoke-301/smoke.alarm 已由 root（备注：Li） 确认" in acked.stdout
        refused = gatewayd("alarm", "reset", "-c", cfg, env=ZH)  # the detector still reports
        line = one_clear_line(refused)
        assert line == "✗ gw-test/gateway.fire_mode 仍在告警（探测器 smoke-301）：解除后再复位"
        unknown = one_clear_line(gatewayd("alarm", "ack", "nope/x", "-c", cfg, env=ZH))
        assert unknown == "✗ 没有告警 'nope/x'"
        for out in (listed, acked.stdout, line, unknown):
            assert english_sentences(out) == [], out
    finally:
        daemon.stop()
    gone = one_clear_line(gatewayd("status", "-c", cfg, env=ZH))
    assert "守护进程未运行" in gone and english_sentences(gone) == []
