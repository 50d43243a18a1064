"""EFM-4 registers → readings, over every recorded register dump of every detector model
(fixtures/efm4, recorded by fixtures/record_efm4.py from the datasheet's tables): the plugin's
profile and codec decode each dump to the recorded identity, channels and first-sight events,
and the real modbus driver, reading a detector that answers with the dump over an RTU pty and
Modbus TCP, publishes the recorded state, telemetry and events."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures import files, parametrize_snapshots
from fixtures.record_efm4 import MODELS, path_of, record

from efm_harness import house, on_line, until
from firmware_stubs.ebc_pile import EbcEmulator
from gatewayd_efm import codec
from gatewayd_efm.profile import PROFILES, EfmProfile
from gatewayd_efm_stubs.efm4_replay import ReplayedEfm4
from tests.charger_harness import RulesLoop
from tests.fixtures import load
from tests.fixtures.record import text_of


def span(regs: list[int], start: int, count: int) -> list[int]:
    return regs[start : start + count]


def decoded(snap: dict[str, Any]) -> tuple[EfmProfile, dict[str, Any], list[dict[str, Any]]]:
    """The plugin's reading of a dump: through the same spans the session reads."""
    p = PROFILES[snap["profile"]]
    inputs, holding = snap["input"]["0"], snap["holding"]["0"]
    identity = codec.decode_identity(p, span(inputs, *p.identity_span()))
    types = span(inputs, *p.types_span())[: identity["channels"]]
    thresholds = span(span(holding, *p.settings_span()), p.threshold_base, p.channels)
    channels = codec.decode_channels(p, types, span(inputs, *p.channels_span()), thresholds)
    return p, identity, channels


def subset(event: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """An event as published, cut to what the recording says of it."""
    return {
        "type": event["type"],
        "severity": event["severity"],
        "data": {k: event["data"].get(k) for k in recorded["data"]},
    }


# -- the files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_fixture_is_what_its_emulator_records_now(model: str) -> None:
    assert path_of(model).read_text(encoding="utf-8") == text_of(record(model)), (
        f"stale: re-record with `{record(model)['recorded_with']}` and review"
    )


def test_every_fixture_file_has_a_recorder_and_the_common_header() -> None:
    assert set(files()) == {path_of(m) for m in MODELS}
    for path in files():
        fx = load(path)
        assert (fx["format"], fx["family"], fx["model"]) == (1, "efm4", path.stem)
        assert fx["profile"] in PROFILES
        assert fx["datasheet"] == "shared/datasheets/electrical-fire-efm.md"


def test_efm4_values_checked_by_hand() -> None:
    """Against electrical-fire-efm.md's tables, not the recorder's decoding."""
    snaps = {s["name"]: s for s in load(path_of("EFM-4"))["snapshots"]}
    normal = snaps["normal"]
    assert normal["input"]["0"][:3] == [0x4546, 0x0103, 4]  # "EF", firmware 1.3, 4 channels
    assert normal["holding"]["0"] == [300, 300, 800, 800, 10, 0, 0]  # the defaults
    cold = snaps["two-circuits"]
    assert cold["input"]["0"][8:12] == [1, 0, 2, 0]
    assert cold["input"]["0"][18] == 0x10000 - 125  # −12.5 °C, s16 in 0.1 °C
    assert [c["value"] for c in cold["readings"]["state"]["channels"]] == [15, -12.5]
    latched = snaps["leakage-fell-back"]["input"]["0"]
    assert (latched[3], latched[16], latched[24], latched[32]) == (0b1, 40, 1, 320)
    broken = snaps["broken-sensors"]
    assert broken["input"]["0"][25:28:2] == [2, 3] and broken["input"]["0"][3] == 0b100
    assert [c["value"] for c in broken["readings"]["state"]["channels"]] == [12, None, 25.0, None]
    assert snaps["tripped"]["coils"]["0"] == [True] and snaps["tripped"]["input"]["0"][3] == 8
    assert snaps["self-test"]["input"]["0"][3] == 0b10011
    assert snaps["mains-lost"]["input"]["0"][3] == 0b100000


# -- the codec ------------------------------------------------------------------------------------


@parametrize_snapshots()
def test_identity_and_status(snap: dict[str, Any]) -> None:
    _, identity, _ = decoded(snap)
    expected = snap["readings"]
    assert identity == expected["identity"]
    assert codec.status_names(identity["status_bits"]) == expected["state"]["status"]


@parametrize_snapshots()
def test_every_channel(snap: dict[str, Any]) -> None:
    """Type, state, value and peak in the channel's unit (none for a broken sensor, never 0),
    the threshold in the same unit; unused channels left out."""
    _, _, channels = decoded(snap)
    assert channels == snap["readings"]["state"]["channels"]


@parametrize_snapshots()
def test_what_a_first_read_reports_per_channel(snap: dict[str, Any]) -> None:
    _, identity, channels = decoded(snap)
    self_test = "self_test" in codec.status_names(identity["status_bits"])
    got = [
        {"type": t, "severity": s, "data": d}
        for ch in channels
        for t, s, d in codec.channel_events(None, ch, self_test)
    ]
    recorded = [e for e in snap["readings"]["events"] if e["type"] != "electrical.tripped"]
    assert got == recorded


# -- the driver, over the wire ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
@parametrize_snapshots()
def test_a_recorded_dump_is_published_as_its_readings(snap: dict[str, Any], transport: str) -> None:
    """A detector answering with a recorded dump: the retained state, the telemetry and the
    events of the first read are the recording's."""
    efm = ReplayedEfm4(snap, unit=9)
    expected = snap["readings"]

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with house(loop, bus, {}, {"efm-9": 9}):
            await until(lambda: "channels" in loop.states.get("efm-9", {}), what="a full read")
            # The first full read's events are emitted before its state is published.
            state = loop.states["efm-9"]
            events = [e for e in loop.events if e.device == "efm-9"]
            telemetry = [v for d, v in loop.telemetry if d == "efm-9"]
        assert state == {"online": True, "unit": 9, **expected["state"]}
        assert telemetry[: len(expected["telemetry"])] == expected["telemetry"]
        published = [
            {"type": e.type, "severity": e.severity, "data": e.data}
            for e in events
            if e.type != "electrical.online"
        ]
        assert [subset(e, r) for e, r in zip(published, expected["events"], strict=False)] == (
            expected["events"]
        )
        assert len(published) == len(expected["events"])

    on_line(body, [efm], transport)
