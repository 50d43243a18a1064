"""An installer runs `gatewayd init` in a real terminal (tmux), answers its questions, and
reads the screen: the questions, then the gateway id and key fingerprint for the platform,
and never the typed password or the key."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import config
from gatewayd.commands.signing import fingerprint
from tests.ble_fixtures import BleWorld, ble_world
from tests.harness import REPO

__all__ = ["ble_world"]  # the fixture, imported for pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """A 120x40 tmux session on a private server socket (never the user's own tmux)."""

    def __init__(self, name: str, command: str, width: int = 120) -> None:
        self.base = ["tmux", "-L", name]
        self.name = name
        # The pane stays once the command ends (set before it starts: a quick one would win).
        self.run(
            "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-s", name, "-x", str(width), "-y", "40", command,
        )  # fmt: skip

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout

    def screen(self) -> str:
        """Everything the command wrote, scrolled off or not (a detached pane may shrink)."""
        return self.run("capture-pane", "-p", "-S", "-", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", self.name, "-l", text)
        self.run("send-keys", "-t", self.name, "Enter")

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10, check=False)


@pytest.fixture
def terminal_factory() -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    yield made
    for term in made:
        term.close()


def _init_command(cfg: Path, *extra: str) -> str:
    return " ".join(
        [
            f"cd {shlex.quote(str(REPO))} &&",
            shlex.quote(sys.executable), "-m", "gatewayd", "--lang", "en", "init",
            "-c", shlex.quote(str(cfg)), *map(shlex.quote, extra),
        ]
    )  # fmt: skip


def test_interactive_init_reads_like_a_conversation(
    tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    cfg = tmp_path / "etc" / "gateway.toml"
    command = _init_command(cfg)  # no --data-dir: it is never asked for
    term = Terminal(f"gwtest{os.getpid()}", command)
    terminal_factory.append(term)

    # A bad answer is said at once and the same question asked again.
    term.wait_for("Gateway id (e.g. xz-liushu-017):")
    term.type("bad id!")
    screen = term.wait_for("Error: 'bad id!': expected an id of letters")
    assert screen.count("Gateway id (e.g. xz-liushu-017):") == 2
    assert "Site name" not in screen
    term.type("xz-liushu-017")
    term.wait_for("Site name (e.g. 柳墅村 17号):")
    term.type("")  # the site is required: asked again
    time.sleep(0.3)
    assert term.screen().count("Site name (e.g. 柳墅村 17号):") == 2
    term.type("Liushu 17")
    term.wait_for("Broker URL (mqtts://host:8883):")
    term.type("http://wrong")
    screen = term.wait_for(
        "Error: 'http://wrong': expected mqtt://host[:port] or mqtts://host[:port]"
    )
    assert "Traceback" not in screen
    assert not cfg.exists()
    term.type("mqtt://127.0.0.1:1883")
    term.wait_for("Broker username (empty for none) []:")
    term.type("xz-liushu-017")
    term.wait_for("Broker password:")
    term.type("hunter2-very-secret")
    screen = term.wait_for("key fingerprint")
    assert "Data directory" not in screen

    key = bytes.fromhex((tmp_path / "etc" / "command.key").read_text().strip())
    assert "gateway id       xz-liushu-017" in screen
    assert f"key fingerprint  {fingerprint(key)}" in screen
    assert "hunter2-very-secret" not in screen  # the password was not echoed
    assert key.hex() not in screen
    loaded = config.load(str(cfg))
    assert (loaded.gateway_id, loaded.site, loaded.mqtt.username, loaded.data_dir) == (
        "xz-liushu-017",
        "Liushu 17",
        "xz-liushu-017",
        "/var/lib/gatewayd",
    )
    assert loaded.mqtt.password is not None and loaded.mqtt.password.value == b"hunter2-very-secret"


def test_init_force_asks_before_dropping_buses_and_devices(
    tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        '[gateway]\nid = "gw1"\n\n[mqtt]\nurl = "mqtt://x"\n\n'
        '[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "/dev/ttyUSB1"\n\n'
        '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "1A2B3C4D"\n'
    )
    before = cfg.read_text()
    command = _init_command(
        cfg, "--force", "--gateway-id", "gw1", "--site", "17", "--broker", "mqtt://x",
        "--username", "",
    )  # fmt: skip
    term = Terminal(f"gwtest{os.getpid()}c", command)
    terminal_factory.append(term)
    screen = term.wait_for("Replace it? (the old file is kept as a backup) [y/N]:")
    assert "1 bus(es): smoke-rx" in screen and "1 device(s): smoke-301" in screen
    term.type("n")
    term.wait_for(f"✗ {cfg} left as it was")
    assert cfg.read_text() == before
    assert not list(tmp_path.glob("gateway.toml.bak*"))


def test_pair_counts_down_and_asks_each_detectors_room(
    tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    from tests.cli_support import EmulatorThread

    receiver = EmulatorThread(tmp_path / "srb433")
    try:
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(
            '[gateway]\nid = "gw1"\nsite = "17"\n\n[mqtt]\nurl = "mqtt://x"\n\n'
            f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{receiver.rx.path}"\n'
        )
        command = " ".join(
            [f"cd {shlex.quote(str(REPO))} &&", shlex.quote(sys.executable), "-m", "gatewayd",
             "--lang", "en", "pair", "smoke", "--seconds", "8", "-c", shlex.quote(str(cfg))]
        )  # fmt: skip
        term = Terminal(f"gwtest{os.getpid()}p", command)
        terminal_factory.append(term)
        term.wait_for("press the pair button of each detector now")
        counts = set()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and len(counts) < 3:
            for line in term.screen().splitlines():
                if "pair mode: " in line and " s left" in line:
                    counts.add(int(line.split("pair mode: ")[1].split(" s left")[0]))
            time.sleep(0.2)
        assert len(counts) >= 3 and max(counts) <= 8, counts  # it counts down, second by second
        receiver.do(receiver.rx.queue_join, "1A2B3C4E")
        screen = term.wait_for("room of 1A2B3C4E (empty: do not add):")
        asked = next(ln for ln in screen.splitlines() if "room of 1A2B3C4E" in ln)
        assert "s left" not in asked  # the countdown made way for the question
        term.type("302")
        term.wait_for("added smoke-302 (room 302)")
        screen = term.wait_for("1 detectors joined, 1 added", timeout=15)
        done = next(ln for ln in screen.splitlines() if "1 detectors joined" in ln)
        assert done.strip() == "1 detectors joined, 1 added"  # no countdown left on it
    finally:
        receiver.close()
    assert config.load(str(cfg)).device("smoke-302") is not None


def _zh(*args: str, env: str = "") -> str:
    """A `gatewayd` command line as a Chinese-speaking installer's terminal runs it."""
    return " ".join(
        [f"cd {shlex.quote(str(REPO))} && LANG=zh_CN.UTF-8 LC_ALL= LC_MESSAGES= {env}",
         shlex.quote(sys.executable), "-m", "gatewayd", *map(shlex.quote, args)]
    )  # fmt: skip


def _finished(term: Terminal, timeout: float = 20) -> str:
    """The screen once the command ended, without tmux's own "Pane is dead" line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if term.run("display-message", "-p", "-t", term.name, "#{pane_dead}").strip() == "1":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"still running:\n{term.screen()}")
    return "\n".join(ln for ln in term.screen().splitlines() if not ln.startswith("Pane is dead"))


def test_a_chinese_installers_visit_has_no_english_sentence(
    tmp_path: Path, terminal_factory: list[Terminal], ble_world: BleWorld
) -> None:
    """LANG=zh_CN.UTF-8 through the whole visit: init → bus add → scan ble --add → pair →
    device add → test → check. Every screen in Chinese, keeping key names, ids, paths and
    commands in English; the lock on the fake BlueZ, the receiver on a pty."""
    from tests.ble_fixtures import ADDRESS, KEY, key_file
    from tests.cli_support import EmulatorThread, english_sentences

    ble_world.emu.add_lock(ADDRESS, KEY)
    bus_env = f"DBUS_SYSTEM_BUS_ADDRESS={shlex.quote(ble_world.bus.address)}"
    cfg = tmp_path / "etc" / "gateway.toml"
    screens: dict[str, str] = {}
    n = iter(range(100))

    def terminal(*args: str) -> Terminal:
        term = Terminal(f"gwzh{os.getpid()}{next(n)}", _zh(*args, env=bus_env), width=250)
        terminal_factory.append(term)
        return term

    # init, answering in a terminal; a bad id is answered in Chinese and asked again
    term = terminal("init", "-c", str(cfg), "--data-dir", str(tmp_path / "data"))
    term.wait_for("网关编号（例如 xz-liushu-017）:")
    term.type("坏 id")
    term.wait_for("错误：'坏 id'：应为由字母 A-Z a-z、数字 0-9")
    term.type("xz-liushu-017")
    term.wait_for("站点名称（例如 柳墅村 17号）:")
    term.type("柳墅村 17号")
    term.wait_for("服务器地址（mqtts://主机:8883）:")
    term.type("mqtt://127.0.0.1:9")
    term.wait_for("服务器用户名（无则留空） []:")
    term.type("")
    screens["init"] = _finished(term)
    assert "请告知平台：" in screens["init"] and "密钥指纹" in screens["init"]

    # the entrance lock: scan ble --add writes the Bluetooth bus and the lock with its key
    key = key_file(tmp_path / "etc", KEY, "door-main.key")
    term = terminal("scan", "ble", "--seconds", "2", "--add", "--key-file", key,
                    "escape_route=true", "-c", str(cfg))  # fmt: skip
    screens["scan ble --add"] = _finished(term, 40)
    assert f"{ADDRESS}  DL-B2" in screens["scan ble --add"]
    assert "✓ 已将总线 ble（驱动 ble）添加到" in screens["scan ble --add"]
    assert f"✓ 已添加 door-main（{ADDRESS}）" in screens["scan ble --add"]

    receiver = EmulatorThread(tmp_path / "srb433")
    try:
        term = terminal("bus", "add", "smoke-rx", "--driver", "serial",
                        f"port={receiver.rx.path}", "-c", str(cfg))  # fmt: skip
        screens["bus add"] = _finished(term)
        assert "✓ 已将总线 smoke-rx（驱动 serial）添加到" in screens["bus add"]
        term = terminal("pair", "smoke", "--seconds", "6", "-c", str(cfg))
        term.wait_for("配对模式：还剩")
        receiver.do(receiver.rx.queue_join, "1A2B3C4E")
        term.wait_for("1A2B3C4E 所在房间（留空则不添加）:")
        term.type("302")
        screens["pair"] = _finished(term)
        assert "已添加 smoke-302（房间 302）" in screens["pair"]
        assert "1 个探测器已配对，已添加 1 个" in screens["pair"]
    finally:
        receiver.close()

    term = terminal("device", "add", "smoke-303", "--bus", "smoke-rx", "--address", "1A2B3C4F",
                    "--room", "303", "-c", str(cfg))  # fmt: skip
    screens["device add"] = _finished(term)
    assert "已将 smoke-303（smoke，总线 smoke-rx）添加到" in screens["device add"]
    term = terminal("device", "add", "smoke-302", "--bus", "smoke-rx", "--address", "1A2B3C4F",
                    "-c", str(cfg))  # fmt: skip
    screens["device add, taken"] = _finished(term)
    assert "✗ 设备 smoke-302 已存在（总线 smoke-rx）" in screens["device add, taken"]

    term = terminal("test", "door-main", "-c", str(cfg))
    screens["test"] = _finished(term, 40)
    assert "✓ door-main：正常" in screens["test"]
    assert "lock             locked" in screens["test"] and "battery_mv" in screens["test"]

    term = terminal("check", "-c", str(cfg))
    screens["check"] = _finished(term)
    # (tmux 3.3 now and then draws a pane's very first glyph as "q": the mark is not asserted)
    assert " 配置 " in screens["check"] and "全部检查通过" in screens["check"]

    for step, screen in screens.items():
        assert english_sentences(screen) == [], f"{step}:\n{screen}"
