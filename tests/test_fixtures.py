"""The recorded fixtures themselves: still what the emulators produce, and right where the
datasheets give a worked example or a value to check by hand.

The checks here are written from the datasheets' words and use neither the product's code nor
the emulators' (the CRC is a bit-by-bit reference), so a fixture cannot carry a mistake shared
by both into the product's tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.fixtures import HERE, Fixture, files, load, parametrize_by_fixture, unhex
from tests.fixtures.cases import srb433_frames
from tests.fixtures.record import FAMILIES, path_of, record, text_of
from tests.reference import reference_crc

DATASHEET_EXAMPLE = "AA 55 07 01 1A 2B 3C 4D 07 5A 29 5D"  # smoke-rf-bridge.md, "Example"


RECORDINGS = [(family, name) for family, (recorders, _) in FAMILIES.items() for name in recorders]


@pytest.mark.parametrize(("family", "name"), RECORDINGS, ids=[f"{f}/{n}" for f, n in RECORDINGS])
def test_every_fixture_is_what_its_emulator_records_now(family: str, name: str) -> None:
    """A change to an emulator that changes what it sends shows here, and is re-recorded on
    purpose (``python -m tests.fixtures.record``), never drifting from the tests' data."""
    fresh = text_of(record(family, name))
    assert path_of(family, name).read_text(encoding="utf-8") == fresh, (
        f"stale: re-record with `python -m tests.fixtures.record {family} {name}` and review"
    )


def test_every_fixture_file_has_a_recorder_and_the_common_header() -> None:
    recorded = {path_of(f, n) for f, n in RECORDINGS}
    on_disk = set(HERE.glob("*/*.json"))
    assert on_disk == recorded
    for path in on_disk:
        fx = json.loads(path.read_text(encoding="utf-8"))
        assert (fx["format"], fx["family"], fx["model"]) == (1, path.parent.name, fx["model"])
        assert fx["recorded_with"].startswith("python -m tests.fixtures.record")


# -- SRB-433 ------------------------------------------------------------------------------------


@parametrize_by_fixture("srb433")
def test_srb433_frames_follow_the_frame_table(fixture: Fixture) -> None:
    for _, rec in srb433_frames(fixture):
        wire, payload = unhex(rec["hex"]), unhex(rec["payload"])
        assert wire[:2] == b"\xaa\x55"
        assert wire[2] == 6 + len(payload) == len(wire) - 5
        assert (wire[3], wire[4:8].hex().upper(), wire[8]) == (
            rec["type"], rec["device"], rec["seq"],
        )  # fmt: skip
        assert wire[9:-2] == payload
        assert reference_crc(wire[2:-2]) == int.from_bytes(wire[-2:], "little")


def test_sd10_holds_the_datasheet_example_as_a_smoke_alarm_of_density_90() -> None:
    [first] = [
        f for f in load(HERE / "srb433" / "SD-10.json")["frames"] if f["hex"] == DATASHEET_EXAMPLE
    ]
    assert (first["type"], first["device"], first["seq"], first["payload"]) == (
        1,
        "1A2B3C4D",
        7,
        "5A",
    )
    assert first["event"]["type"] == "smoke.alarm"
    assert first["event"]["data"]["density"] == 0x5A == 90


def test_detector_models_send_only_what_the_model_table_says() -> None:
    sent = {
        load(p)["model"]: {f["type"] for f in load(p)["frames"]}
        for p in files("srb433", "detector")
    }
    assert sent == {
        "SD-10": set(range(1, 9)),
        "SHD-20": set(range(1, 10)),  # the only one with a heat alarm (0x09)
        "SD-1L": {0x01, 0x03, 0x04},  # "sends only on alarm, test and low battery": no heartbeat
    }
    assert not load(HERE / "srb433" / "SD-1L.json")["supervised"]


