"""The EFM-4 codec on register images written from the datasheet's table (not from the
emulator): units, signs, a broken sensor that has no value whatever its register holds, and
the events between two reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gatewayd_efm import codec
from gatewayd_efm.profile import EFM4

TYPES = [1, 1, 2, 2]  # two residual-current channels, two temperature channels
THRESHOLDS = [300, 300, 800, 800]


def image(values: list[int], states: list[int], peaks: list[int] | None = None) -> list[int]:
    """Input registers 16..35: values 16..19, 20..23 unlisted (0), states 24..27, 28..31, peaks 32..35."""
    return [*values, 0, 0, 0, 0, *states, 0, 0, 0, 0, *(peaks or values)]


def test_units_and_signs() -> None:
    chans = codec.decode_channels(
        EFM4, TYPES, image([12, 310, 0xFFEC, 805], [0, 1, 0, 1]), THRESHOLDS
    )
    assert [(c["value"], c["unit"], c["state"], c["threshold"]) for c in chans] == [
        (12, "mA", "normal", 300), (310, "mA", "alarm", 300),
        (-2.0, "°C", "normal", 80.0), (80.5, "°C", "alarm", 80.0)]  # fmt: skip


def test_identity_of_the_datasheets_example() -> None:
    ident = codec.decode_identity(EFM4, [0x4546, 0x0103, 4, 0b1001, 7])
    assert ident == {
        "model": 0x4546,
        "firmware": "1.3",
        "channels": 4,
        "status_bits": 9,
        "counter": 7,
    }
    assert codec.status_names(0b101001) == ["leakage_alarm", "trip_output", "mains_lost"]


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4), st.sampled_from([2, 3]))
def test_a_broken_sensor_has_no_value_whatever_its_register_holds(
    values: list[int], state: int
) -> None:
    chans = codec.decode_channels(EFM4, TYPES, image(values, [state] * 4), THRESHOLDS)
    assert all(c["value"] is None and c["peak"] is None for c in chans)
    assert {c["state"] for c in chans} == {"open_circuit" if state == 2 else "short_circuit"}


def test_unused_channels_are_left_out() -> None:
    chans = codec.decode_channels(EFM4, [1, 0, 0, 2], image([5, 0, 0, 250], [0] * 4), THRESHOLDS)
    assert [c["channel"] for c in chans] == [1, 4]


def test_events_between_reads() -> None:
    def ch(state: str, value: float | None) -> dict:
        return {"channel": 1, "type": "residual_current", "state": state, "value": value,
                "peak": value, "threshold": 300, "unit": "mA"}  # fmt: skip

    assert codec.channel_events(ch("normal", 12), ch("normal", 200), False) == []
    alarm = codec.channel_events(ch("normal", 200), ch("alarm", 320), False)
    assert [(t, s) for t, s, _ in alarm] == [("electrical.leakage_alarm", "critical")]
    assert codec.channel_events(ch("normal", 200), ch("alarm", 320), True) == []  # self-test
    over = codec.channel_events(ch("alarm", 320), ch("alarm", 40), False)
    assert [(t, d["alarm"]) for t, _, d in over] == [
        ("electrical.alarm_over", "electrical.leakage_alarm")
    ]
    assert codec.channel_events(ch("alarm", 40), ch("alarm", 30), False) == []  # said once
    # Seen first in alarm and already below (it fell between two reads): both, in order.
    both = codec.channel_events(None, ch("alarm", 40), False)
    assert [t for t, _, _ in both] == ["electrical.leakage_alarm", "electrical.alarm_over"]
    fault = codec.channel_events(ch("normal", 12), ch("open_circuit", None), False)
    assert [(t, s, d["fault"]) for t, s, d in fault] == [
        ("electrical.fault", "warning", "open_circuit")
    ]
