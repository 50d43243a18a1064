"""The machine-readable contract (docs/contract/): current with the families' descriptors,
valid JSON Schema and a sane AsyncAPI document, strict enough to catch drift, and — the point —
every message the demo publishes validates against it."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from gatewayd.contract import SCHEMA_DIR, build, installed, render
from gatewayd.family import ActionSpec, EventSpec, Family, fields
from gatewayd.schema import Bool, Float, Int, OneOf, Str, StrList
from tests.conftest import DemoRun
from tests.contract_support import CONTRACT, load, pointer, problems, route, routes, valid
from tests.harness import REPO

SCHEMA_FILES = sorted(p.name for p in (CONTRACT / SCHEMA_DIR).glob("*.json"))


# -- (a) current ------------------------------------------------------------------------------


def test_the_checked_in_contract_is_what_the_families_generate_now() -> None:
    generated = build()
    stale = [name for name, doc in generated.items()
             if not (CONTRACT / name).is_file()
             or (CONTRACT / name).read_text(encoding="utf-8") != render(doc)]  # fmt: skip
    kinds = ", ".join(sorted(installed().families))
    assert not stale, (
        f"docs/contract/ is not what the installed families ({kinds}) generate: "
        f"{', '.join(stale)}. Run `make contract` and commit the result."
    )
    extra = set(SCHEMA_FILES) - {Path(n).name for n in generated if n.startswith(SCHEMA_DIR)}
    assert not extra, f"docs/contract/{SCHEMA_DIR}/ has files nothing generates: {extra}"


def test_make_contract_check_says_what_to_run_when_a_file_is_stale(tmp_path: Path) -> None:
    out = tmp_path / "contract"
    run = [sys.executable, "-m", "gatewayd.contract"]
    subprocess.run([*run, str(out)], check=True, capture_output=True, timeout=60, cwd=REPO)
    ok = subprocess.run([*run, "--check", str(out)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    event = out / SCHEMA_DIR / "event.json"
    event.write_text(event.read_text().replace('"smoke.alarm"', '"smoke.alarmed"'))
    stale = subprocess.run([*run, "--check", str(out)], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert "event.json" in stale.stderr and "make contract" in stale.stderr


def test_the_generator_is_deterministic() -> None:
    assert {n: render(d) for n, d in build().items()} == {n: render(d) for n, d in build().items()}


# -- (b) valid schemas, sane AsyncAPI -----------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_each_schema_is_valid_json_schema_and_reads_alike_in_draft_07(name: str) -> None:
    schema = load(f"{SCHEMA_DIR}/{name}")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    Draft7Validator.check_schema(schema)  # the keywords used mean the same there
    text = json.dumps(schema)
    for target in re.findall(r'"\$ref": "([^"]+)"', text):
        pointer(schema, target)  # every reference resolves inside its file


def test_the_asyncapi_document_is_sane() -> None:
    api = load("asyncapi.json")
    assert api["asyncapi"] == "3.0.0"
    assert api["info"]["title"] and api["info"]["version"]
    for name, channel in api["channels"].items():
        assert channel["messages"], name
        for msg in channel["messages"].values():
            message = pointer(api, msg["$ref"])
            schema = message["payload"]["schema"]["$ref"]
            assert (CONTRACT / schema).is_file(), f"{name}: {schema} missing"
        declared = set(channel.get("parameters", {}))
        assert set(re.findall(r"{(\w+)}", channel["address"])) == declared, name
    for name, op in api["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel_ref = op["channel"]["$ref"]
        channel = pointer(api, channel_ref)
        for msg in op["messages"]:
            assert msg["$ref"].startswith(channel_ref + "/messages/"), name
            pointer(api, msg["$ref"])
        assert op["bindings"]["mqtt"]["qos"] in (0, 1, 2)
        assert isinstance(op["bindings"]["mqtt"]["retain"], bool)
        assert channel["address"].startswith("pingan/v1/{gateway}/")
    used = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in api["operations"].values()}
    assert used == set(api["channels"]), "a channel no operation uses"
    # The contract's QoS and retain, as the v1 contract (shared/contract/mqtt.md) has them.
    table = {r.channel: (r.qos, r.retain, r.send) for r in routes()}
    assert table == {
        "status": (1, True, True), "events": (1, False, True), "telemetry": (0, False, True),
        "state": (1, True, True), "alarms": (1, True, True), "devices": (1, True, True),
        "cmd": (1, False, False), "cmdResult": (1, False, True), "metrics": (0, False, True),
    }  # fmt: skip
    will = api["servers"]["platform"]["bindings"]["mqtt"]["lastWill"]
    assert (will["qos"], will["retain"]) == (1, True)
    assert route(will["topic"].replace("{gateway}", "gw-1"))[0].channel == "status"


# -- (c) every message the demo publishes validates ---------------------------------------------

DEMO_ROOT = "pingan/v1/xz-liushu-017"


@pytest.fixture(scope="module")
def recording(demo_run: DemoRun) -> list[dict[str, Any]]:
    """Every message under the demo's root, as a real subscriber received it."""
    out = demo_run.out
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [json.loads(ln) for ln in demo_run.record.read_text(encoding="utf-8").splitlines()]


