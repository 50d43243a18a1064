"""The CLI's messages of `gatewayd drill` (issue 14), each (English, 中文), merged into
``MESSAGES`` by ``gatewayd.cli.i18n_text``."""

from __future__ import annotations

DRILL: dict[str, tuple[str, str]] = {
    "drill_dry": (
        "fire drill done as {who}: nothing moved; below, what a fire would move at each step",
        "消防演练已完成（操作者 {who}）：未动作任何设备；以下为每一步火灾时将执行的动作",
    ),
    "drill_moved": (
        "fire drill done as {who}: {moved} action(s) done, {failed} failed (below)",
        "消防演练已完成（操作者 {who}）：{moved} 个动作已执行，{failed} 个失败（见下）",
    ),
    "drill_aborted": (
        "fire drill by {who} stopped: {reason}; the fire's linkage is in charge",
        "{who} 的消防演练已中止：{reason}；现由真实火警联动接管",
    ),
}
