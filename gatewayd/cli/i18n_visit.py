"""The CLI's messages added for the installer's visit, phase 2 of issue 19: `bus`, `scan ... --add`,
what a scan or a check says when the line is busy or refused, and the words and units of
`test`, `status` and `device show`. Each is (English, 中文), merged into ``MESSAGES`` by
``gatewayd.cli.i18n_text`` (kept apart so that table and this one can change side by side).
"""

from __future__ import annotations

VISIT: dict[str, tuple[str, str]] = {
    # -- check --all, a Bluetooth bus
    "adapter_in_use": (
        "{bus}: Bluetooth adapter {adapter} in use by the daemon ({count} lock(s) connected)",
        "{bus}：蓝牙适配器 {adapter} 正由守护进程使用（已连接 {count} 把锁）",
    ),
    "lock_test_it": (
        "{device}: check it with: gatewayd test {device}",
        "{device}：用 gatewayd test {device} 检查",
    ),
    "lock_connected": ("{device}: connected", "{device}：已连接"),
    "lock_not_connected": (
        "{device}: not connected; is it in range and powered? gatewayd scan ble",
        "{device}：未连接；门锁是否在范围内并已通电？gatewayd scan ble",
    ),
    # -- device state in words and units (gatewayd.cli.show)
    "show_yes": ("yes", "是"),
    "show_no": ("no", "否"),
    "show_ago": ("{ago} ago", "{ago}前"),
    # -- gatewayd test
    "test_no_device": (
        "no device {device} in {path} (devices: {known})",
        "{path} 中没有设备 {device}（现有设备：{known}）",
    ),
    # -- gatewayd status
    "status_seen": ("last seen {ago} ago", "{ago}前最后一次收到"),
    # -- gatewayd device list
    "dev_room": ("room {room}", "房间 {room}"),
}
