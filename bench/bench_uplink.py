"""What a house costs on the 4G card: MQTT bytes and messages a day, report by exception beside
every read (issue 17), both from the same readings in the same run.

The house: one 12-port EBC pile (the emulator's model, firmware_stubs.ebc_model) with 3 ports
charging all day on its charging curve (constant power, then the taper to full; a full battery
floats, is unplugged, and a fresh one plugged after a while), mains and charger draw jittering
as real ones do; 6 smoke detectors with hourly heartbeats; one entrance lock opened 50 times a
day (unlocked, door opened, door closed, locked). The day is simulated (tests/simclock: the
event loop jumps to its next timer), so it takes a minute, not a day.

The real code runs: the modbus driver's poll loops (``ModbusDriver`` over a link that answers
from the model in-process), the smoke profile's frame decoding, the lock's ``LockReport``. Every
event, state and telemetry call goes to two real ``Publisher``s at once: ``[uplink] report =
"every_reading"`` (the behaviour before issue 17) and ``"by_exception"`` (the default). Each
counts what it would put on the wire: the PUBLISH packet (fixed header, remaining length,
topic, packet id, payload) and, for QoS 1, the broker's 4-byte PUBACK. TCP/TLS overhead is not
counted (the same per packet for both).

The same day feeds a real ``Gateway``'s metrics (its event counters and device states, the
collector the /metrics endpoint uses) and the real pusher of ``[metrics] push_seconds``
(gatewayd/metrics/push.py) at 60, 120 and 180 s, the suggested period: its MQTT bytes are the
month's cost of pushed metrics, beside the gzip'd exposition text the endpoint would serve at
each of those pushes (what a naive push would send).

Run alone: ``python -m bench.bench_uplink [--hours 24] [--fast 1 --slow 10]``;
``--fast 1 --slow 1`` is the 1 s polling row (ThingsBoard's gateway sends one message a poll).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from gatewayd.uplink.publisher import BareHouse
from tests import simclock

DAY = 86400.0
ROOT = "pingan/v1/gw-bench"
CHARGING_PORTS = (1, 5, 9)
DETECTORS = 6
OPENINGS = 50
PUSH_PERIODS = (60.0, 120.0, 180.0)  # [metrics] push_seconds, side by side; 180 suggested


def publish_bytes(topic: str, payload: bytes, qos: int) -> int:
    """MQTT 3.1.1 PUBLISH on the wire, plus its PUBACK for QoS 1."""
    rest = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    length = 1
    while rest >= 128**length:
        length += 1
    return 1 + length + rest + (4 if qos else 0)


class Wire:
    """Stands in for ``MqttLink``: counts what would be sent; the broker acknowledges at once."""

    connected = True

    def __init__(self, kinds: Mapping[str, str]) -> None:
        self.bytes: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.kinds = kinds
        #: (kind, channel) -> bytes, messages: the per-family figures `gatewayd check`'s
        #: estimate is built on (Family.traffic).
        self.by_kind: Counter[tuple[str, str, str]] = Counter()
        self.publisher: Any = None
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        channel, *device = topic.removeprefix(ROOT + "/").split("/")
        size = publish_bytes(topic, payload, qos)
        self.bytes[channel] += size
        self.messages[channel] += 1
        kind = self.kinds.get(device[0], "gateway") if device else "gateway"
        self.by_kind[kind, channel, "bytes"] += size
        self.by_kind[kind, channel, "messages"] += 1
        self._mid += 1
        if qos:
            asyncio.get_running_loop().call_soon(self.publisher.on_acked, self._mid)
        return self._mid


class ModelLink:
    """A Modbus master whose pile is the emulator's model, in-process (no wire time)."""

    gap_seconds = 0.0
    heard_at = 0.0

    def __init__(self, pile: Any) -> None:
        from drivers.modbus.transport import LinkStats

        self.pile = pile
        self.stats = LinkStats()

    def wire_seconds(self, request_bytes: int, reply_bytes: int) -> float:
        return 0.0

    async def _ask(self, pdu: bytes) -> bytes:
        await asyncio.sleep(0)
        reply = self.pile.handle(pdu)
        if reply[0] & 0x80:
            from drivers.modbus.transport import ExceptionReply

            raise ExceptionReply(self.pile.unit, pdu[0], reply[1])
        return bytes(reply)

    async def read_registers(
        self, unit: int, address: int, count: int, timeout: float, *, holding: bool = False
    ) -> list[int]:
        reply = await self._ask(struct.pack(">BHH", 3 if holding else 4, address, count))
        return list(struct.unpack(f">{count}H", reply[2 : 2 + 2 * count]))

    async def read_coils(self, unit: int, address: int, count: int, timeout: float) -> list[bool]:
        reply = await self._ask(struct.pack(">BHH", 1, address, count))
        return [bool(reply[2 + i // 8] >> (i % 8) & 1) for i in range(count)]

    async def write_coils(
        self, unit: int, address: int, values: Sequence[bool], timeout: float
    ) -> None:
        packed = bytearray((len(values) + 7) // 8)
        for i, v in enumerate(values):
            packed[i // 8] |= int(v) << (i % 8)
        pdu = struct.pack(">BHHB", 15, address, len(values), len(packed)) + bytes(packed)
        await self._ask(pdu)

    async def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        await self._ask(struct.pack(">BHH", 6, address, value))

    async def broadcast_register(self, address: int, value: int) -> None:
        self.pile.handle(struct.pack(">BHH", 6, address, value), broadcast=True)

    def close(self) -> None:
        pass


class House(BareHouse):
    """The publisher's view of the house: each device's family (its deadbands)."""

    def __init__(self, kinds: Mapping[str, str]) -> None:
        from gatewayd import plugins

        self.kinds = kinds
        self.families = plugins.families()

    def family_of(self, device: str) -> Any:
        kind = self.kinds.get(device)
        return self.families.get(kind) if kind else None


class Fanout:
    """The drivers' ``DriverContext``: every call to both publishers, and to the metrics of a
    real gateway (its event counters and device states)."""

    gateway_id = "gw-bench"
    log = logging.getLogger("bench.uplink")

    def __init__(self, publishers: Sequence[Any], metrics: Any) -> None:
        from gatewayd.model import is_internal

        self.publishers = publishers
        self.metrics = metrics  # a MetricsHandle
        self.internal = is_internal
        self.events: Counter[str] = Counter()

    def emit(self, event: Any) -> None:
        self.events[event.type] += 1
        self.metrics.counters(event)
        if not self.internal(event.type):
            for p in self.publishers:
                p.event(event)

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.metrics.gw.world.states.setdefault(device, {}).update(state)
        for p in self.publishers:
            p.state(device, state)

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        for p in self.publishers:
            p.telemetry(device, values)


async def _physics(pile: Any, rng: random.Random, until: float) -> None:
    """The pile's clock, mains and chargers: 3 ports charging, battery after battery."""
    next_plug = {p: time.monotonic() + rng.uniform(0, 1800) for p in CHARGING_PORTS}
    unplug_at: dict[int, float] = {}
    while time.monotonic() < until:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        # The mains wanders round 228 V (about ±1 V, now and then more), second by second.
        pile.mains_v += 0.02 * (228.0 - pile.mains_v) + rng.gauss(0, 0.2)
        for n in CHARGING_PORTS:
            port = pile.port(n)
            b = port.battery
            if b is None:
                if now >= next_plug[n]:
                    pile.plug(n, soc=rng.uniform(0.1, 0.5), capacity_wh=rng.uniform(500, 900))
                    port.battery.max_power_w = rng.uniform(180, 300)
                    port.battery.nominal = port.battery.max_power_w  # type: ignore[attr-defined]
                continue
            # A charger's draw wanders ±1 % round its nominal power as the mains does.
            nominal = getattr(b, "nominal", b.max_power_w)
            b.max_power_w = nominal * (1 + rng.gauss(0, 0.005))
            if b.soc >= 1.0:
                unplug_at.setdefault(n, now + rng.uniform(2400, 5400))  # floats 40-90 min
                if now >= unplug_at[n]:
                    pile.unplug(n)
                    unplug_at.pop(n)
                    next_plug[n] = now + rng.uniform(1200, 3600)
        pile.advance(1.0)


async def _detectors(ctx: Fanout, rng: random.Random, until: float) -> None:
    """6 detectors, a heartbeat an hour each, as the srb433 driver hands them on."""
    from drivers.srb433 import profile
    from drivers.srb433.codec import Frame

    due = {i: time.monotonic() + rng.uniform(0, 3600) for i in range(DETECTORS)}
    battery = {i: rng.randint(2900, 3100) for i in range(DETECTORS)}
    seq = 0
    while True:
        i = min(due, key=due.__getitem__)
        if due[i] >= until:
            return
        await asyncio.sleep(max(0.0, due[i] - time.monotonic()))
        due[i] += 3600
        seq = (seq + 1) & 0xFF
        battery[i] -= rng.choice((0, 0, 1))
        payload = struct.pack(">Hb", battery[i], rng.randint(-78, -66))
        device = f"smoke-{i + 1}"
        event = profile.frame_to_event(
            Frame(0x07, 0x1A2B3C40 + i, seq, payload), device, time.time()
        )
        ctx.emit(event)
        ctx.publish_state(device, profile.state_update(event))
        ctx.publish_telemetry(
            device, {"battery_mv": event.data["battery_mv"], "rssi_dbm": event.data["rssi_dbm"]}
        )


async def _lock(ctx: Fanout, rng: random.Random, until: float) -> None:
    """50 openings a day through the lock's own report code (notification bytes as sent)."""
    from drivers.ble.report import LockReport

    report = LockReport("door-main", ctx)  # type: ignore[arg-type]
    report.publish({"lock": "locked", "door": "closed", "connected": True, "battery_mv": 6100})
    start = time.monotonic()
    n = round(OPENINGS * (until - start) / DAY)
    times = sorted(start + rng.uniform(0, until - start - 60) for _ in range(n))
    counter = 0

    def frame(type_: int, payload: bytes = b"") -> bytes:
        nonlocal counter
        counter = (counter + 1) & 0xFFFF
        return struct.pack(">BH", type_, counter) + payload

    for at in times:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        report.notification(frame(0x11, struct.pack(">BI", 2, rng.randint(1, 40))))  # app
        await asyncio.sleep(rng.uniform(1, 4))
        report.notification(frame(0x13))
        await asyncio.sleep(rng.uniform(3, 10))
        report.notification(frame(0x14))
        await asyncio.sleep(rng.uniform(1, 3))
        report.notification(frame(0x12, b"\x01"))  # relocked by itself


class PushWire:
    """The MQTT link as the metrics pusher sees it: counts what would be sent, and the gzip'd
    exposition the endpoint would serve at the same moment (the baseline)."""

    connected = True
    connects = 1

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.bytes = self.messages = self.keyframes = self.gzip_bytes = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        import gzip

        self.bytes += publish_bytes(topic, payload, qos)
        self.messages += 1
        self.keyframes += payload[:1] != b"{" and len(payload) > 400
        text = gzip.compress(self.handle.exposition(), compresslevel=9)
        self.gzip_bytes += publish_bytes(topic, text, qos)
        return self.messages


def metrics_house(tmp: str) -> Any:
    """The bench house as a real Gateway's metrics see it (no buses run: the day's drivers
    feed it through ``Fanout``)."""
    import dataclasses
    from pathlib import Path

    from gatewayd.driver import BusConfig, DeviceConfig
    from gatewayd.metrics import serve
    from tests.metrics_site import make_gateway

    Path(tmp).mkdir(parents=True, exist_ok=True)
    gw = make_gateway(Path(tmp), chargers=1, detectors=DETECTORS)
    door = DeviceConfig("door-main", "door_lock", "ble", {"escape_route": True})
    gw.config = dataclasses.replace(
        gw.config, buses=(*gw.config.buses, BusConfig("ble", "ble", {})),
        devices=(*gw.config.devices, door), gateway_id="gw-bench",
    )  # fmt: skip
    return serve(gw, "")


async def house_day(hours: float, fast: float, slow: float, seed: int = 17) -> dict[str, Any]:
    from drivers.modbus.driver import ModbusDriver
    from firmware_stubs.ebc_model import Pile
    from gatewayd.config import UplinkConfig
    from gatewayd.driver import BusConfig, DeviceConfig
    from gatewayd.uplink.outbox import Outbox
    from gatewayd.uplink.publisher import Publisher
    from gatewayd.uplink.topics import Topics

    rng = random.Random(seed)
    kinds = {"pile-1": "charger", "door-main": "door_lock"}
    kinds.update({f"smoke-{i + 1}": "smoke" for i in range(DETECTORS)})
    house = House(kinds)
    wires, pubs = {}, []
    tmp = tempfile.TemporaryDirectory(prefix="bench-uplink-")
    for mode in ("every_reading", "by_exception"):
        wire = Wire(kinds)
        box = Outbox(f"{tmp.name}/{mode}", window=0.1)
        pub = Publisher(Topics(ROOT), box, time.time(), "", house, UplinkConfig(report=mode))
        pub.bind(wire, list, lambda: False)  # type: ignore[arg-type]
        wire.publisher = pub
        wires[mode] = wire
        pubs.append(pub)
    handle = metrics_house(f"{tmp.name}/gateway")
    ctx = Fanout(pubs, handle)
    from gatewayd.metrics.push import push

    pushed = {period: PushWire(handle) for period in PUSH_PERIODS}
    pile = Pile(unit=1, ports_n=12)
    bus = BusConfig("rs485", "modbus", {"port": "/dev/null", "fast_seconds": fast,
                                        "slow_seconds": slow})  # fmt: skip
    device = DeviceConfig("pile-1", "charger", "rs485", {"unit": 1, "profile": "ebc",
                                                          "failsafe_seconds": 300})  # fmt: skip
    driver = ModbusDriver(bus, [device], ctx, link=ModelLink(pile))  # type: ignore[arg-type]
    until = time.monotonic() + hours * 3600
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        drive = tg.create_task(driver.run(), name="pile")
        tg.create_task(_detectors(ctx, rng, until), name="detectors")
        tg.create_task(_lock(ctx, rng, until), name="lock")
        pushers = [
            tg.create_task(push(handle.registry, w, f"{ROOT}/metrics", period), name="push")
            for period, w in pushed.items()
        ]
        await _physics(pile, rng, until)
        drive.cancel()
        for task in pushers:
            task.cancel()
    from tests.metrics_site import close_gateway

    handle.close()
    close_gateway(handle.gw)
    for box in (p.outbox for p in pubs):
        box.close()
    tmp.cleanup()
    scale = 24 / hours
    out: dict[str, Any] = {"hours": hours, "fast": fast, "slow": slow,
                           "seconds": time.perf_counter() - started,
                           "events": sum(ctx.events.values()) - ctx.events["charger.sample"]}  # fmt: skip
    for mode, wire in wires.items():
        out[mode] = {
            "bytes_day": sum(wire.bytes.values()) * scale,
            "messages_day": sum(wire.messages.values()) * scale,
            "by_channel": {k: (wire.messages[k] * scale, v * scale) for k, v in wire.bytes.items()},
            "by_kind": {"/".join(k): v * scale for k, v in sorted(wire.by_kind.items())},
        }
    out["metrics"] = {
        str(int(period)): {"bytes_day": w.bytes * scale, "messages_day": w.messages * scale,
                           "keyframes_day": w.keyframes * scale,
                           "gzip_text_bytes_day": w.gzip_bytes * scale}
        for period, w in pushed.items()
    }  # fmt: skip
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The bench runner's rows. Each simulated day runs in a process of its own: simulated
    time, once installed, is for the whole interpreter."""
    from bench.common import row

    hours = 3.0 if quick else 24.0
    day = _child(hours, 1.0, 10.0)
    old, new = day["every_reading"], day["by_exception"]
    month_new, month_old = new["bytes_day"] * 30 / 1e6, old["bytes_day"] * 30 / 1e6
    fast = _child(min(hours, 4.0), 1.0, 1.0)
    new_s = fast["by_exception"]["messages_day"] / DAY
    old_s = fast["every_reading"]["messages_day"] / DAY
    return [
        row("house: MQTT MB per 30 days, report by exception", month_new, "MB",
            "every read (the code before issue 17)", month_old, "<= 30 MB", month_new <= 30),
        row("house: MQTT messages per day, report by exception", new["messages_day"], "msg",
            "every read", old["messages_day"], "<= 0.2 x every read",
            new["messages_day"] <= 0.2 * old["messages_day"]),
        row("house, pile polled every 1 s: MQTT messages/s", new_s, "msg/s", "every read",
            old_s, "<= 1 msg/s", new_s <= 1.0),
        *(_pushed_row(day["metrics"][p], p) for p in ("180", "120", "60")),
    ]  # fmt: skip


def _pushed_row(m: dict[str, Any], period: str) -> dict[str, Any]:
    from bench.common import row

    month, gz = m["bytes_day"] * 30 / 1e6, m["gzip_text_bytes_day"] * 30 / 1e6
    target = "<= 3 MB" if period == "180" else ""  # the suggested period
    return row(f"house: pushed metrics MB per 30 days, push_seconds = {period} (keyframe + "
               "deltas)", month, "MB", "the gzip'd exposition text at each push", gz, target,
               month <= 3.0 if target else None)  # fmt: skip


def _child(hours: float, fast: float, slow: float) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    from bench.common import REPO

    args = ["--hours", str(hours), "--fast", str(fast), "--slow", str(slow), "--json"]
    out = subprocess.run([sys.executable, "-m", "bench.bench_uplink", *args], cwd=REPO,
                         capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def _in_sim(hours: float, fast: float, slow: float) -> dict[str, Any]:
    simclock.install()
    return asyncio.run(house_day(hours, fast, slow))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours (scaled to a day)")
    ap.add_argument("--fast", type=float, default=1.0)
    ap.add_argument("--slow", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="one line of JSON (the bench runner's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    day = _in_sim(args.hours, args.fast, args.slow)
    if args.json:
        import json

        print(json.dumps(day))
        return
    print(f"simulated {day['hours']} h (fast {day['fast']} s, slow {day['slow']} s) in "
          f"{day['seconds']:.0f} s; {day['events']} events published by both")  # fmt: skip
    for mode in ("every_reading", "by_exception"):
        d = day[mode]
        print(f"{mode:>14}: {d['bytes_day'] / 1e6:7.2f} MB/day  {d['bytes_day'] * 30 / 1e6:8.1f} "
              f"MB/30 days  {d['messages_day']:9.0f} msg/day  {d['messages_day'] / DAY:6.3f} msg/s")  # fmt: skip
        for ch, (n, b) in sorted(d["by_channel"].items()):
            print(f"{'':>16}{ch:<10} {n:9.0f} msg/day {b / 1e6:8.3f} MB/day")
        kinds = sorted({k.rsplit("/", 1)[0] for k in d["by_kind"]})
        for k in kinds:
            n, b = d["by_kind"][f"{k}/messages"], d["by_kind"][f"{k}/bytes"]
            print(f"{'':>16}{k:<20} {n:9.0f} msg/day {b:11.0f} B/day {b / n:6.0f} B/msg")
    for period, m in day["metrics"].items():
        print(f"pushed metrics every {period} s: {m['bytes_day'] * 30 / 1e6:.2f} MB/30 days, "
              f"{m['messages_day']:.0f} msg/day ({m['keyframes_day']:.0f} keyframes); the gzip'd "
              f"exposition at each push: {m['gzip_text_bytes_day'] * 30 / 1e6:.2f} MB/30 days")  # fmt: skip
    old, new = day["every_reading"], day["by_exception"]
    print(f"ratio: bytes {new['bytes_day'] / old['bytes_day']:.3f}, messages "
          f"{new['messages_day'] / old['messages_day']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
