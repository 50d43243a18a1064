"""The CLI's messages of `gatewayd pair`, each (English, 中文), merged into ``MESSAGES`` by
``gatewayd.cli.i18n_text``."""

from __future__ import annotations

PAIR: dict[str, tuple[str, str]] = {
    "pair_open": (
        "pair mode for {seconds} s on {bus}: press the pair button of each detector now",
        "{bus} 已进入配对模式 {seconds} 秒：请逐个按下探测器的配对键",
    ),
    "pair_left": ("pair mode: {seconds} s left", "配对模式：还剩 {seconds} 秒"),
    "pair_known": (
        "detector {address} joined: configured already as {device}",
        "探测器 {address} 已配对：已配置为 {device}",
    ),
    "pair_joined": (
        "detector {address} joined (model {model})",
        "探测器 {address} 已配对（型号 {model}）",
    ),
    "pair_unsupervised": (
        "an {model} sends no heartbeat: the gateway cannot tell when it stops working, and "
        "its radio code can be replayed; replace it with an SD-10 or SHD-20",
        "{model} 不发心跳：网关无法发现它失效，其无线编码可被录制重放；请换成 SD-10 或 SHD-20",
    ),
    "pair_ask_room": (
        "room of {address} (empty: do not add)",
        "{address} 所在房间（留空则不添加）",
    ),
    "pair_not_added": (
        "not added; later: gatewayd device add smoke-ROOM --bus {bus} --address {address} --room ROOM",
        "未添加；以后可运行：gatewayd device add smoke-ROOM --bus {bus} --address {address} --room ROOM",
    ),
    "pair_added": ("added {device} (room {room})", "已添加 {device}（房间 {room}）"),
    "pair_no_bus": ("no serial bus {name!r}", "没有串口总线 {name!r}"),
    "pair_buses": ("{count} serial buses", "有 {count} 条串口总线"),
    "pair_bus_first": (
        "{what} in {path}; add the receiver first: gatewayd scan serial --add (or give --bus)",
        "{path} 中{what}；请先添加接收器：gatewayd scan serial --add（或指定 --bus）",
    ),
    "pair_bad_room": (
        "--room {item!r}: expected ADDRESS=ROOM like 1A2B3C4D=301",
        "--room {item!r}：应为 地址=房间，如 1A2B3C4D=301",
    ),
    "pair_stopped": (
        "stopped (the receiver closes pair mode by itself)",
        "已停止（接收器会自行退出配对模式）",
    ),
    "pair_done": (
        "{joined} detectors joined, {added} added",
        "{joined} 个探测器已配对，已添加 {added} 个",
    ),
    "pair_reload_refused": (
        "the daemon refused the new config and runs on with the old one: {reason}",
        "守护进程拒绝了新配置，仍按旧配置运行：{reason}",
    ),
    "pair_reloaded": (
        "the daemon reloaded its config: it watches {devices} now",
        "守护进程已重新加载配置：现在监视 {devices}",
    ),
}
