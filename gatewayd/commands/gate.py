"""The command gate: every remote command is authenticated, fresh, unique and authorized.

Checks run cheapest-first and every refusal carries one of the contract's codes. Parsing and
verification live here; carrying a verified command out is the runtime's job. Never log a key
or a whole signature.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatewayd.commands import signing
from gatewayd.commands.replay import ReplayCache
from gatewayd.errors import ConfigError, StorageFailed
from gatewayd.schema import Bool, Int, Schema, Str, validate

MAX_PAYLOAD = 8192  # bytes; a command is a few hundred
MAX_LIFETIME = 300.0  # s, exp - iat
MAX_FUTURE_SKEW = 30.0  # s an iat may be ahead of our clock
ID_RX = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TEXT_RX = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

CODES = (
    "ok", "invalid", "bad_signature", "expired", "replayed", "unknown_device", "unsupported",
    "forbidden", "rate_limited", "device_error", "timeout", "storage_failed",
)  # fmt: skip

# Actions on the gateway itself (``device`` = the gateway id).
GATEWAY_ACTIONS: Mapping[str, Schema] = {
    "ping": {},
    "ack_alarm": {"alarm": Str(expected="an alarm id")},
    "reset_alarm": {"alarm": Str(expected="an alarm id")},
    "fire_reset": {},
    # The landlord's page: "it is a real fire" (the second stage: escape doors released).
    "fire_confirm": {"alarm": Str(expected="the fire alarm's id")},
    # The monthly fire drill (gatewayd.drill): every message of it says "drill": true.
    "drill": {
        "actuate": Bool(
            False,
            doc="Move what a fire moves (chargers cut and left off, "
            "detectors sounded then hushed, doors released then relocked); "
            "false: only say what would move.",
        ),
    },
}


@dataclass
class Result:
    id: str | None
    code: str
    detail: str = ""
    ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "ok": self.ok,
            "code": self.code,
            "detail": self.detail,
        }
        out["ms"] = round(self.ms, 3)
        if self.data:
            out["data"] = self.data
        return out


@dataclass(frozen=True)
class Command:
    id: str
    device: str
    action: str
    args: Mapping[str, Any]
    user: str
    iat: float
    exp: float


class Refused(Exception):
    def __init__(self, code: str, detail: str, cid: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail
        self.cid = cid


class RateLimiter:
    """A token bucket per device: ``per_minute`` commands, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        # A clock stepped back (NTP on a Pi without RTC) must not drain the bucket for hours.
        tokens = min(self.capacity, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


class Gate:
    """Turns a raw payload into a verified ``Command`` or raises ``Refused``."""

    def __init__(
        self,
        key: bytes | None,
        gateway_id: str,
        device_actions: Mapping[str, Mapping[str, Schema]],
        replay: ReplayCache,
        per_minute: int,
    ) -> None:
        self.key = key
        self.gateway_id = gateway_id
        self.device_actions = device_actions  # device id -> action -> args schema
        self.replay = replay
        self.limiter = RateLimiter(per_minute)

    def verify(self, payload: bytes, now: float | None = None) -> Command:
        now = time.time() if now is None else now
        raw = _parse(payload)
        cid = raw.get("id")
        if not isinstance(cid, str) or not ID_RX.fullmatch(cid):
            raise Refused("invalid", "id: expected 1..128 of A-Z a-z 0-9 . _ : -")
        cmd = _shape(raw, cid)
        if self.key is None:
            raise Refused("bad_signature", "this gateway has no command key configured", cid)
        if not signing.verify(self.key, raw):
            raise Refused("bad_signature", "signature does not match", cid)
        if cmd.exp < now:
            raise Refused("expired", f"expired {now - cmd.exp:.1f} s ago", cid)
        if cmd.iat > now + MAX_FUTURE_SKEW:
            raise Refused(
                "expired", f"issued {cmd.iat - now:.0f} s in the future (clock skew?)", cid
            )
        if cmd.exp - cmd.iat > MAX_LIFETIME:
            raise Refused("invalid", f"lifetime exp-iat over {MAX_LIFETIME:.0f} s", cid)
        if self.replay.seen(cid):
            raise Refused("replayed", "this id was accepted before", cid)
        try:
            self.replay.add(cid, cmd.exp)
        except StorageFailed as exc:
            raise Refused("storage_failed", f"cannot record the command id ({exc})", cid) from None
        if cmd.device == self.gateway_id:
            actions = GATEWAY_ACTIONS
        elif cmd.device in self.device_actions:
            actions = self.device_actions[cmd.device]
        else:
            raise Refused("unknown_device", f"no device {cmd.device!r} on this gateway", cid)
        schema = actions.get(cmd.action)
        if schema is None:
            known = ", ".join(sorted(actions)) or "none"
            raise Refused(
                "unsupported", f"{cmd.device} has no action {cmd.action!r} (has: {known})", cid
            )
        try:
            args = validate(cmd.args, schema, "command", "args")
        except ConfigError as exc:
            raise Refused("invalid", str(exc), cid) from None
        if not self.limiter.allow(cmd.device, now):
            raise Refused(
                "rate_limited", f"more than {self.limiter.capacity:.0f} commands a minute", cid
            )
        return Command(cid, cmd.device, cmd.action, args, cmd.user, cmd.iat, cmd.exp)


def _parse(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise Refused("invalid", f"payload over {MAX_PAYLOAD} bytes")
    try:
        raw = json.loads(
            payload,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_names,
        )
    except _NoCanonicalForm as exc:
        raise Refused("invalid", str(exc)) from None
    except (ValueError, RecursionError):
        raise Refused("invalid", "not JSON") from None
    if not isinstance(raw, dict):
        raise Refused("invalid", "not a JSON object")
    return raw


class _NoCanonicalForm(ValueError):
    """Parses in Python but has no canonical form (docs/contract/signing.md): another
    language's signer could not have signed it, and readers disagree on what it means."""


def _no_constant(name: str) -> Any:
    raise _NoCanonicalForm(f"not JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NoCanonicalForm(f"number beyond binary64: {text[:20]}")
    return value


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [k for k, _ in pairs]
        dup = next(k for k in names if names.count(k) > 1)
        raise _NoCanonicalForm(f"name {dup[:40]!r} appears twice in one object")
    return obj


def _shape(raw: Mapping[str, Any], cid: str) -> Command:
    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise Refused("invalid", f"{key}: expected {what}", cid)

    device, action, args = raw.get("device"), raw.get("action"), raw.get("args", {})
    user, iat, exp = raw.get("user", ""), raw.get("iat"), raw.get("exp")
    need("device", isinstance(device, str) and bool(TEXT_RX.fullmatch(device)), "a device id")
    need("action", isinstance(action, str) and bool(TEXT_RX.fullmatch(action)), "an action name")
    need("args", isinstance(args, dict), "an object")
    need(
        "user", isinstance(user, str) and (user == "" or bool(TEXT_RX.fullmatch(user))), "a user id"
    )
    need("iat", _is_time(iat), "Unix seconds")
    need("exp", _is_time(exp), "Unix seconds")
    need("sig", isinstance(raw.get("sig"), str), "64 hex digits")
    return Command(cid, str(device), str(action), args, str(user), float(iat), float(exp))  # type: ignore[arg-type]


def _is_time(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    if isinstance(v, int):
        return 0 <= v < 2**53  # exact as a float; a 400-digit integer is not a time
    return math.isfinite(v) and v >= 0


__all__ = ["CODES", "GATEWAY_ACTIONS", "Command", "Gate", "Int", "Refused", "Result"]
