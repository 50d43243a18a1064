"""The exporter's state, fed the frames the gateway's own encoder writes (gatewayd/metrics/push.py):
a lost delta is never applied to the wrong values, a gateway of the inventory that never
pushed is down, a clock far off is not believed, and a payload that is not a frame (or tries
to smuggle lines into the exposition) changes nothing."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

from gatewayd_relay.exporter import MAX_FRAME, Exporter
from prometheus_client.parser import text_string_to_metric_families

from gatewayd.metrics.push import Encoder, Series, encode, number

TOPIC = "pingan/v1/gw-1/metrics"
KEYS: list[Series] = [
    ("gatewayd_fire_mode", "gauge", "", ()),
    ("gatewayd_bus_up", "gauge", "", ("bus", "rs485", "driver", "modbus")),
    ("gatewayd_outbox_dropped_total", "counter", "", ("lane", "info")),
]


def samples(exp: Exporter, now: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exp.exposition(now).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(exp: Exporter, name: str, now: float) -> float | None:
    got = [v for (n, labels), v in samples(exp, now).items() if n == name]
    return got[0] if got else None


def test_a_lost_delta_waits_for_the_next_keyframe() -> None:
    exp, enc, now = Exporter("pingan/v1"), Encoder(60, keyframe_every=4), time.time()
    frames = [enc.frame(KEYS, [number(v), 1, 0], now + i) for i, v in enumerate((0, 1, 0, 1, 1))]
    assert ["f" in f for f in frames] == [True, False, False, False, True]
    sent = [enc.payload(f) for f in frames]
    exp.receive(TOPIC, sent[0], now)
    exp.receive(TOPIC, sent[1], now + 1)
    assert value(exp, "gatewayd_fire_mode", now + 1) == 1
    # sent[2] (fire mode back to 0) is lost: sent[3] must not be applied on top of sent[1]
    # (deflated against sent[2], it cannot even be read here)
    exp.receive(TOPIC, sent[3], now + 3)
    assert exp.gaps + exp.rejected == 1
    assert value(exp, "gatewayd_fire_mode", now + 3) is None  # nothing rather than a guess
    assert value(exp, "gatewayd_push_up", now + 3) == 1  # it is alive, though
    exp.receive(TOPIC, sent[4], now + 4)
    assert value(exp, "gatewayd_fire_mode", now + 4) == 1
    assert value(exp, "gatewayd_outbox_dropped_total", now + 4) == 0


def test_a_gateway_of_the_inventory_that_never_pushed_is_down(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "gateway_id,address,village,township\ngw-1,,柳墅村,新庄镇\ngw-2,,柳墅村,新庄镇\n"
    )
    exp, now = Exporter("pingan/v1", inventory=str(inventory)), time.time()
    frame = Encoder(60).frame(KEYS, [0, 1, 0], now)
    exp.receive(TOPIC, encode(frame), now)
    got = samples(exp, now + 1)
    place = (("gateway", "gw-2"), ("instance", "gw-2"), ("job", "gatewayd"),
             ("township", "新庄镇"), ("village", "柳墅村"))  # fmt: skip
    assert got[("gatewayd_push_up", place)] == 0
    gw1 = (("gateway", "gw-1"), ("instance", "gw-1"), *place[2:])
    assert got[("gatewayd_push_up", gw1)] == 1
    assert value(exp, "gatewayd_bus_up", now + 1) == 1
    # Three periods later without a frame, gw-1 is stale too (2.5 periods) and its samples go.
    assert all(v == 0 for (n, _), v in samples(exp, now + 181).items() if n == "gatewayd_push_up")
    assert value(exp, "gatewayd_bus_up", now + 181) is None


def test_a_clock_far_off_is_not_believed() -> None:
    exp, now = Exporter("pingan/v1"), time.time()
    frame = Encoder(60).frame(KEYS, [0, 1, 0], 86400.0)  # a Pi that booted in 1970
    exp.receive(TOPIC, encode(frame), now)
    text = exp.exposition(now).decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("gatewayd_fire_mode{"))
    assert abs(int(line.rsplit(" ", 1)[1]) / 1000 - now) < 1
    skew = value(exp, "gatewayd_push_clock_skew_seconds", now)
    assert skew is not None and skew < -1e9


def test_a_delta_sent_in_plain_json_after_a_loss_is_a_gap() -> None:
    exp, enc, now = Exporter("pingan/v1"), Encoder(60), time.time()
    first = enc.frame(KEYS, [0, 1, 0], now)
    exp.receive(TOPIC, enc.payload(first), now)
    enc.frame(KEYS, [1, 1, 0], now + 1)  # lost
    third = enc.frame(KEYS, [1, 1, 1], now + 2)
    exp.receive(TOPIC, encode(third), now + 2)
    assert exp.gaps == 1 and value(exp, "gatewayd_fire_mode", now + 2) is None


def test_payloads_that_are_not_frames_change_nothing() -> None:
    exp, now = Exporter("pingan/v1"), time.time()
    exp.receive(TOPIC, encode(Encoder(60).frame(KEYS, [0, 1, 0], now)), now)
    before = samples(exp, now)
    smuggled = {"v": 1, "t": 1, "n": 2, "p": 60,
                "f": [["x", "gauge", [["", ["a", 'b"} 1\nevil_total 1\nx{a="'], 1]]]]}  # fmt: skip
    bad_name = {"v": 1, "t": 1, "n": 2, "p": 60, "f": [["x 1\nevil", "gauge", []]]}
    bad_label = {"v": 1, "t": 1, "n": 2, "p": 60, "f": [["x", "gauge", [["", ["a b", "1"], 1]]]]}
    ours = {"v": 1, "t": 1, "n": 2, "p": 60, "f": [["gatewayd_push_up", "gauge", [["", [], 1]]]]}
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = z.compress(b'{"t":1,"n":1,"d":[' + b"0," * MAX_FRAME + b"0]}") + z.flush()
    for payload in (encode(bad_name), encode(bad_label), encode(ours)):  # all or nothing
        exp.receive(TOPIC, payload, now)
    after = samples(exp, now)
    assert after.pop(("gatewayd_push_frames_refused_total", ())) == 3
    assert before.pop(("gatewayd_push_frames_refused_total", ())) == 0
    assert after == before
    # Unreadable: what follows cannot be trusted to continue the chain; nothing is applied.
    # The first is refused; the rest, while waiting for a keyframe, may be deltas deflated
    # against a frame this exporter missed, and are not counted.
    for payload in (b"", b"not json", b"[1,2]", bomb):
        exp.receive(TOPIC, payload, now)
    assert exp.rejected == 4 and value(exp, "gatewayd_fire_mode", now) is None
    assert value(exp, "gatewayd_push_up", now) == 1
    exp.receive(TOPIC, encode(smuggled), now)  # escaped: one series with an odd label value
    names = {n for n, _ in samples(exp, now)}
    assert "evil_total" not in names and "x" in names
    exp.receive("pingan/v1/../metrics", encode(Encoder(60).frame(KEYS, [1, 1, 1], now)), now)
    assert set(exp.gateways) == {"gw-1"}


def test_a_replica_that_joins_late_sees_the_gateway_alive_then_its_series(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("gateway_id,village,township\ngw-1,柳墅村,新庄镇\n")
    enc, now = Encoder(60, keyframe_every=3), time.time()
    sent = [enc.payload(enc.frame(KEYS, [0, 1, i], now + i)) for i in range(4)]
    late = Exporter("pingan/v1", inventory=str(inventory))  # the keyframe sent[0] went by
    for i in (1, 2):
        late.receive(TOPIC, sent[i], now + i)
        assert value(late, "gatewayd_push_up", now + i) == 1  # alive: its deltas arrive
        assert value(late, "gatewayd_bus_up", now + i) is None  # nothing to show yet
    late.receive(TOPIC, sent[3], now + 3)  # the next keyframe
    assert value(late, "gatewayd_outbox_dropped_total", now + 3) == 3
    assert late.rejected == 0
