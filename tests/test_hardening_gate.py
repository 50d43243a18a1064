"""Hardening: the command gate (``Gate.verify``) against hostile and broken payloads.

The gate is the only door from the platform into the house, so it is fuzzed here with a real
``ReplayCache`` on disk: arbitrary bytes, JSON of every shape, deep nesting, huge payloads,
wrong types, unicode tricks in ids, clock skew and replay storms. Invariants: the gate either
returns a verified command or raises ``Refused`` with one of the contract's codes (never any
other exception); a correctly signed, fresh command is accepted exactly once; nothing a
refused payload carries reaches the replay file, and the file always reloads cleanly.

The tests at the end pin the inputs that once broke the first invariant (a lone surrogate, a
non-ASCII signature, a 400-digit time, nesting just under the parser's limit, a clock stepped
back); they were fixed in e72a1f5 and the strategies below generate them too.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from drivers.ble.family import DoorFamily
from drivers.modbus.family import ChargerFamily
from gatewayd.commands.gate import CODES, ID_RX, MAX_FUTURE_SKEW, MAX_LIFETIME, Gate, Refused
from gatewayd.commands.replay import ReplayCache
from gatewayd.commands.signing import sign

KEY = bytes(range(32))
GW = "gw-test"
DEVICES = {
    "door-main": DoorFamily.action_schemas(),
    "pile-1": ChargerFamily.action_schemas(),
}
T0 = 1_763_798_400.0
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_ids = itertools.count()


def make_gate(directory: Path, per_minute: int = 30) -> Gate:
    directory.mkdir(parents=True, exist_ok=True)
    return Gate(KEY, GW, DEVICES, ReplayCache(str(directory / "replay.log")), per_minute)


def fresh_id() -> str:
    return f"c{os.getpid():x}-{next(_ids)}"


def signed(
    device: str = GW,
    action: str = "ping",
    args: dict[str, Any] | None = None,
    *,
    cid: str | None = None,
    iat: float = T0,
    lifetime: float = 30.0,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "id": fresh_id() if cid is None else cid,
        "device": device,
        "action": action,
        "args": args or {},
        "user": "tenant-302",
        "iat": iat,
        "exp": iat + lifetime,
        **extra,
    }
    return sign(KEY, body)


def verdict(gate: Gate, payload: bytes, now: float = T0 + 1) -> str:
    """ "ok" or the refusal code; any other exception fails the test right here."""
    try:
        gate.verify(payload, now=now)
    except Refused as exc:
        code = exc.code
    else:
        return "ok"
    assert code in CODES and code != "ok", code
    return code


def replay_lines(gate: Gate) -> list[tuple[float, str]]:
    out = []
    with open(gate.replay.path, encoding="utf-8") as f:
        for line in f:
            assert line.endswith("\n")
            exp, sep, cid = line[:-1].partition(" ")
            assert sep and ID_RX.fullmatch(cid), repr(line)
            out.append((float(exp), cid))
    return out


# -- strategies ---------------------------------------------------------------------------------

# Any text, lone surrogates included (json.dumps writes them as \udXXX escapes).
text = st.text(st.characters(blacklist_categories=()), max_size=40)
big_int = st.integers(-(10**400), 10**400)  # far beyond what a float holds
scalars = st.one_of(
    st.none(),
    st.booleans(),
    big_int,
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
sigs = st.one_of(
    st.just("0" * 64),
    st.text(max_size=80),
    st.text(st.characters(min_codepoint=128), min_size=64, max_size=64),
    json_values,
)
FIELDS = ("id", "device", "action", "args", "user", "iat", "exp")


# -- arbitrary input ----------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=3000))
@example(b"")
@example(b"\x00" * 64)
@example(b"\xff\xfe{}")
@example(b"null")
@example(b"[]")
@example(b'"just a string"')
@example(b"NaN")
@example(b"1" * 5000)  # over Python's int-digits limit
def test_arbitrary_bytes_are_refused_with_a_contract_code(
    tmp_path_factory: pytest.TempPathFactory, payload: bytes
) -> None:
    gate = make_gate(tmp_path_factory.mktemp("gate"))
    assert verdict(gate, payload) in ("invalid", "bad_signature")
    assert replay_lines(gate) == []


@SETTINGS
@given(st.dictionaries(st.sampled_from([*FIELDS, "sig", "extra", ""]), json_values, max_size=9))
def test_json_objects_of_any_shape_are_refused_never_raise(
    tmp_path_factory: pytest.TempPathFactory, body: dict[str, Any]
) -> None:
    body.setdefault("sig", "0" * 64)
    gate = make_gate(tmp_path_factory.mktemp("gate"))
    payload = json.dumps(body, allow_nan=True).encode()
    code = verdict(gate, payload)
    assert code in ("invalid", "bad_signature")  # nobody but the platform holds the key
    assert replay_lines(gate) == []


def _right_type(field: str, value: Any) -> bool:
    if field in ("id", "device", "action", "user"):
        return isinstance(value, str)
    if field == "args":
        return isinstance(value, dict)
    return isinstance(value, int | float) and not isinstance(value, bool)


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=json_values, sig=sigs)
def test_wrong_types_in_a_correctly_signed_command_are_invalid(
    tmp_path_factory: pytest.TempPathFactory, field: str, value: Any, sig: Any
) -> None:
    """The shape is checked on its own: a command signed with a field of the wrong type is
    still refused, and a bad signature on top never turns it into anything accepted."""
    assume(not _right_type(field, value))
    gate = make_gate(tmp_path_factory.mktemp("gate"))
    cmd = signed("door-main", "unlock", {"seconds": 5})
    cmd[field] = value
    try:
        cmd = sign(KEY, cmd)
        expected: tuple[str, ...] = ("invalid",)
    except (ValueError, RecursionError):  # a lone surrogate, NaN, ±inf: nobody can sign it
        cmd["sig"] = "0" * 64
        expected = ("invalid", "bad_signature")
    assert verdict(gate, json.dumps(cmd, allow_nan=True).encode()) in expected
    cmd["sig"] = sig
    assert verdict(gate, json.dumps(cmd, allow_nan=True).encode()) in ("invalid", "bad_signature")


@pytest.mark.parametrize("depth", [1, 10, 100, 500, 900, 1000, 2000, 4000])
@pytest.mark.parametrize("where", ["args", "top"])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int, where: str) -> None:
    nest = "[" * depth + "]" * depth
    prefix = f'{{"id":"deep-{where}-{depth}","device":"{GW}","action":"ping","user":"u",'
    prefix += f'"iat":{T0},"exp":{T0 + 30},"sig":"{"0" * 64}",'
    payload = prefix + (f'"args":{{"a":{nest}}}}}' if where == "args" else f'"x":{nest}}}')
    gate = make_gate(tmp_path)
    assert verdict(gate, payload.encode()) in ("invalid", "bad_signature")


@pytest.mark.parametrize("size", [8193, 64 * 1024, 1 << 20])
def test_huge_payloads_are_refused_before_parsing(tmp_path: Path, size: int) -> None:
    cmd = signed(GW, "ping", {"pad": "x" * size})
    gate = make_gate(tmp_path)
    with pytest.raises(Refused) as err:
        gate.verify(json.dumps(cmd).encode(), now=T0 + 1)
    assert (err.value.code, err.value.cid) == ("invalid", None)
    assert "payload over" in err.value.detail


# -- ids: unicode tricks must never reach the replay file ----------------------------------------

TRICKY_IDS = [
    "c0f3\n1999999999 evil",  # a forged replay line, if the id were written as it is
    "c0f3\r\n",
    "c0f3\x00",
    "\x00",
    "с0f3",  # Cyrillic es: looks like "c0f3"
    "c0f3\u200f",  # right-to-left mark
    "\u202ec0f3",  # right-to-left override
    "c0\u200bf3",  # zero-width space
    "ｃ０ｆ３",  # fullwidth
    "c0f3 ",
    " c0f3",
    "",
    "a" * 129,
    "../../etc/passwd",
    "c0f3\ufeff",
]


@pytest.mark.parametrize("cid", TRICKY_IDS)
def test_tricky_ids_are_invalid_even_when_correctly_signed(tmp_path: Path, cid: str) -> None:
    gate = make_gate(tmp_path)
    cmd = signed(GW, "ping", cid=cid)
    for ensure_ascii in (True, False):
        payload = json.dumps(cmd, ensure_ascii=ensure_ascii).encode()
        with pytest.raises(Refused) as err:
            gate.verify(payload, now=T0 + 1)
        assert (err.value.code, err.value.cid) == ("invalid", None)
    assert replay_lines(gate) == []


@SETTINGS
@given(st.lists(st.text(max_size=20), min_size=1, max_size=15))
def test_replay_file_holds_only_accepted_ids_and_reloads_cleanly(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str]
) -> None:
    directory = tmp_path_factory.mktemp("replay")
    gate = make_gate(directory, per_minute=6000)
    now = time.time()
    accepted: set[str] = set()
    for i, raw_id in enumerate(ids):
        cid = f"{raw_id}{i}"
        code = verdict(gate, json.dumps(signed(GW, "ping", cid=cid, iat=now)).encode(), now)
        if ID_RX.fullmatch(cid) and cid not in accepted:
            assert code == "ok"
            accepted.add(cid)
        else:
            assert code in ("invalid", "replayed")
    assert {cid for _, cid in replay_lines(gate)} == accepted
    gate.replay.close()
    reloaded = ReplayCache(gate.replay.path)  # a restart: the file is compacted and read back
    try:
        assert all(reloaded.seen(cid) for cid in accepted)
    finally:
        reloaded.close()


# -- freshness and replays ----------------------------------------------------------------------


@SETTINGS
@given(
    skew=st.floats(-10 * 86400, 10 * 86400, allow_nan=False),
    lifetime=st.floats(0, 1000, allow_nan=False),
)
@example(skew=MAX_FUTURE_SKEW, lifetime=30)  # at the edge: still fine
@example(skew=MAX_FUTURE_SKEW + 0.001, lifetime=30)
@example(skew=-30.0, lifetime=30)  # expiring this instant
@example(skew=-30.001, lifetime=30)
@example(skew=0, lifetime=MAX_LIFETIME + 0.001)
def test_clock_skew_decides_the_code(
    tmp_path_factory: pytest.TempPathFactory, skew: float, lifetime: float
) -> None:
    """``skew`` = the command's iat minus the gateway's clock."""
    gate = make_gate(tmp_path_factory.mktemp("skew"))
    now = time.time()
    cmd = signed(GW, "ping", iat=now + skew, lifetime=lifetime)
    code = verdict(gate, json.dumps(cmd).encode(), now)
    if cmd["exp"] < now or cmd["iat"] > now + MAX_FUTURE_SKEW:
        assert code == "expired"
    elif lifetime > MAX_LIFETIME:
        assert code == "invalid"
    else:
        assert code == "ok"


@pytest.mark.parametrize(
    ("gateway_clock", "code"),
    [
        (0.0, "expired"),  # a Pi without RTC booting in 1970: every command is "from the future"
        (T0 - 3600, "expired"),  # an hour slow
        (T0 - 29, "ok"),  # within the allowed skew
        (T0 + 31, "expired"),  # past exp
        (T0 + 365 * 86400, "expired"),  # a year fast
    ],
)
def test_gateway_clock_far_off_refuses_never_accepts(
    tmp_path: Path, gateway_clock: float, code: str
) -> None:
    gate = make_gate(tmp_path)
    assert verdict(gate, json.dumps(signed(GW, "ping", iat=T0)).encode(), gateway_clock) == code


def test_replay_storm_one_accept_then_replayed_also_after_restart(tmp_path: Path) -> None:
    gate = make_gate(tmp_path, per_minute=6000)
    now = time.time()
    cmds = [signed("door-main", "unlock", {"seconds": 3}, iat=now, lifetime=120) for _ in range(5)]
    payloads = [json.dumps(c).encode() for c in cmds]
    storm = [payloads[i % 5] for i in range(300)]
    codes: dict[str, list[str]] = {c["id"]: [] for c in cmds}
    for raw in storm:
        codes[json.loads(raw)["id"]].append(verdict(gate, raw, now))
    for cid, got in codes.items():
        assert got == ["ok"] + ["replayed"] * 59, cid
    gate.replay.close()
    again = make_gate(tmp_path, per_minute=6000)  # a restart, same data dir
    assert {verdict(again, raw, now + 1) for raw in payloads} == {"replayed"}
    assert len(replay_lines(again)) == 5


def test_every_refusal_path_uses_a_contract_code(tmp_path: Path) -> None:
    gate = make_gate(tmp_path, per_minute=2)
    now = T0 + 1
    forged = signed(GW, "ping")
    forged["sig"] = "f" * 64
    cases = {
        "invalid": json.dumps({"id": "x"}).encode(),
        "bad_signature": json.dumps(forged).encode(),
        "expired": json.dumps(signed(GW, "ping", iat=T0 - 100)).encode(),
        "unknown_device": json.dumps(signed("door-back", "unlock")).encode(),
        "unsupported": json.dumps(signed("door-main", "self_destruct")).encode(),
    }
    for code, payload in cases.items():
        assert verdict(gate, payload, now) == code
    limited = [
        verdict(gate, json.dumps(signed("pile-1", "all_off")).encode(), now) for _ in range(3)
    ]
    assert limited == ["ok", "ok", "rate_limited"]


# -- inputs that once raised out of the gate (fixed in e72a1f5) ----------------------------------


def _raw(fields: str) -> bytes:
    return (
        f'{{"id":"d1","device":"{GW}","action":"ping","user":"u","iat":{T0},'
        f'"exp":{T0 + 30},{fields}}}'
    ).encode()


@pytest.mark.parametrize("where", ["args", "extra"])
def test_lone_surrogate_is_refused_not_raised(tmp_path: Path, where: str) -> None:
    field = '"args":{"a":"\\ud800"}' if where == "args" else '"args":{},"note":"\\udfff"'
    code = verdict(make_gate(tmp_path), _raw(f'{field},"sig":"{"0" * 64}"'))
    assert code in ("invalid", "bad_signature")  # it cannot have been signed: either says so


def test_non_ascii_signature(tmp_path: Path) -> None:
    payload = _raw('"args":{},"sig":"' + "é" * 64 + '"')
    assert verdict(make_gate(tmp_path), payload) == "bad_signature"


def test_huge_integer_time(tmp_path: Path) -> None:
    payload = (
        f'{{"id":"d2","device":"{GW}","action":"ping","args":{{}},"user":"u",'
        f'"iat":{10**400},"exp":{T0},"sig":"{"0" * 64}"}}'
    ).encode()
    assert verdict(make_gate(tmp_path), payload) == "invalid"


def test_nesting_just_under_the_parser_limit(tmp_path: Path) -> None:
    gate = make_gate(tmp_path)
    codes = set()
    for depth in range(940, 1000, 5):
        nest = "[" * depth + "]" * depth
        codes.add(verdict(gate, _raw(f'"args":{{"a":{nest}}},"sig":"{"0" * 64}"')))
    assert codes <= {"invalid", "bad_signature"}


def test_clock_stepping_back_does_not_rate_limit_everything(tmp_path: Path) -> None:
    gate = make_gate(tmp_path)
    assert verdict(gate, json.dumps(signed(GW, "ping", iat=T0)).encode(), T0 + 1) == "ok"
    back = T0 - 3600  # NTP steps the clock back an hour
    assert verdict(gate, json.dumps(signed(GW, "ping", iat=back)).encode(), back + 1) == "ok"


class _Clock:
    """The replay cache's two clocks, set by the test: the wall clock an NTP step or a wrong
    RTC can move, and the monotonic one nothing moves."""

    def __init__(self, wall: float) -> None:
        self.wall, self.mono = wall, 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def test_a_forward_wall_clock_jump_never_forgets_a_live_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 10: after the wall clock jumped forward, pruning evicted a live id; when the
    clock was set right again, the same signed command was accepted twice."""
    import gatewayd.commands.replay

    clock = _Clock(T0)
    monkeypatch.setattr(gatewayd.commands.replay, "time", clock)
    gate = make_gate(tmp_path, per_minute=6000)
    unlock = json.dumps(signed("door-main", "unlock", {"seconds": 3}, iat=T0, lifetime=60))
    assert verdict(gate, unlock.encode(), T0 + 1) == "ok"
    clock.wall, clock.mono = T0 + 3600, clock.mono + 2  # an NTP step forward by an hour
    for _ in range(1100):  # enough traffic to make the cache prune
        assert verdict(gate, json.dumps(signed(iat=clock.wall)).encode(), clock.wall) == "ok"
    clock.wall, clock.mono = T0 + 5, clock.mono + 1  # and set right again
    assert verdict(gate, unlock.encode(), T0 + 5) == "replayed"
    gate.replay.close()
    again = make_gate(tmp_path, per_minute=6000)  # and after a restart
    assert verdict(again, unlock.encode(), T0 + 6) == "replayed"
    # Once both clocks say it is long over, it may go: the cache stays bounded.
    clock.wall, clock.mono = T0 + 7200, clock.mono + 400
    for _ in range(1100):
        verdict(again, json.dumps(signed(iat=clock.wall)).encode(), clock.wall)
    assert not again.replay.seen(json.loads(unlock)["id"])


def test_replay_log_with_bytes_that_are_not_utf8_loads_what_it_can(tmp_path: Path) -> None:
    """Defect 7: one non-UTF-8 byte in replay.log stopped the daemon from starting."""
    gate = make_gate(tmp_path, per_minute=6000)
    now = time.time()
    kept = signed("door-main", "unlock", {"seconds": 3}, iat=now, lifetime=120)
    assert verdict(gate, json.dumps(kept).encode(), now) == "ok"
    gate.replay.close()
    with open(tmp_path / "replay.log", "ab") as f:
        f.write(b"\xff\xfe\x00garbage \xc3\x28\n12.5\n\x00\x00\x00")
    again = make_gate(tmp_path, per_minute=6000)
    assert again.replay.skipped >= 2
    assert verdict(again, json.dumps(kept).encode(), now + 1) == "replayed"
    assert verdict(again, json.dumps(signed(iat=now)).encode(), now + 1) == "ok"
