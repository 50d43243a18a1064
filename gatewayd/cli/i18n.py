"""A small message table: English and Chinese for what an installer reads most.

The language is ``--lang`` on the command line, else the locale ($LC_ALL, $LC_MESSAGES, $LANG
starting with ``zh``). A key missing in Chinese falls back to English; a missing key shows
itself, so a typo is visible rather than a crash. Keep messages short: one line, one fix.
"""

from __future__ import annotations

import os

_lang = ""

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (English, 中文)
    "cannot_read": ("{path}: cannot read it ({reason})", "{path}：无法读取（{reason}）"),
    "config_ok": (
        "config {path}: gateway {gateway}, {buses} buses, {devices} devices",
        "配置 {path}：网关 {gateway}，{buses} 条总线，{devices} 台设备",
    ),
    "secrets_ok": ("secret files: {count}, each mode 0600", "密钥文件：{count} 个，均为 0600"),
    "secret_owner": (
        "{path}: owned by {owner}, the service user {user} cannot read it; fix: chown {user}: {path}",
        "{path}：属主为 {owner}，服务用户 {user} 无法读取；修复：chown {user}: {path}",
    ),
    "data_dir_ok": ("data dir {path}: writable", "数据目录 {path}：可写"),
    "data_dir_missing": (
        "data dir {path}: does not exist; fix: install -d -m 0750 -o {user} {path}",
        "数据目录 {path}：不存在；修复：install -d -m 0750 -o {user} {path}",
    ),
    "data_dir_ro": (
        "data dir {path}: not writable by {user}; fix: chown -R {user}: {path}",
        "数据目录 {path}：{user} 无写权限；修复：chown -R {user}: {path}",
    ),
    "broker_ok": ("broker {url}: {detail}", "服务器 {url}：{detail}"),
    "broker_bad": ("broker {url}: {detail}", "服务器 {url}：{detail}"),
    "daemon_running": (
        "daemon running (pid {pid}, up {uptime}), broker {broker}",
        "守护进程运行中（pid {pid}，已运行 {uptime}），服务器{broker}",
    ),
    "daemon_stopped": ("daemon not running", "守护进程未运行"),
    "connected": ("connected", "已连接"),
    "offline": ("offline", "离线"),
    "no_daemon": (
        "the daemon is not running (no control socket at {where}); start it: systemctl start gatewayd",
        "守护进程未运行（{where} 无控制套接字）；启动：systemctl start gatewayd",
    ),
    "socket_denied": (
        "{path}: permission denied; run with sudo or join the group {group}",
        "{path}：权限不足；请用 sudo 运行或加入 {group} 组",
    ),
    "port_missing": (
        "{bus}: serial port {port} does not exist; plug the adapter in, or run: gatewayd scan serial",
        "{bus}：串口 {port} 不存在；请插好适配器，或运行：gatewayd scan serial",
    ),
    "port_ok": ("{bus}: serial port {port} present", "{bus}：串口 {port} 存在"),
    "host_ok": ("{bus}: {host}:{port} reachable", "{bus}：{host}:{port} 可达"),
    "host_bad": (
        "{bus}: {host}:{port} unreachable ({reason}); check the cable and the pile's IP address",
        "{bus}：{host}:{port} 不可达（{reason}）；请检查网线和充电桩 IP 地址",
    ),
    "adapter_ok": (
        "{bus}: Bluetooth adapter {adapter} present",
        "{bus}：蓝牙适配器 {adapter} 存在",
    ),
    "adapter_bad": (
        "{bus}: Bluetooth adapter {adapter} not found; check: bluetoothctl list",
        "{bus}：未找到蓝牙适配器 {adapter}；检查：bluetoothctl list",
    ),
    "all_ok": ("all checks passed", "全部检查通过"),
    "some_failed": ("{count} check(s) failed", "{count} 项检查未通过"),
    "verdict_ok": ("{device}: OK", "{device}：正常"),
    "verdict_bad": ("{device}: NOT OK", "{device}：异常"),
    "interrupted": ("interrupted", "已中断"),
    "no_such_command": ("no such command {name!r}.", "没有命令 {name!r}。"),
    "did_you_mean": ("Did you mean: {names}?", "您是否要输入：{names}？"),
    "see_help": ("The commands: gatewayd --help", "命令列表：gatewayd --help"),
    "run_debug": ("for details run again as: {command}", "查看详情请重新运行：{command}"),
}


def set_lang(lang: str | None) -> None:
    global _lang
    _lang = lang or ""


def lang() -> str:
    if _lang:
        return _lang
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def t(key: str, **values: object) -> str:
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[1] if lang() == "zh" and pair[1] else pair[0]
    return text.format(**values)
