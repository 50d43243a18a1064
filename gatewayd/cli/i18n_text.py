"""The CLI's messages, each as (English, 中文). Keys are grouped by the command that says them.

Placeholders carry ids, paths, key names and commands, unchanged in both languages. One line,
one fix: say what happened and what to type next.
"""

from __future__ import annotations

from gatewayd.cli.i18n_drill import DRILL
from gatewayd.cli.i18n_pair import PAIR
from gatewayd.cli.i18n_phrases import CLICK, PHRASES, PROBLEMS, REFUSALS
from gatewayd.cli.i18n_visit import VISIT

__all__ = ["CLICK", "MESSAGES", "PHRASES", "PROBLEMS", "REFUSALS"]

MESSAGES: dict[str, tuple[str, str]] = {
    # -- everywhere
    "cannot_read": ("{path}: cannot read it ({reason})", "{path}：无法读取（{reason}）"),
    "config_ok": (
        "config {path}: gateway {gateway}, {buses} buses, {devices} devices",
        "配置 {path}：网关 {gateway}，{buses} 条总线，{devices} 台设备",
    ),
    "secrets_ok": (
        "secret files and private keys: {count}, each mode 0600",
        "密钥文件与私钥：{count} 个，权限均为 0600",
    ),
    "secret_owner": (
        "{path}: owned by {owner}, the service user {user} cannot read it; fix: chown {user}: {path}",
        "{path}：属主为 {owner}，服务用户 {user} 无法读取；修复：chown {user}: {path}",
    ),
    "uplink_estimate": (
        "uplink: about {mb} MB a month, {messages} messages a day, an estimate (MQTT bytes, "
        "no TCP/TLS) from {devices} devices and [uplink] report = {report}, at the use "
        "docs/integrator.md assumes",
        "上行流量：约每月 {mb} MB，每天 {messages} 条消息，为估算值（MQTT 字节，不含 TCP/TLS），"
        "依据 {devices} 台设备与 [uplink] report = {report}，按 docs/integrator.md 假设的使用情况",
    ),
    "uplink_unknown": (
        "uplink estimate leaves out {devices}: their device family says nothing of its traffic",
        "上行流量估算未计入 {devices}：其设备类型未说明流量",
    ),
    "fire_any_alarm_legacy": (
        'warning: rules.fire.door_release = "any_alarm" while {devices} cannot be supervised '
        "(legacy SD-1L: no heartbeat, a fixed radio code anyone can record and replay): one "
        'replayed frame opens the escape doors; use "confirmed" or replace the detector',
        '警告：rules.fire.door_release = "any_alarm"，而 {devices} 无法监测（老式 SD-1L：'
        '不发心跳，固定无线编码可被录制重放）：一帧重放即可打开逃生门；请改用 "confirmed" 或更换探测器',
    ),
    "data_dir_ok": ("data dir {path}: writable", "数据目录 {path}：可写"),
    "data_dir_missing": (
        "data dir {path}: does not exist; fix: install -d -m 0750 -o {user} -g {user} {path} (gatewayd install-service does it)",
        "数据目录 {path}：不存在；修复：install -d -m 0750 -o {user} -g {user} {path}（gatewayd install-service 会自动完成）",
    ),
    "data_dir_later": (
        "data dir {path}: created by gatewayd install-service (or at first start)",
        "数据目录 {path}：将由 gatewayd install-service（或首次启动时）创建",
    ),
    "data_dir_cannot": (
        "data dir {path}: cannot be created ({reason}); choose another data_dir in [gateway]",
        "数据目录 {path}：无法创建（{reason}）；请在 [gateway] 中另选 data_dir",
    ),
    "data_dir_ro": (
        "data dir {path}: not writable by {user}; fix: chown -R {user}: {path}",
        "数据目录 {path}：{user} 无写权限；修复：chown -R {user}: {path}",
    ),
    "data_dir_foreign": (
        "data dir {path}: {count} file(s) not owned by {user} (e.g. {example}), the service cannot write them; fix: chown -R {user}: {path}",
        "数据目录 {path}：有 {count} 个文件的属主不是 {user}（例如 {example}），服务无法写入；修复：chown -R {user}: {path}",
    ),
    "not_a_directory": ("{path} is not a directory", "{path} 不是目录"),
    "file_unreadable": ("{path}: cannot read it ({reason})", "{path}：无法读取（{reason}）"),
    "key_loose": (
        "{path}: a private key readable by group or others (mode {mode}); fix: chmod 600 {path}",
        "{path}：私钥可被同组或其他用户读取（权限 {mode}）；修复：chmod 600 {path}",
    ),
    "cert_unreadable": (
        "{path}: the service user {user} cannot read it; fix: chmod 644 {path}",
        "{path}：服务用户 {user} 无法读取；修复：chmod 644 {path}",
    ),
    "dbus_fast_ok": (
        "Bluetooth: dbus-fast runs compiled",
        "蓝牙：dbus-fast 以编译模式运行",
    ),
    "dbus_fast_slow": (
        "Bluetooth: dbus-fast runs without its compiled part (the slow pure-Python fallback); fix: sudo apt-get install -y build-essential python3-dev, then: pip install --force-reinstall --no-binary dbus-fast dbus-fast (docs/installer.md)",
        "蓝牙：dbus-fast 未使用编译部分（较慢的纯 Python 模式）；修复：sudo apt-get install -y build-essential python3-dev，然后：pip install --force-reinstall --no-binary dbus-fast dbus-fast（见 docs/installer.md）",
    ),
    "dbus_fast_missing": (
        "Bluetooth: dbus-fast is not installed (bleak needs it); fix: pip install dbus-fast",
        "蓝牙：未安装 dbus-fast（bleak 需要它）；修复：pip install dbus-fast",
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
    "config_denied": (
        "{path}: permission denied; run with sudo, or join the group {group}: sudo usermod -aG {group} $USER (then log in again)",
        "{path}：权限不足；请用 sudo 运行，或加入 {group} 组：sudo usermod -aG {group} $USER（然后重新登录）",
    ),
    "socket_denied": (
        "{path}: permission denied; run with sudo, or join the group {group}: sudo usermod -aG {group} $USER (then log in again)",
        "{path}：权限不足；请用 sudo 运行，或加入 {group} 组：sudo usermod -aG {group} $USER（然后重新登录）",
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
    "expected": ("expected {expected}", "应为{expected}"),
    "got": (", got {value}", "，实际为 {value}"),
    # -- status, alarm, the control socket
    "status_gateway": (
        "gateway {gateway} ({site}), gatewayd {version}, up {uptime}",
        "网关 {gateway}（{site}），gatewayd {version}，已运行 {uptime}",
    ),
    "status_counts": (
        "broker {broker}, outbox {outbox}, alarms {alarms}",
        "服务器{broker}，待发消息 {outbox} 条，告警 {alarms} 条",
    ),
    "status_waiting": (
        "waiting for the broker: oldest {oldest}, {mb} MB on disk",
        "等待服务器：最早一条已等 {oldest}，磁盘上 {mb} MB",
    ),
    "status_dropped": (", dropped: {drops}", "，已丢弃：{drops}"),
    "status_fire": (
        "FIRE MODE: reset with `gatewayd alarm reset` once safe",
        "火警模式：确认安全后用 `gatewayd alarm reset` 复位",
    ),
    "status_bus": ("bus {bus} ({driver})", "总线 {bus}（{driver}）"),
    "status_restarts": (", {count} restarts", "，已重启 {count} 次"),
    "status_unsupervised": (
        "  [UNSUPERVISED: {model}, no heartbeat: never reported missing]",
        "  【无监测：{model} 不发心跳，失效时不会报“失联”】",
    ),
    "status_no_news": ("no news yet", "尚无消息"),
    "status_last_seen": (" (last seen {ago} ago)", "（{ago}前最后一次收到）"),
    "alarm_fire": ("FIRE MODE", "火警模式"),
    "alarm_none": ("no active alarms", "没有告警"),
    "alarm_since": ("since {ago} ago", "已持续 {ago}"),
    "alarm_acked_by": (", acknowledged by {user}", "，{user} 已确认"),
    "alarm_awaiting": (", over: awaiting reset", "，已解除：等待复位"),
    "alarm_acked": ("{alarm} acknowledged by {who}", "{alarm} 已由 {who} 确认"),
    "alarm_reset": ("{alarm} reset by {who}", "{alarm} 已由 {who} 复位"),
    "alarm_fire_reset": ("fire mode reset by {who}", "火警模式已由 {who} 复位"),
    "alarm_no_fire": ("not in fire mode; nothing to reset", "不在火警模式；无需复位"),
    "alarm_note": (" (note: {note})", "（备注：{note}）"),
    "client_busy": (
        "{path}: the daemon accepts no connection (busy); try again",
        "{path}：守护进程忙，暂不接受连接；请重试",
    ),
    "client_hung_up": (
        "{path}: the daemon hung up ({reason})",
        "{path}：守护进程断开了连接（{reason}）",
    ),
    "client_no_answer": (
        "{path}: no answer from the daemon in {seconds} s",
        "{path}：守护进程 {seconds} 秒内没有应答",
    ),
    "client_closed": ("{path}: the daemon closed the connection", "{path}：守护进程关闭了连接"),
    "bad_ids": (
        "--ids {text!r}: expected ids {lo}..{hi} like 1-32 or 1,3,5-8",
        "--ids {text!r}：应为 {lo}..{hi} 的编号，如 1-32 或 1,3,5-8",
    ),
    # -- install-service, keygen
    "install_no_config": (
        "{path}: no such file; write it first: gatewayd init -c {path}",
        "{path}：文件不存在；请先运行：gatewayd init -c {path}",
    ),
    "install_no_unit": (
        "the unit file gatewayd.service is not installed with gatewayd; copy systemd/gatewayd.service from its source",
        "gatewayd 未附带 gatewayd.service 单元文件；请从源码复制 systemd/gatewayd.service",
    ),
    "install_sudo": (
        "install-service changes system files: run it with sudo (or see --dry-run)",
        "install-service 会修改系统文件：请用 sudo 运行（或先看 --dry-run）",
    ),
    "install_done": (
        "installed; watch it: journalctl -u gatewayd -f   and: gatewayd status",
        "安装完成；查看：journalctl -u gatewayd -f，以及：gatewayd status",
    ),
    "keygen_wrote": (
        "wrote {path} (mode 0600); fingerprint {fingerprint}",
        "已写入 {path}（权限 0600）；指纹 {fingerprint}",
    ),
    # -- events
    "events_bad_since": (
        "--since {value!r}: expected 90s, 30m, 1h, 2d, or a time like 08:00 or 2024-05-01 08:00",
        "--since {value!r}：应为 90s、30m、1h、2d，或 08:00、2024-05-01 08:00 这样的时间",
    ),
    "events_dropped": (
        "… {count} events dropped (this terminal was too slow)",
        "… 丢弃了 {count} 条事件（终端太慢）",
    ),
    "events_lost": (
        "… the daemon stopped; waiting for it to come back (Ctrl-C to stop)",
        "… 守护进程已停止；等待其恢复（Ctrl-C 退出）",
    ),
    "events_back": ("… the daemon is back; following again", "… 守护进程已恢复；继续跟踪"),
    # -- device, and the edits of gateway.toml
    "dev_no_bus": (
        "no bus {bus!r} in {path} (buses: {names})",
        "{path} 中没有总线 {bus!r}（现有总线：{names}）",
    ),
    "dev_give_kind": (
        "bus {bus} ({driver}) serves {kinds}: give --kind",
        "总线 {bus}（{driver}）可接 {kinds}：请指定 --kind",
    ),
    "dev_wrong_kind": (
        "bus {bus} ({driver}) has no {kind} devices (it serves {kinds})",
        "总线 {bus}（{driver}）不支持 {kind} 设备（它支持：{kinds}）",
    ),
    "dev_unknown_key": (
        "{key}: not a key of this device (known keys: {known})",
        "{key}：不是此设备的键（可用的键：{known}）",
    ),
    "dev_not_changed": ("not changed: {reason}", "未修改：{reason}"),
    "dev_give_bus": (
        "give --bus (the [[buses]] name the device is on)",
        "请指定 --bus（设备所在 [[buses]] 的 name）",
    ),
    "dev_key_value": ("{item!r}: expected KEY=VALUE", "{item!r}：应为 键=值"),
    "dev_added": (
        "added {device} ({kind} on {bus}) to {path}",
        "已将 {device}（{kind}，总线 {bus}）添加到 {path}",
    ),
    "dev_reload_add": (
        "a running daemon picks it up on: systemctl reload gatewayd",
        "运行中的守护进程在执行 systemctl reload gatewayd 后生效",
    ),
    "dev_removed": ("removed {device} ({kind} on {bus})", "已删除 {device}（{kind}，总线 {bus}）"),
    "dev_reload_remove": (
        "a running daemon forgets it on: systemctl reload gatewayd",
        "运行中的守护进程在执行 systemctl reload gatewayd 后不再监视它",
    ),
    "dev_none": (
        "no devices in {path}; add some: gatewayd device add --help",
        "{path} 中没有设备；添加设备：gatewayd device add --help",
    ),
    "dev_no_such": ("no device {device} in {path}", "{path} 中没有设备 {device}"),
    "edit_no_file": (
        "{path}: no such file; write one with: gatewayd init",
        "{path}：文件不存在；请先运行：gatewayd init",
    ),
    "edit_not_toml": ("{path}: not valid TOML ({reason})", "{path}：不是有效的 TOML（{reason}）"),
    "edit_gateway_id": (
        "{device} is the gateway's own id; choose another",
        "{device} 是网关自己的编号；请换一个",
    ),
    "edit_device_exists": (
        "a device {device} exists already (bus {bus})",
        "设备 {device} 已存在（总线 {bus}）",
    ),
    "edit_taken": (
        "{key} {value} is taken on bus {bus} by {other}",
        "{key} {value} 在总线 {bus} 上已被 {other} 占用",
    ),
    "edit_bus_exists": ("a bus {bus} exists already", "总线 {bus} 已存在"),
    # -- run
    "run_data_denied": (
        "{path}: permission denied: the data directory holds files {user} cannot write (left by `sudo gatewayd run`?); fix: sudo chown -R {user}: {data_dir}, then: sudo systemctl restart gatewayd",
        "{path}：权限不足：数据目录中有 {user} 无法写入的文件（可能是之前 `sudo gatewayd run` 留下的）；修复：sudo chown -R {user}: {data_dir}，然后：sudo systemctl restart gatewayd",
    ),
    # -- init
    "init_exists": (
        "{path} exists already; use --force to replace it",
        "{path} 已存在；如需替换请加 --force",
    ),
    "init_ask_id": ("Gateway id (e.g. xz-liushu-017)", "网关编号（例如 xz-liushu-017）"),
    "init_ask_site": ("Site name (e.g. 柳墅村 17号)", "站点名称（例如 柳墅村 17号）"),
    "init_ask_broker": ("Broker URL (mqtts://host:8883)", "服务器地址（mqtts://主机:8883）"),
    "init_too_many_brokers": (
        "--broker given {n} times: at most {most} nodes",
        "--broker 给了 {n} 个：最多 {most} 个节点",
    ),
    "init_ask_username": ("Broker username (empty for none)", "服务器用户名（无则留空）"),
    "init_ask_password": ("Broker password", "服务器密码"),
    "init_empty": ("an answer is needed", "此项必填"),
    "init_bad_value": ("{value!r}: expected {expected}", "{value!r}：应为{expected}"),
    "init_flag_required": (
        "{flag} is required (or run `gatewayd init` in a terminal to be asked)",
        "缺少 {flag}（或在终端中运行 `gatewayd init` 逐项填写）",
    ),
    "init_password_needs_user": (
        "--password-file needs --username",
        "--password-file 需要同时给出 --username",
    ),
    "init_no_password": (
        "{path} does not exist; write it, or pass --password-stdin",
        "{path} 不存在；请先写好该文件，或使用 --password-stdin",
    ),
    "init_would_remove": (
        "{path} is a configured gateway; the new file will not have:",
        "{path} 是已配置的网关；新文件将不再包含：",
    ),
    "init_lost_buses": ("{count} bus(es): {names}", "{count} 条总线：{names}"),
    "init_lost_devices": ("{count} device(s): {names}", "{count} 台设备：{names}"),
    "init_lost_rules": ("rule settings: {names}", "规则设置：{names}"),
    "init_need_yes": (
        "{path} would lose the buses and devices above; add --yes to replace it anyway (the old file is kept as a backup)",
        "{path} 将丢失以上总线和设备；如确需替换请加 --yes（旧文件会保留备份）",
    ),
    "init_confirm": (
        "Replace it? (the old file is kept as a backup)",
        "确定替换吗？（旧文件会保留备份）",
    ),
    "init_kept": ("{path} left as it was", "{path} 保持不变"),
    "init_backup": ("kept the old config as {path}", "旧配置已备份为 {path}"),
    "init_wrote": ("wrote {path}", "已写入 {path}"),
    "init_key": ("command key {path} ({note})", "命令密钥 {path}（{note}）"),
    "init_key_kept": ("kept the existing key", "沿用现有密钥"),
    "init_key_new": ("new key, mode 0600", "新密钥，权限 0600"),
    "init_tell": ("Tell the platform:", "请告知平台："),
    "init_tell_id": ("gateway id", "网关编号"),
    "init_tell_fp": ("key fingerprint", "密钥指纹"),
    "init_tell_key": ("key", "密钥"),
    "init_next": (
        "Next: wire the buses and add devices (gatewayd scan --help), then: gatewayd check --all",
        "下一步：接好总线并添加设备（gatewayd scan --help），然后运行：gatewayd check --all",
    ),
}

MESSAGES.update(VISIT)  # the installer's visit, phase 2 (issue 19): its own table
MESSAGES.update(DRILL)  # `gatewayd drill` (issue 14)
MESSAGES.update(PAIR)  # `gatewayd pair`
