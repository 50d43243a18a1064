"""Words people read, zh-CN first, English beside: the only place page text and result
messages are written. A tenant reads outcomes (opened / door offline / refused), never codes."""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("zh", "en")

TEXT: dict[str, tuple[str, str]] = {
    # outcomes of a tap, by the gateway's result code or the relay's own refusal
    "ok": ("门已打开", "The door is open"),
    "offline": (
        "门禁离线，请稍后再试或联系房东",
        "The door is offline; try again later or call your landlord",
    ),
    "device_error": ("门锁没有执行，请再试一次", "The lock did not open; please try again"),
    "timeout": ("门锁没有响应，请再试一次", "The lock did not answer; please try again"),
    "rate_limited": ("操作太频繁，请一分钟后再试", "Too many tries; wait a minute"),
    "forbidden": (
        "门禁暂时不能操作（可能处于消防状态）",
        "The door cannot be operated now (fire mode?)",
    ),
    "setup": ("系统设置有误，请联系房东", "Set-up problem; please tell your landlord"),
    "revoked": ("您的开门权限已被收回", "Your access to this door has been withdrawn"),
    "no_grant": ("您没有这扇门的开门权限", "You may not open this door"),
    "not_yet": ("您的开门权限尚未生效", "Your access has not started yet"),
    "expired": ("您的开门权限已过期", "Your access has expired"),
    "outside_hours": ("现在不在允许开门的时段", "Not within your allowed hours"),
    "used_up": ("访客通行次数已用完", "This visitor pass has been used up"),
    # pages
    "app_name": ("平安门禁", "Pingan Access"),
    "my_doors": ("我的门", "My doors"),
    "open": ("开门", "Open"),
    "opening": ("正在开门…", "Opening…"),
    "no_doors": ("暂无可开的门", "No doors yet"),
    "load_failed": ("暂时无法加载，正在重试…", "Could not load; trying again…"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_failed": ("用户名或密码错误", "Wrong username or password"),
    "login_limited": ("尝试次数过多，请稍后再试", "Too many attempts; try again later"),
    "houses": ("房屋", "Houses"),
    "doors": ("门", "Doors"),
    "people": ("租户与访客", "Tenants and visitors"),
    "log": ("开门记录", "Unlock log"),
    "alarms": ("警情", "Alarms"),
    "no_alarms": ("暂无警情", "No alarms"),
    "ack": ("我来处理", "I'm on it"),
    "acked": ("已响应", "Acknowledged"),
    "close": ("办结", "Close"),
    "close_note": ("处理情况", "What was done"),
    "fire_confirm": ("确认火警", "Confirm fire"),
    "closed": ("已办结", "Closed"),
    "escalated": ("已升级", "Escalated"),
    "active": ("进行中", "Active"),
    "cleared": ("已消除", "Cleared"),
    "online": ("在线", "Online"),
    "gateway_offline": ("网关离线", "Gateway offline"),
    "locked": ("已锁", "Locked"),
    "unlocked": ("已开", "Unlocked"),
    "held_open": ("常开", "Held open"),
    "add_tenant": ("添加租户", "Add a tenant"),
    "add_pass": ("访客通行证", "Visitor pass"),
    "name": ("姓名", "Name"),
    "handle": ("门禁代号（字母数字）", "Handle (letters, digits)"),
    "move_in": ("入住", "Move-in"),
    "move_out": ("退租", "Move-out"),
    "hours": ("时段（如 07:00-22:00）", "Hours (e.g. 07:00-22:00)"),
    "pass_hours": ("有效小时数", "Valid for hours"),
    "max_opens": ("最多开门次数", "Max opens"),
    "create": ("创建", "Create"),
    "revoke": ("收回权限", "Revoke"),
    "revoked_label": ("已收回", "Revoked"),
    "invite": ("邀请链接", "Invite link"),
    "invite_hint": (
        "用手机打开此链接或扫码，即可绑定",
        "Open this link on the phone, or scan it, to bind it",
    ),
    "bind_phone": ("绑定这部手机", "Bind this phone"),
    "bind_title": ("绑定开门手机", "Bind your phone"),
    "invite_invalid": ("邀请链接无效或已使用", "This invite is invalid or already used"),
    "village": ("村", "Village"),
    "grid_title": ("网格警情", "Village alarms"),
    "when": ("时间", "When"),
    "who": ("谁", "Who"),
    "how": ("方式", "How"),
    "what": ("事件", "What"),
    "refused": ("被拒绝", "Refused"),
    "method_remote": ("手机", "phone"),
    "method_card": ("门卡", "card"),
    "method_pin": ("密码", "PIN"),
    "method_fingerprint": ("指纹", "fingerprint"),
    "method_exit_button": ("出门按钮", "exit button"),
    "method_mechanical_key": ("机械钥匙", "key"),
    "method_evacuation_release": ("消防释放", "fire release"),
    "until": ("至", "until"),
    "opens_left": ("剩余次数", "opens left"),
    # alarm and event types, as people say them (the type itself is shown when unknown)
    "type_smoke.alarm": ("烟雾报警", "Smoke alarm"),
    "type_smoke.heat_alarm": ("高温报警", "Heat alarm"),
    "type_gateway.fire_mode": ("消防联动已启动", "Fire mode"),
    "type_charger.overheat": ("充电口过热", "Charging port overheating"),
    "type_charger.cabinet_overheat": ("充电柜过热", "Charging cabinet overheating"),
    "type_charger.relay_welded": ("充电继电器粘连", "Charger relay welded"),
    "type_charger.cut_failed": ("充电断电失败", "Charger could not be cut"),
    "type_door.forced": ("门被强行打开", "Door forced open"),
    "type_door.tamper": ("门禁被拆动", "Door lock tampered with"),
    "type_door.unlocked": ("开门", "Unlocked"),
    "type_door.locked": ("上锁", "Locked"),
    "type_door.opened": ("门开", "Door opened"),
    "type_door.closed": ("门关", "Door closed"),
    "type_door.held_open": ("门未关", "Door held open"),
    "type_door.access_denied": ("开门被拒", "Access denied"),
    "type_relay.refused": ("手机开门被拒", "Phone tap refused"),
    "lang_other": ("English", "中文"),
    "forbidden_page": ("无权访问", "Not allowed"),
}


def lang_of(value: str | None, default: str) -> str:
    if value:
        v = value.lower()
        if v.startswith("en"):
            return "en"
        if v.startswith("zh"):
            return "zh"
    return default


def translator(lang: str) -> Callable[[str], str]:
    i = 1 if lang == "en" else 0

    def t(key: str) -> str:
        pair = TEXT.get(key)
        return pair[i] if pair else key

    return t


#: The gateway's result codes a tenant cannot act on, said as one thing: "tell your landlord".
SETUP_CODES = frozenset(
    {"invalid", "bad_signature", "expired", "replayed", "unknown_device", "unsupported"}
)


def outcome_key(code: str) -> str:
    """The message key for a gateway result code (or "offline" when none came)."""
    if code in SETUP_CODES:
        return "setup"
    return code if code in TEXT else "setup"