@parametrize_by_fixture("srb433", "receiver")
def test_receiver_revisions_and_sound_all(fixture: Fixture) -> None:
    """Rev B is firmware 0x0200 and later and acts on 0x84; rev A ignores it. 0x82 silences."""
    rev_b = fixture["firmware"] >= 0x0200
    assert fixture["revision"] == ("B" if rev_b else "A")
    status = unhex(fixture["power_up"][0]["hex"])
    assert int.from_bytes(status[9:11], "big") == fixture["firmware"]
    by_command = [(ex["command"], ex["effect"]) for ex in fixture["exchanges"]]
    sound = [e for c, e in by_command if c.startswith("sound all")]
    assert [e["ignored"] for e in sound] == [not rev_b] * 2
    assert [e["sounding"] for e in sound] == [rev_b] * 2
    after_hush = [e for c, e in by_command if c == "hush all"]
    assert [e["sounding"] for e in after_hush] == [False, False]
    paired = next(ex for ex in fixture["exchanges"] if ex["command"].startswith("pair"))
    assert [r["says"]["model_name"] for r in paired["receiver"]] == ["SD-10", "SHD-20", "SD-1L"]
    assert [unhex(r["hex"])[13] for r in paired["receiver"]] == [0x01, 0x02, 0x11]


# -- EBC ------------------------------------------------------------------------------------------


@parametrize_by_fixture("ebc")
def test_ebc_dumps_follow_the_register_map(fixture: Fixture) -> None:
    n = fixture["ports"]
    for snap in fixture["snapshots"]:
        inputs = snap["input"]
        assert set(inputs) == {"0", "256", *(str(16 + 8 * i) for i in range(n))}
        assert inputs["0"][0] == 0x4542  # model id, "EB"
        assert inputs["0"][2] == n == len(snap["coils"]["0"])
        assert inputs["256"][5] == inputs["0"][3]  # summary status = register 3


def test_ebc_values_checked_by_hand() -> None:
    snap = load(HERE / "ebc" / "EBC-12.json")["snapshots"][0]
    assert snap["name"] == "charging"
    assert snap["holding"]["0"] == [1000, 850, 1800, 0]  # the datasheet's defaults
    port4, port8 = snap["input"]["40"], snap["input"]["72"]
    assert port4[6] == 625 and snap["readings"]["ports"][3]["temperature_c"] == 62.5
    assert port8[6] == 0xFE70 and snap["readings"]["ports"][7]["temperature_c"] == -40.0
    assert snap["input"]["256"][:2] == [625, 4]  # the summary's hottest: port 4, 62.5 °C
    stop = load(HERE / "ebc" / "EBC-12.json")["snapshots"][1]
    assert stop["name"] == "emergency-stop"
    assert stop["coils"]["0"][:2] == [False, True]  # the welded relay stays closed …
    assert stop["input"]["24"][0] == 3 and stop["input"]["24"][7] == 4  # … in fault 4, welded


# -- DL-B2 --------------------------------------------------------------------------------------


def test_dl_b2_first_command_is_the_hand_worked_mac_vector() -> None:
    first = load(HERE / "dl_b2" / "DL-B2.json")["transcript"][0]
    assert first["challenge"] == " ".join(f"{b:02X}" for b in range(16))
    assert unhex(first["command"]["hex"]).hex() == (
        "0112340005" "d2d0f8ff8f45e5d15e94e92b2e05eaf9"
    )  # fmt: skip


@parametrize_by_fixture("dl_b2")
def test_dl_b2_commands_carry_the_datasheet_mac_and_acks_their_seq(fixture: Fixture) -> None:
    key = bytes.fromhex(fixture["key"])
    for step in fixture["transcript"]:
        if "command" not in step:
            continue
        cmd = unhex(step["command"]["hex"])
        assert len(cmd) == 21
        if "challenge" in step and step["command"].get("note") != "wrong key":
            msg = unhex(step["challenge"]) + cmd[:5]
            assert cmd[5:] == hmac.new(key, msg, hashlib.sha256).digest()[:16]
        acks = [n for n in step["notifications"] if n["type"] == 0x10]
        assert [a["fields"]["seq"] for a in acks] == [step["command"]["seq"]]