def test_every_message_the_demo_publishes_validates_against_the_contract(
    recording: list[dict[str, Any]],
) -> None:
    failures: list[str] = []
    kinds: dict[str, str] = {}  # device -> kind, from the retained devices list
    seen: Counter[str] = Counter()
    event_types: set[str] = set()
    for msg in recording:
        topic = msg["topic"]
        assert topic.startswith(DEMO_ROOT + "/"), topic
        r, params = route(topic)
        seen[r.channel] += 1
        if (msg["qos"], msg["retain"]) != (r.qos, r.retain):
            failures.append(f"{topic}: QoS {msg['qos']} retain {msg['retain']}, "
                            f"the contract says QoS {r.qos} retain {r.retain}")  # fmt: skip
        if "payload" not in msg:
            failures.append(f"{topic}: payload is not UTF-8")
            continue
        try:
            body = json.loads(msg["payload"])
        except ValueError:
            failures.append(f"{topic}: payload is not JSON: {msg['payload'][:80]!r}")
            continue
        failures += [f"{topic}: {p}" for p in problems(r.schema_file, body)]
        if r.channel == "devices":
            kinds.update({d["id"]: d["kind"] for d in body.get("devices", [])})
        elif r.channel == "events" and isinstance(body, dict):
            event_types.add(str(body.get("type")))
            failures += [f"{topic}: data of {body.get('type')} {p}"
                         for p in problems(r.schema_file, body.get("data"), body.get("type"))]  # fmt: skip
            if body.get("device") != params["device"]:
                failures.append(f"{topic}: carries device {body.get('device')!r}")
        elif r.channel in ("state", "telemetry"):
            device = params["device"]
            kind = "gateway" if device == params["gateway"] else kinds.get(device)
            if kind is None:
                failures.append(f"{topic}: device not in the devices list published before")
                continue
            # Validated again as its kind's own: the whole schema takes any kind's.
            parts = [body] if r.channel == "state" else [body.get("values"),
                                                          *body.get("ports", [])]  # fmt: skip
            failures += [f"{topic}: as a {kind}'s: {p}"
                         for part in parts for p in problems(r.schema_file, part, kind)]  # fmt: skip
    assert not failures, f"{len(failures)} of {len(recording)} messages break the contract:\n" + (
        "\n".join(failures[:40])
    )
    # The story reached every channel, and the event types it is about. Not metrics: the
    # demo's gateway does not push them (push_seconds is off by default); the frames of a
    # house are validated in tests/test_metrics_push.py.
    assert set(seen) == {r.channel for r in routes()} - {"metrics"}, seen
    story = {"door.unlocked", "door.locked", "charger.port_full", "charger.port_cut",
             "gateway.fire_mode", "door.released", "gateway.fire_reset", "door.restored",
             "gateway.alarm_reset", "smoke.alarm"}  # fmt: skip
    assert story <= event_types, story - event_types
    assert {"charger", "door_lock", "smoke"} <= set(kinds.values())


# -- (d) the schemas bite ---------------------------------------------------------------------

EVENT = {"id": "6b0b-2f", "ts": 1763798400.25, "device": "smoke-301", "type": "smoke.alarm",
         "severity": "critical", "data": {"density": 90}, "room": "301"}  # fmt: skip
STATE = {"ts": 1763798400.0, "online": True, "total_power_w": 120.5, "room": "车棚"}
COMMAND = {"id": "c0f3a9d2", "device": "pile-1", "action": "port_on", "args": {"port": 1},
           "user": "landlord-17", "iat": 1763798400, "exp": 1763798430, "sig": "ab" * 32}  # fmt: skip
RESULT = {"id": "c0f3a9d2", "ok": False, "code": "expired", "detail": "expired 3.0 s ago",
          "ms": 3.2}  # fmt: skip
