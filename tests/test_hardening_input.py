"""Hardening: bad input to the pure layers, property-based.

- ``gatewayd.config.parse`` on fuzzed TOML-shaped tables: a ``Config`` or a ``ConfigError``
  naming the key, never another exception.
- Modbus register images (``drivers.modbus.readings``) with every raw value a pile could send,
  through the charging rules: out-of-range temperatures are sensor faults, not heat and never
  fire; what each out-of-range value leads to is decided and documented in docs/reliability.md.
- What the lock's notifications mean (``drivers.ble.profile``) for any record the codec parses,
  and the lock's advertisement data.
- The smoke receiver's frames to events (``drivers.srb433.profile``) for any TYPE and payload
  (the codec itself is fuzzed in tests/test_srb433_codec.py).
- A line on the control socket (``gatewayd.control.wire``): a request or an ``invalid``
  refusal, never another exception; nesting counted before ``json.loads`` can recurse; a
  client's note (``gatewayd.control.peer``) one short printable line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drivers.ble import profile as lock_profile
from drivers.ble import protocol as lock_protocol
from drivers.modbus import readings as rd
from drivers.modbus.profiles import EBC, bits_named
from drivers.srb433 import profile as smoke_profile
from drivers.srb433.codec import MAX_PAYLOAD, Frame
from gatewayd import config
from gatewayd.alarms import FIRE_MODE
from gatewayd.control import peer as control_peer
from gatewayd.control import wire as control_wire
from gatewayd.errors import ConfigError, DeviceError
from gatewayd.model import Event
from rules.charger import FullRule, OverheatRule, OverpowerRule, SessionCapRule
from rules.engine import Engine, Outcome, RaiseAlarm, World
from rules.fire import FireRule
from rules.smoke import SmokeRule

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- config -------------------------------------------------------------------------------------

# What TOML can hold (dates left out: tomllib gives datetime objects no key here expects).
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
SECTION_KEYS = {
    "gateway": ["id", "site", "data_dir"],
    "mqtt": ["url", "topic_prefix", "username", "password_file", "ca_file", "cert_file",
             "key_file", "keepalive", "reconnect_max_seconds"],
    "security": ["command_key_file", "commands_per_minute"],
    "metrics": ["listen"],
    "outbox": ["budget_mb", "telemetry_buffer", "telemetry_ttl_seconds", "commit_window_seconds"],
}  # fmt: skip
# URLs a provisioning script might template, mistakes included (ports out of range, brackets).
urls = st.one_of(
    st.builds(
        "{}://{}{}".format,
        st.sampled_from(["mqtt", "mqtts", "http", "MQTT", ""]),
        st.text("abcxyz.-_0123456789@[]", min_size=0, max_size=12),
        st.one_of(st.just(""), st.integers(0, 99999).map(":{}".format), st.just("/")),
    ),
    st.text(max_size=30),
)


def valid_base(tmp: Path) -> dict[str, Any]:
    key = tmp / "command.key"
    if not key.exists():
        key.write_text("ab" * 32)
        key.chmod(0o600)
    return {
        "gateway": {"id": "gw-fuzz", "site": "柳墅村 17号", "data_dir": str(tmp / "data")},
        "mqtt": {"url": "mqtts://broker.example.cn:8883", "keepalive": 30},
        "security": {"command_key_file": str(key), "commands_per_minute": 20},
        "outbox": {"budget_mb": 64},
        "buses": [
            {"name": "rs485", "driver": "modbus", "port": "/dev/ttyUSB0", "baudrate": 9600},
            {"name": "smoke-rx", "driver": "serial", "port": "/dev/ttyUSB1"},
        ],
        "devices": [
            {"id": "pile-1", "kind": "charger", "bus": "rs485", "unit": 1},
            {"id": "smoke-301", "kind": "smoke", "bus": "smoke-rx", "address": "1A2B3C4D"},
        ],
        "rules": {"charger_overheat": {"port_max_celsius": 60}},
    }


def parses_or_config_error(raw: Any) -> config.Config | None:
    try:
        return config.parse(raw, "fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
    assert message.startswith("fuzz.toml")
    return None


def test_the_fuzzing_base_is_a_valid_config(tmp_path: Path) -> None:
    cfg = parses_or_config_error(valid_base(tmp_path))
    assert cfg is not None and [d.id for d in cfg.devices] == ["pile-1", "smoke-301"]


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from([*SECTION_KEYS, "buses", "devices", "rules", "nonsense"]),
        toml_values,
        max_size=6,
    )
)
def test_any_toml_shaped_tables_give_a_config_error(raw: dict[str, Any]) -> None:
    parses_or_config_error(raw)


@FUZZ
@given(data=st.data())
def test_one_mutation_of_a_valid_config_gives_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: Any
) -> None:
    tmp = tmp_path_factory.getbasetemp() / "config-fuzz"
    tmp.mkdir(exist_ok=True)
    raw = valid_base(tmp)
    section = data.draw(st.sampled_from([*SECTION_KEYS, "buses", "devices", "rules"]))
    if section in SECTION_KEYS:
        key = data.draw(st.sampled_from([*SECTION_KEYS[section], "unknown_key"]))
        value = data.draw(urls if key == "url" else toml_values)
        raw.setdefault(section, {})[key] = value
    elif section == "rules":
        rule = data.draw(st.sampled_from(["charger_overheat", "smoke", "fire", "no_such_rule"]))
        raw["rules"][rule] = data.draw(
            st.dictionaries(st.text(max_size=20), toml_values, max_size=3)
            | st.fixed_dictionaries({"port_max_celsius": toml_values})
        )
    else:
        tables = raw[section]
        i = data.draw(st.integers(0, len(tables)))
        if i == len(tables):
            tables.append(data.draw(toml_values))
        else:
            key = data.draw(
                st.sampled_from(["name", "driver", "id", "kind", "bus", "unit", "address", "port",
                                 "baudrate", "host", "tcp_port", "profile", "junk"])
            )  # fmt: skip
            tables[i][key] = data.draw(toml_values)
    parses_or_config_error(raw)


@pytest.mark.parametrize("url", ["mqtt://broker:65536", "mqtts://broker:99999", "mqtt://[broker"])
def test_mqtt_url_port_out_of_range_is_a_config_error(tmp_path: Path, url: str) -> None:
    raw = valid_base(tmp_path)
    raw["mqtt"]["url"] = url
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        config.parse(raw, "fuzz.toml")


# -- Modbus register images through the charging rules ----------------------------------------

PORTS = 4
u16 = st.integers(0, 0xFFFF)


def image_strategy() -> st.SearchStrategy[dict[int, int]]:
    addresses = [*range(7), *range(16, 16 + 8 * PORTS), *range(256, 262)]
    return st.fixed_dictionaries(dict.fromkeys(addresses, u16)).map(
        lambda img: {**img, 2: PORTS}  # the port count the pile reported at start-up
    )


def engine() -> tuple[Engine, World]:
    rules = [
        OverheatRule({}),
        OverpowerRule({}),
        FullRule({}),
        SessionCapRule({}),
        FireRule({}),
        SmokeRule({}),
    ]
    return Engine(rules), World("gw", {}, now=1_763_798_400.0)


def samples(image: dict[int, int]) -> list[Event]:
    """The two ``charger.sample`` events the driver builds from one register image (as
    drivers/modbus/pile.py does)."""
    pile = rd.decode_pile(EBC, image)
    summary = rd.decode_summary(EBC, image, PORTS)
    ports = [rd.decode_port(EBC, image, p, True) for p in range(1, PORTS + 1)]
    status = bits_named(EBC.status_bits, pile["status_bits"])
    common = {"unit": 1, "ports_n": PORTS}
    return [
        Event("pile-1", "charger.sample", data={**common, "source": "summary", **summary}),
        Event(
            "pile-1",
            "charger.sample",
            data={
                **common,
                "source": "ports",
                "ports": ports,
                "cabinet_c": pile["cabinet_c"],
                "cabinet_sensor_fault": pile.get("cabinet_sensor_fault", False),
                "status_bits": pile["status_bits"],
                "status": status,
            },
        ),
    ]


@FUZZ
@given(image_strategy(), image_strategy())
def test_any_register_image_decodes_and_never_starts_fire_mode(
    first: dict[int, int], second: dict[int, int]
) -> None:
    eng, world = engine()
    for image in (first, second):
        for ev in samples(image):
            out = eng.handle(ev, world)
            assert not enters_fire(out)  # heat at a socket cuts it; only smoke means fire
            for action in out.actions:
                assert action.name in ("port_off", "all_off")  # rules never close a relay
        rd.status_events(EBC, first[3], image[3])
        rd.port_events(
            rd.decode_port(EBC, first, 1, True), rd.decode_port(EBC, image, 1, False), []
        )
        assert rd.sample_key(samples(image)[0].data) is not None


def enters_fire(out: Outcome) -> bool:
    return any(isinstance(a, RaiseAlarm) and a.type == FIRE_MODE for a in out.alarms)


def severity(eng: Engine, alarm: RaiseAlarm) -> str:
    return eng.catalogue()[alarm.type].severity


def one_port_image(temp_raw: int, *, cabinet_raw: int = 300, power: int = 200) -> dict[int, int]:
    image = dict.fromkeys([*range(7), *range(16, 16 + 8 * PORTS), *range(256, 262)], 0)
    image.update({0: EBC.model_id, 2: PORTS, 4: cabinet_raw, 5: 2280})
    for p in range(1, PORTS + 1):
        base = 16 + 8 * (p - 1)
        image[base + 0] = 1  # charging
        image[base + 3] = power
        image[base + 6] = 300  # 30.0 °C
    image[16 + 6] = temp_raw  # port 1's temperature
    image.update({256: temp_raw, 257: 1, 258: 0b1111, 260: power * PORTS})
    return image


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x7FFF, "sensor_fault"),  # 3276.7 °C: the datasheet's open thermistor
        (0x8000, "sensor_fault"),  # -3276.8 °C: below anything a socket can be
        (0xFE70, "nothing"),  # -40.0 °C: cold, but a sensor can read it
        (0xFE6F, "sensor_fault"),  # -40.1 °C
        (0x0258, "cut"),  # 60.0 °C: at the limit
        (0x7FFE, "cut"),  # 3276.6 °C: not a fault code, so taken as heat (fail-safe)
        (0x0257, "nothing"),  # 59.9 °C
    ],
)
def test_out_of_range_temperatures_are_decided_per_value(raw: int, expected: str) -> None:
    eng, world = engine()
    actions, alarms = [], []
    for ev in samples(one_port_image(raw)):
        out = eng.handle(ev, world)
        assert not enters_fire(out)
        actions += out.actions
        alarms += [(a.type, severity(eng, a)) for a in out.alarms if isinstance(a, RaiseAlarm)]
    if expected == "sensor_fault":
        assert actions == []
        assert set(alarms) == {("charger.sensor_fault", "warning")}
    elif expected == "cut":
        assert {(a.name, a.args.get("port")) for a in actions} == {("port_off", 1)}
        assert set(alarms) == {("charger.overheat", "critical")}
    else:
        assert (actions, alarms) == ([], [])


def test_broken_cabinet_sensor_is_not_a_cabinet_fire() -> None:
    """Was a defect (fixed in e72a1f5): an open cabinet thermistor cut every port."""
    eng, world = engine()
    actions, alarms = [], []
    for ev in samples(one_port_image(300, cabinet_raw=0x7FFF)):
        out = eng.handle(ev, world)
        actions += out.actions
        alarms += [(a.type, severity(eng, a)) for a in out.alarms if isinstance(a, RaiseAlarm)]
    assert actions == []
    assert alarms == [("charger.sensor_fault", "warning")]


# -- the lock's notifications and advertisements -------------------------------------------------


@FUZZ
@given(st.binary(max_size=24))
@example(bytes.fromhex("11 0001 63 ffffffff"))  # unknown method 0x63, user 2^32-1
@example(bytes.fromhex("12 ffff ff"))
@example(bytes.fromhex("1a 0000 ff ff ffff"))
def test_any_parsed_notification_means_something_or_is_a_frame_error(frame: bytes) -> None:
    try:
        record = lock_protocol.parse_event(frame)
    except lock_protocol.FrameError:
        return
    if isinstance(record, lock_protocol.Status):
        state = lock_profile.status_state(record)
        assert set(state) == {"lock", "door", "battery_mv"}
        return
    if isinstance(record, lock_protocol.Ack):
        assert isinstance(record.code, str)
        return
    spec = lock_profile.EVENTS[type(record)]
    assert spec.type.startswith("door.") and spec.severity in ("info", "warning", "critical")
    assert isinstance(spec.data(record), dict)
    assert isinstance(spec.state(record), dict)


@FUZZ
@given(st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=8), max_size=4))
def test_any_manufacturer_data_is_a_state_none_or_a_frame_error(data: dict[int, bytes]) -> None:
    try:
        state = lock_protocol.parse_manufacturer_data(data)
    except lock_protocol.FrameError:
        assert len(data[lock_protocol.COMPANY_ID]) < 4
        return
    assert (state is None) == (lock_protocol.COMPANY_ID not in data)


# -- the smoke receiver's frames ------------------------------------------------------------


@FUZZ
@given(
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFF),
    st.binary(max_size=MAX_PAYLOAD),
)
def test_any_detector_frame_is_an_event_or_a_device_error(
    type_: int, device: int, seq: int, payload: bytes
) -> None:
    try:
        event = smoke_profile.frame_to_event(Frame(type_, device, seq, payload), "smoke-1", 1.0)
    except DeviceError as exc:
        code = exc.code
    else:
        code = ""
    if code:
        assert code in ("unknown_type", "malformed")
        return
    assert event.type.startswith("smoke.") and event.data["seq"] == seq
    state = smoke_profile.state_update(event)
    assert state["address"] == smoke_profile.address_hex(device)
    # A detector's event through every rule: only smoke and heat alarms start fire mode.
    eng, world = engine()
    world.devices = {"smoke-1": _smoke_device()}
    out = eng.handle(event, world)
    assert enters_fire(out) == (event.type in ("smoke.alarm", "smoke.heat_alarm"))


def _smoke_device() -> Any:
    from gatewayd.driver import DeviceConfig

    return DeviceConfig("smoke-1", "smoke", "rx", {"address": "1A2B3C4D", "room": "301"})


# -- the control socket's requests (gatewayd.control.wire, gatewayd.control.peer) ---------------

# JSON whose strings are full of what confuses a bracket counter: brackets, quotes, backslashes.
tricky_text = st.text(st.sampled_from('[]{}"\\/:,a 火\n\x1b'), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


def _wrapped(value: Any, levels: int, key: str) -> Any:
    for i in range(levels):
        value = [value] if i % 2 else {key: value}
    return value


# Also values around the depth bound (the recursive strategy alone rarely nests that deep).
deep_values = json_values | st.builds(_wrapped, json_values, st.integers(10, 24), tricky_text)
# Lines a local user might send, mostly not JSON: bracket soup, torn strings, any bytes.
request_lines = st.one_of(
    st.text(st.sampled_from('[]{}"\\:,1a cmd'), max_size=80).map(str.encode),
    st.binary(max_size=80),
    json_values.map(lambda v: json.dumps(v).encode()),
    deep_values.map(lambda v: json.dumps({"cmd": "status", "x": v}).encode()),
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@FUZZ
@given(deep_values)
def test_the_bracket_count_is_the_nesting_of_any_json(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        line = text.replace("\n", " ").encode()
        # Never less than what json.loads would recurse to; and a valid request is refused for
        # its depth exactly when it is too deep.
        assert control_wire.nesting(line) >= depth(value)
        too_deep = control_wire.nesting(line) > control_wire.MAX_DEPTH
        assert too_deep == (depth(value) > control_wire.MAX_DEPTH)


@FUZZ
@given(request_lines)
@example(b"[" * 60_000)  # a RecursionError in json.loads, were it asked
@example(b'{"cmd": "status", "x": "' + b"[" * 60_000 + b'"}')  # brackets in a string are text
@example(b'{"cmd": "s\\"' + b"[" * 40 + b'"}')  # an escaped quote does not end the string
@example(b"\xff\xfe{\x00}\x00")  # not UTF-8
def test_any_request_line_is_a_request_or_an_invalid_refusal(line: bytes) -> None:
    try:
        request = control_wire.parse(line)
    except control_wire.Refusal as exc:
        answer = exc.answer()
    else:
        assert isinstance(request, dict) and isinstance(request["cmd"], str)
        assert depth(request) <= control_wire.MAX_DEPTH
        return
    assert answer["code"] == "invalid" and answer["ok"] is False
    assert answer["error"] in ('expected {"cmd": ...} on one line', "request nested deeper than 16 levels")


def test_a_deep_request_is_refused_before_the_parser_and_a_deep_string_is_not() -> None:
    deep = b'{"cmd": "status", "x": ' + b"[" * 16 + b"]" * 16 + b"}"
    with pytest.raises(control_wire.Refusal, match="nested deeper than 16 levels"):
        control_wire.parse(deep)
    ok = b'{"cmd": "status", "x": ' + b"[" * 15 + b"]" * 15 + b"}"
    assert control_wire.parse(ok)["cmd"] == "status"
    text = b'{"cmd": "status", "note": "' + b"[{" * 20_000 + b'"}'
    assert control_wire.parse(text)["note"].startswith("[{[{")


@FUZZ
@given(st.text(max_size=300))
@example("Li\nINFO gatewayd.alarms: alarm x acknowledged by landlord")
@example("\x1b[2K\x1b[1A\rroot\u2028\u202edrol")
def test_any_note_is_one_short_printable_line_or_none(text: str) -> None:
    note = control_peer.clean_note(text)
    if note is None:
        return
    assert 0 < len(note) <= control_peer.NOTE_MAX and note == note.strip()
    assert note.isprintable() and "  " not in note
    if text.isprintable() and len(" ".join(text.split())) <= control_peer.NOTE_MAX:
        assert note == " ".join(text.split())  # what was fine is kept as written
