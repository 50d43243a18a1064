"""The CLI's messages added for the installer's visit, phase 2 of issue 19: `bus`, `scan ... --add`,
what a scan or a check says when the line is busy or refused, and the words and units of
`test`, `status` and `device show`. Each is (English, 中文), merged into ``MESSAGES`` by
``gatewayd.cli.i18n_text`` (kept apart so that table and this one can change side by side).
"""

from __future__ import annotations

VISIT: dict[str, tuple[str, str]] = {
    # -- test DEVICE without the daemon: what a pile or the smoke receiver answered
    "selftest_rx_silent": ("no answer on {port}", "{port} 上无应答"),
    "selftest_rx": (
        "answers on {port}, firmware {firmware}, {paired} detectors paired",
        "{port} 上有应答，固件 {firmware}，已配对 {paired} 个探测器",
    ),
    "selftest_detector": ("{address} (room {room})", "{address}（房间 {room}）"),
    "selftest_last_seen": (
        "shown by `gatewayd status` once the daemon runs; press its test button to hear it",
        "守护进程运行后由 `gatewayd status` 显示；按探测器的测试键可听到它",
    ),
    "selftest_hottest": ("{c} °C (port {port})", "{c} °C（{port} 号口）"),
    "selftest_none": ("none", "无"),
    "selftest_normal": ("normal", "正常"),
    # -- status: a smoke receiver and what it can sound (rev B: SOUND ALL)
    "status_receiver": (
        "receiver {bus}: firmware {version} (rev {rev}): {sound}",
        "接收器 {bus}：固件 {version}（rev {rev}）：{sound}",
    ),
    "status_sound_all_unsupported": (
        "no SOUND ALL (interconnection needs firmware 2.0)",
        "不支持 SOUND ALL（全楼联动鸣响需固件 2.0）",
    ),
    "status_sounding": ("SOUND ALL: every detector sounding", "SOUND ALL：所有探测器正在鸣响"),
    "status_sound_all_ready": ("SOUND ALL ready", "SOUND ALL 就绪"),
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
    "lock_key_refused": (
        "{device}: connected, but the lock refuses its key (bad MAC): is key_file this lock's key?",
        "{device}：已连接，但门锁拒绝密钥（MAC 错误）：key_file 是这把锁的密钥吗？",
    ),
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
    # -- gatewayd bus
    "bus_added": (
        "added bus {bus} (driver {driver}) to {path}",
        "已将总线 {bus}（驱动 {driver}）添加到 {path}",
    ),
    "bus_next": (
        "add its devices: gatewayd scan --help, or: gatewayd device add ID --bus {bus}",
        "添加其上的设备：gatewayd scan --help，或：gatewayd device add ID --bus {bus}",
    ),
    "bus_in_use": (
        "bus {bus} carries {devices}; remove them first (gatewayd device remove ID), or add --with-devices",
        "总线 {bus} 上还有设备 {devices}；请先删除它们（gatewayd device remove ID），或加 --with-devices",
    ),
    "bus_removed": ("removed bus {bus}", "已删除总线 {bus}"),
    "bus_removed_devices": (" and its devices {devices}", "及其设备 {devices}"),
    "bus_no_such": (
        "no bus {bus} in {path} (buses: {names})",
        "{path} 中没有总线 {bus}（现有总线：{names}）",
    ),
    "bus_none": (
        "no buses in {path}; add one: gatewayd bus add --help",
        "{path} 中没有总线；添加：gatewayd bus add --help",
    ),
    "bus_devices": ("{count} device(s)", "{count} 台设备"),
    # -- gatewayd scan ble
    "ble_no_adapter": (
        "Bluetooth {adapter}: {reason}; check: bluetoothctl list",
        "蓝牙 {adapter}：{reason}；检查：bluetoothctl list",
    ),
    "ble_configured": ("  (configured: {device})", "（已配置为 {device}）"),
    "ble_none": (
        "no locks heard; is the lock powered and within 10 m?",
        "未发现门锁；门锁是否已通电并在 10 米内？",
    ),
    "ble_add_hint": (
        "add it: gatewayd scan ble --add --key-file FILE (or: gatewayd device add door-main --kind {kind} --bus ble --address ADDRESS --key-file FILE)",
        "添加：gatewayd scan ble --add --key-file FILE（或：gatewayd device add door-main --kind {kind} --bus ble --address ADDRESS --key-file FILE）",
    ),
    "ble_not_heard": (
        "{address} was not heard in this scan; is it powered and within 10 m?",
        "本次扫描未发现 {address}；门锁是否已通电并在 10 米内？",
    ),
    "ble_which": (
        "several new locks heard ({addresses}); add one at a time: --address ADDRESS --key-file FILE",
        "发现多把新门锁（{addresses}）；请逐把添加：--address ADDRESS --key-file FILE",
    ),
    "ble_key_of": (
        "key file of {address} (empty: do not add)",
        "{address} 的密钥文件（留空则不添加）",
    ),
    "ble_no_key": (
        "{address}: not added without its key file; add it: gatewayd device add door-main --kind {kind} --bus {bus} --address {address} --key-file FILE",
        "{address}：没有密钥文件，未添加；添加：gatewayd device add door-main --kind {kind} --bus {bus} --address {address} --key-file FILE",
    ),
    "ble_added": ("added {device} ({address})", "已添加 {device}（{address}）"),
    "ble_bad_key": (
        "{address}: the lock refused our key (bad_mac); is key_file this lock's key? (the commissioning card inside its cover)",
        "{address}：门锁拒绝了密钥（bad_mac）；key_file 是这把锁的密钥吗？（见锁盖内的调试卡）",
    ),
    "ble_no_answer": (
        "{address}: {problem}; in range and powered? gatewayd scan ble",
        "{address}：{problem}；门锁是否在范围内并已通电？gatewayd scan ble",
    ),
    # -- before a scan opens a line (gatewayd.cli.lines)
    "line_daemon_holds": (
        "{port}: busy: the running daemon holds it (bus {bus}); see what it sees: gatewayd status, or stop it first: sudo systemctl stop gatewayd",
        "{port}：被占用：运行中的守护进程正在使用（总线 {bus}）；查看它看到的设备：gatewayd status，或先停止它：sudo systemctl stop gatewayd",
    ),
    "line_busy": (
        "{port}: busy (held by another program; find it: sudo fuser -v {port})",
        "{port}：被占用（另一个程序正在使用；查找：sudo fuser -v {port}）",
    ),
    "line_cannot_open": ("{port}: cannot open it ({reason})", "{port}：无法打开（{reason}）"),
    "line_refused": (
        "{host}:{port}: connection refused: nothing listens on that port; is it the device's Modbus TCP port (usually 502) and the right host?",
        "{host}:{port}：连接被拒绝：该端口无程序监听；这是设备的 Modbus TCP 端口（通常为 502）吗？主机地址对吗？",
    ),
    "line_unreachable": (
        "{host}:{port}: {reason}; check the host address, its power and the network",
        "{host}:{port}：{reason}；请检查主机地址、设备电源和网络",
    ),
    "scan_bus_exists": (
        "{where} is already bus {bus} in gateway.toml: added there, not to a new bus {asked}",
        "{where} 在 gateway.toml 中已是总线 {bus}：设备添加到该总线，而不是新建总线 {asked}",
    ),
}