STATUS = {"online": True, "version": "0.1.0", "started": 1763798000.5, "fire_mode": False,
          "site": "柳墅村 17号"}  # fmt: skip
ALARM = {"id": "pile-2/charger.overheat", "device": "pile-2", "type": "charger.overheat",
         "severity": "critical", "since": 1763798400.0, "state": "active", "latched": True,
         "acked_by": None, "acked_at": None, "updated": 1763798400.0, "count": 1,
         "parts": {"3": "active"}, "data": {"port": 3}}  # fmt: skip
TELEMETRY = {"ts": 1763798400.123, "values": {"cabinet_c": 31.5},
             "ports": [{"port": 1, "power_w": 231}, {"port": 3, "temperature_c": 41.2}]}  # fmt: skip
DEVICE = {"id": "door-main", "kind": "door_lock", "title": "door lock", "room": "大门",
          "supervised": True, "actions": ["hold_open", "lock", "status", "unlock"]}  # fmt: skip
PILE = {"id": "pile-1", "kind": "charger", "title": "charging pile", "model": "ebc",
        "room": "车棚", "supervised": True, "actions": ["all_off", "port_off", "port_on"],
        "firmware": "1.3", "port_count": 12}  # fmt: skip


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not _GONE}


_GONE = object()
POSITIVE = [
    ("event", EVENT, None),
    ("state", STATE, "charger"),
    ("cmd", COMMAND, None),
    ("cmd", _with(COMMAND, device="door-main", action="unlock", args={}), None),
    ("cmd", _with(COMMAND, device="xz-liushu-017", action="ack_alarm",
                  args={"alarm": "pile-2/charger.overheat"}), None),
    ("cmd-result", RESULT, None),
    ("status", STATUS, None),
    ("status", {"online": False, "version": "0.1.0", "started": 1763798000.5}, None),
    ("alarms", {"ts": 1763798400.0, "active": [ALARM]}, None),
    ("devices", {"ts": 1763798400.0, "devices": [DEVICE]}, None),
    ("devices", {"ts": 1763798400.0, "devices": [PILE]}, None),
    ("telemetry", TELEMETRY, None),
    ("telemetry", {"ts": 1763798400.5, "values": {"port": 2, "power_w": 120}}, None),
]  # fmt: skip
NEGATIVE = [
    ("an undeclared event type", "event", _with(EVENT, type="smoke.exploded"), None, "/type"),
    ("a readings event, never published", "event", _with(EVENT, type="charger.sample"), None,
     "/type"),
    ("a severity the type never takes", "event", _with(EVENT, severity="info"), None, "/severity"),
    ("a string where data declares an integer", "event", _with(EVENT, data={"density": "90"}),
     None, "/data/density"),
    ("a data member the type does not declare", "event",
     _with(EVENT, data={"density": 90, "colour": "grey"}), None, "/data"),
    ("a member the envelope does not declare", "event", _with(EVENT, priority=1), None, "/"),
    ("an event without its id", "event", _with(EVENT, id=_GONE), None, "/"),
    ("a string where the state declares a number", "state", _with(STATE, total_power_w="120.5"),
     "charger", "/total_power_w"),
    ("a state member the kind does not declare", "state", _with(STATE, lock="locked"), "charger",
     "/"),
    ("a pile's firmware in every state, not once in the devices list", "state",
     _with(STATE, firmware="1.3"), "charger", "/"),
    ("a door saying it has ports", "devices",
     {"ts": 1.0, "devices": [_with(DEVICE, port_count=12)]}, None, "/devices/0"),
    ("a command without its required arg", "cmd", _with(COMMAND, args={}), None, "/args"),
    ("a command without the args it needs", "cmd", _with(COMMAND, args=_GONE), None, "/"),
    ("an arg out of range", "cmd", _with(COMMAND, args={"port": 0}), None, "/args/port"),
    ("an arg the action does not take", "cmd", _with(COMMAND, args={"port": 1, "force": True}),
     None, "/args"),
    ("an unlock longer than 30 s", "cmd",
     _with(COMMAND, device="door-main", action="unlock", args={"seconds": 31}), None,
     "/args/seconds"),
    ("an ack without the alarm", "cmd", _with(COMMAND, action="ack_alarm", args={}), None,
     "/args"),
    ("an action nobody offers", "cmd", _with(COMMAND, action="explode"), None, "/action"),
    ("a signature that is not 64 hex digits", "cmd", _with(COMMAND, sig="AB" * 32), None, "/sig"),
    ("ok with a refusal's code", "cmd-result", _with(RESULT, ok=True), None, "/ok"),
    ("a code the contract does not have", "cmd-result", _with(RESULT, code="nope"), None,
     "/code"),
    ("online without fire mode and site", "status", _with(STATUS, fire_mode=_GONE), None, "/"),
    ("an alarm of the wrong severity for its type", "alarms",
     {"ts": 1.0, "active": [_with(ALARM, severity="warning")]}, None, "/active/0/severity"),
    ("a port's values without the port", "telemetry",
     _with(TELEMETRY, ports=[{"power_w": 231}]), None, "/ports/0"),
    ("a telemetry member the envelope does not declare", "telemetry",
     _with(TELEMETRY, pile={"unit": 1}), None, "/"),
    ("a door offering a charger's action", "devices",
     {"ts": 1.0, "devices": [_with(DEVICE, actions=["port_on"])]}, None, "/devices/0/actions/0"),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "body", "kind"), POSITIVE)
