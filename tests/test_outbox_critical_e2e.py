"""Fire first on the wire, end to end (issue 14 item 4): the broker is down, the house piles up
10,000 warnings, info events and telemetry readings, then a detector goes into alarm; when the
broker returns, the platform hears the smoke alarm before any of the backlog, the backlog
follows whole and in order, and the gateway's histogram counts the alarm's delivery from its
frame, the outage included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backlog_site import (
    Platform,
    backlog_bus,
    install_backlog,
    persistent_broker,
    pile_up,
    sample,
)
from tests.harness import (
    Broker,
    Daemon,
    Msg,
    ReceiverThread,
    free_port,
    make_site,
    smoke_config,
    wait_until,
)

EVENTS, TELEMETRY = 8_000, 2_000
OUTAGE_AFTER_FRAME = 3.0  # seconds the broker stays away after the alarm
WINDOW = 100  # messages in flight at once (gatewayd.uplink.link)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = persistent_broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_a_smoke_alarm_overtakes_a_ten_thousand_message_backlog(
    tmp_path: Path, broker: Broker, smoke_receiver: ReceiverThread
) -> None:
    receiver = smoke_receiver
    port = free_port()
    trigger = tmp_path / "backlog.json"
    body = (
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n\n'
        # Every reading its own message: the backlog is 10,000 messages, not thinned.
        '[uplink]\nreport = "every_reading"\n\n'
        + smoke_config(receiver.rx.path, {"smoke-301": "1A2B3C4D"}, ping_seconds=5)
        + "\n"
        + backlog_bus(trigger)
    )
    site = make_site(tmp_path, broker.url, body)
    daemon = Daemon(site, env=install_backlog(tmp_path / "plugins"))
    daemon.start()
    platform = Platform(broker.port, site.root)
    try:
        wait_until(lambda: sample(port, "gatewayd_broker_connected") == 1, 10, "the link up")
        broker.stop()
        wait_until(lambda: sample(port, "gatewayd_broker_connected") == 0, 10, "the link down")
        before = sample(port, "gatewayd_outbox_depth") or 0  # what the gateway said meanwhile
        pile_up(trigger, EVENTS, TELEMETRY)
        assert sample(port, "gatewayd_outbox_depth") == before + EVENTS  # telemetry: in memory
        frame_at = time.time()
        receiver.call(receiver.rx.detector("1A2B3C4D").alarm(90))
        alarm = {"device": "smoke-301", "room": "301"}
        wait_until(lambda: sample(port, "gatewayd_smoke_alarm_active", **alarm) == 1, 5, "alarm")
        assert sample(port, "gatewayd_outbox_depth") > before + EVENTS  # behind the backlog
        time.sleep(max(0.0, frame_at + OUTAGE_AFTER_FRAME - time.time()))
        back = platform.mark()  # what the platform got before the outage ends here
        broker.start()
        platform.wait(lambda: platform.backlog == EVENTS + TELEMETRY, 40, "the whole backlog")
        delivered = scrape_delivery(port)
    finally:
        platform.close()
        daemon.stop()

    def events_in(messages: list[Msg]) -> list[dict[str, Any]]:
        return [m.json() for m in messages if "/events/" in m.topic and not m.retain]

    # What came after the broker returned, but for redeliveries (at least once: the platform
    # drops a repeated id) of what the platform had before the outage.
    had = {e["id"] for e in events_in(platform.messages[:back])}
    drained = platform.messages[back:]
    events = [e for e in events_in(drained) if e["id"] not in had]
    kinds = [(e["device"], e["type"], e["severity"]) for e in events]
    first_backlog = next(i for i, e in enumerate(events) if e["device"].startswith("load-"))
    ahead = kinds[:first_backlog]
    # The smoke alarm, and the other critical events it caused (fire mode), before any backlog.
    assert ("smoke-301", "smoke.alarm", "critical") in ahead
    assert all(sev == "critical" for _, _, sev in ahead), ahead
    # The backlog follows whole, warnings before info, each in the order it was emitted, then
    # telemetry (memory only, the lowest class), which goes once no event is left to send: the
    # last window of events may still be in flight.
    backlog = [e for e in events if e["device"].startswith("load-")]
    assert [e["severity"] for e in backlog] == ["warning"] * 4000 + ["info"] * 4000
    for sev in ("warning", "info"):
        assert [e["data"]["n"] for e in backlog if e["severity"] == sev] == sorted(
            range(0 if sev == "warning" else 1, EVENTS, 2)
        )
    topics = [m.topic for m in drained if "/load-" in m.topic]
    assert all("/events/" in t for t in topics[: EVENTS - WINDOW])
    # The gateway's histogram: every critical event the platform got, counted from its frame
    # (more than the 3 s outage after it), none in a bucket at or under 2.5 s.
    critical = sum(1 for e in events if e["severity"] == "critical")
    assert critical >= 2  # smoke.alarm, gateway.fire_mode
    count, fast, inf, total = delivered
    assert count == inf == critical
    assert fast == 0
    assert total >= critical * (OUTAGE_AFTER_FRAME - 0.1)  # 0.1 s: the frame's own way in


def scrape_delivery(port: int) -> tuple[float | None, ...]:
    """(count, bucket le=2.5, bucket le=+Inf, sum) of the critical delivery histogram once
    the broker has acknowledged everything."""
    name = "gatewayd_critical_delivery_seconds"

    def settled() -> tuple[float | None, ...] | None:
        got = (
            sample(port, f"{name}_count"),
            sample(port, f"{name}_bucket", le="2.5"),
            sample(port, f"{name}_bucket", le="+Inf"),
            sample(port, f"{name}_sum"),
        )
        return got if sample(port, "gatewayd_outbox_depth") == 0 else None  # all acknowledged

    return wait_until(settled, 10, "the outbox to drain")  # type: ignore[no-any-return]