def test_what_the_gateway_writes_validates(schema: str, body: Any, kind: str | None) -> None:
    assert not problems(f"{SCHEMA_DIR}/{schema}.json", body)
    if kind:
        assert not problems(f"{SCHEMA_DIR}/{schema}.json", body, kind)


@pytest.mark.parametrize(("why", "schema", "body", "kind", "where"), NEGATIVE,
                         ids=[n[0] for n in NEGATIVE])  # fmt: skip
def test_the_schemas_reject(why: str, schema: str, body: Any, kind: str | None, where: str) -> None:
    found = problems(f"{SCHEMA_DIR}/{schema}.json", body, kind)
    assert found, f"{why}: accepted"
    assert any(p.startswith(f"at {where}:") for p in found), found
    if kind:  # the topic's whole schema (any kind's state) rejects it too
        assert not valid(f"{SCHEMA_DIR}/{schema}.json", body)


# -- a family installed later appears without touching the generator --------------------------


class ToyFamily(Family):
    """A family as a third party's plugin would declare it."""

    kind: ClassVar[str] = "toy"
    title: ClassVar[str] = "toy buzzer"
    buses: ClassVar[tuple[str, ...]] = ("serial",)
    actions: ClassVar[dict[str, ActionSpec]] = {
        "ring": ActionSpec({"times": Int(1, 9, default=3, doc="how often")}, "Ring it."),
        "tune": ActionSpec({"song": OneOf("birthday", "fire_drill")}),
    }
    events: ClassVar[dict[str, EventSpec]] = {
        "toy.beeped": EventSpec("info", "It beeped.", fields(times="integer")),
        "toy.sample": EventSpec("info", "Readings.", fields(v="number"), internal=True),
    }
    state: ClassVar[dict[str, Any]] = fields(volume="integer", muted="boolean")
    telemetry: ClassVar[dict[str, Any]] = fields(volume="integer")


def test_a_plugin_family_appears_in_the_generated_contract() -> None:
    src = installed()
    files = build(dataclasses.replace(src, families={**src.families, "toy": ToyFamily()}))
    event = Draft202012Validator(files[f"{SCHEMA_DIR}/event.json"])
    beeped = {"id": "1", "ts": 1.0, "device": "buzzer-1", "type": "toy.beeped",
              "severity": "info", "data": {"times": 2}}  # fmt: skip
    assert event.is_valid(beeped)
    assert not event.is_valid({**beeped, "data": {"times": "2"}})
    assert not event.is_valid({**beeped, "type": "toy.sample"})  # internal: never published
    cmd = Draft202012Validator(files[f"{SCHEMA_DIR}/cmd.json"])
    ring = {"id": "c1", "device": "buzzer-1", "action": "ring", "iat": 1, "exp": 2, "sig": "0" * 64}
    assert cmd.is_valid({**ring, "args": {"times": 9}})
    assert not cmd.is_valid({**ring, "args": {"times": 10}})
    assert not cmd.is_valid({**ring, "action": "tune", "args": {"song": "anthem"}})
    assert files[f"{SCHEMA_DIR}/cmd.json"]["$defs"]["toy.ring"]["properties"]["times"] == {
        "type": "integer", "minimum": 1, "maximum": 9, "default": 3, "description": "how often"
    }  # fmt: skip
    state = files[f"{SCHEMA_DIR}/state.json"]
    assert state["$defs"]["toy"]["properties"]["volume"] == {"type": "integer"}
    assert Draft202012Validator(state).is_valid({"ts": 1.0, "volume": 3, "muted": False})
    devices = files[f"{SCHEMA_DIR}/devices.json"]["$defs"]["device"]
    assert "toy" in devices["properties"]["kind"]["enum"]
    assert "toy (toy buzzer)" in files["asyncapi.json"]["info"]["description"]
    # and nothing else moved: the installed families' parts are as they were
    before = build(src)
    assert files["asyncapi.json"]["channels"] == before["asyncapi.json"]["channels"]


# -- a Field's JSON Schema says what its checker accepts ----------------------------------------

SAMPLES = [0, 1, 30, 31, -5, 2.5, True, False, None, "", "a", "b", "C0:FF:EE:00:00:01",
           "c0:ff:ee:00:00:01", "C0:FF:EE", ["a"], [1], [], {}, 9600, 9601]  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [Int(1, 30), Float(0.5, 30), Bool(), Str(), Str(pattern=r"[0-9A-F]{2}(:[0-9A-F]{2}){5}"),
     OneOf("a", "b"), StrList()],
    ids=["Int", "Float", "Bool", "Str", "Str(pattern)", "OneOf", "StrList"],
)  # fmt: skip
def test_a_fields_json_schema_accepts_what_its_checker_accepts(spec: Any) -> None:
    # Not 5.0 for an integer: JSON Schema counts it one, the gate does not (README says so).
    schema = Draft202012Validator(dict(spec.json))
    for value in SAMPLES:
        try:
            spec.convert(value)
            accepted = True
        except (ValueError, TypeError):
            accepted = False
        assert schema.is_valid(value) == accepted, (spec.expected, value)


# -- the v1 contract (shared/contract/mqtt.md) and the generated one agree ---------------------


def test_the_v1_contracts_examples_validate() -> None:
    """mqtt.md's event, command and result, as written there (its placeholder sig aside)."""
    event = {"id": "<unique per gateway, stable across retries>", "ts": 1763798400.25,
             "device": "smoke-301", "type": "smoke.alarm", "severity": "critical",
             "data": {"density": 90}}  # fmt: skip
    command = {"id": "c0f3...", "device": "door-main", "action": "unlock",
               "args": {"seconds": 5}, "user": "tenant-302", "iat": 1763798400,
               "exp": 1763798430, "sig": "0123456789abcdef" * 4}  # fmt: skip
    result = {"id": "c0f3...", "ok": False, "code": "expired", "detail": "...", "ms": 3.2}
    for schema, body in (("event", event), ("cmd", command), ("cmd-result", result)):
        assert not problems(f"{SCHEMA_DIR}/{schema}.json", body), schema


def test_the_v1_actions_and_codes_are_all_in_the_generated_contract() -> None:
    cmd = load(f"{SCHEMA_DIR}/cmd.json")
    args = {name: d["properties"] for name, d in cmd["$defs"].items()}
    assert args["door_lock.unlock"]["seconds"] | {"description": ""} == {
        "type": "integer", "minimum": 1, "maximum": 30, "default": 5, "description": ""
    }  # fmt: skip
    for name in ("door_lock.lock", "door_lock.status", "charger.all_off", "gateway.fire_reset",
                 "gateway.ping"):  # fmt: skip
        assert args[name] == {}, name
    for name in ("charger.port_on", "charger.port_off"):
        assert set(args[name]) == {"port"} and cmd["$defs"][name]["required"] == ["port"]
    assert cmd["$defs"]["gateway.ack_alarm"]["required"] == ["alarm"]
    v1_codes = {"ok", "invalid", "bad_signature", "expired", "replayed", "unknown_device",
                "unsupported", "forbidden", "rate_limited", "device_error", "timeout"}  # fmt: skip
    assert v1_codes <= set(load(f"{SCHEMA_DIR}/cmd-result.json")["properties"]["code"]["enum"])
    events = set(load(f"{SCHEMA_DIR}/event.json")["properties"]["type"]["enum"])
    assert {"smoke.alarm", "smoke.cleared", "smoke.missing", "charger.port_cut", "door.unlocked",
            "door.forced", "gateway.fire_mode"} <= events  # fmt: skip
    # v1 names charger.overheat among its examples of event types: gatewayd says it as an alarm
    # (alarms), with the cut as a charger.port_cut event (README.md, "The v1 contract").
    alarm_types = load(f"{SCHEMA_DIR}/alarms.json")["$defs"]["alarm"]["properties"]["type"]
    assert "charger.overheat" in alarm_types["enum"]
