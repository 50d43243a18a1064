"""Run the demo: a local mosquitto, every device emulator of a rental house, the gateway, and a
scripted scenario: a phone unlock, a full battery, a fire in room 301 (one alarm: cut and
sound; a second detector: doors released; the reset), the monthly fire drill, an overheating
socket, a leakage current in the distribution box (the EFM-4 plugin's detector, on the piles' line).

`python -m demo` (what `make demo` runs); `--once` plays the scenario and exits (for tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from demo.record import Recorder
from demo.relay import RelayDemo, relay_step, start_relay
from demo.view import LiveView
from firmware_stubs.broker import Broker
from firmware_stubs.lifetime import tied_to_parent
from firmware_stubs.site import EmulatedSite, SitePlan
from gatewayd.commands.signing import sign
from gatewayd.secrets import write_secret
from gatewayd_efm_stubs.efm4 import Efm4

GATEWAY_ID = "xz-liushu-017"
REV_B = 0x0200  # the receiver's firmware: 2.0 sounds every detector in a fire (SOUND ALL)
ROOT = f"pingan/v1/{GATEWAY_ID}"
RULES = """
[rules.charger_full]
float_minutes = 0.1          # demo only: a full battery floats 6 s, not 45 min, before the cut
"""
#: The EFM-4 electrical fire detector in the distribution box, on the piles' RS-485 line.
EFM_UNIT = 9
EFM = f"""
[[devices]]
id = "efm-{EFM_UNIT}"
kind = "electrical"
bus = "rs485"
unit = {EFM_UNIT}
room = "一楼配电箱"
non_fire_power = true
"""


def write_config(work: Path, broker: Broker, house: EmulatedSite) -> tuple[Path, bytes]:
    key = os.urandom(32)
    key_file = work / "command.key"
    write_secret(str(key_file), key.hex())
    cfg = work / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "{GATEWAY_ID}"\nsite = "柳墅村 17号 (demo)"\ndata_dir = "{work / "data"}"\n\n'
        f'[mqtt]\nurl = "{broker.url}"\nreconnect_max_seconds = 2\n\n'
        f'[security]\ncommand_key_file = "{key_file}"\n\n[metrics]\nlisten = ""\n{RULES}\n'
        f"{house.config(work)}{EFM}"
    )
    return cfg, key


_IDS = itertools.count(1)  # one sequence for every Platform: a command id is never reused


class Platform:
    """Signs and sends commands as the landlord app's back end would."""

    def __init__(self, view: LiveView, key: bytes) -> None:
        self.view = view
        self.key = key

    def send(
        self,
        device: str,
        action: str,
        args: dict[str, Any] | None = None,
        user: str = "landlord-17",
    ) -> Any:
        now = time.time()
        cmd = sign(
            self.key,
            {
                "id": f"demo-{os.getpid()}-{next(_IDS)}",
                "device": device,
                "action": action,
                "args": args or {},
                "user": user,
                "iat": now,
                "exp": now + 30,
            },
        )
        self.view.client.publish(f"{ROOT}/cmd", json.dumps(cmd), qos=1)
        return self.view.wait_for("cmd/result", lambda r: r.get("id") == cmd["id"])


def sounding(state: Any) -> bool:
    """The gateway's state says its receiver sounds every detector (SOUND ALL)."""
    return any(isinstance(v, dict) and v.get("sound_all") == "sounding" for v in state.values())


async def scenario(view: LiveView, platform: Platform, house: EmulatedSite, pace: float) -> None:
    async def step(text: str) -> None:
        await asyncio.sleep(pace)
        view.say(text)

    async def wait(suffix: str, pred: Any, timeout: float = 20.0, after: int = 0) -> Any:
        return await asyncio.to_thread(view.wait_for, suffix, pred, timeout, after)

    def on_emulators(fn: Any) -> None:
        async def call() -> None:
            fn()

        house.call(call())

    await step("The platform pings the gateway with a signed command")
    await asyncio.to_thread(platform.send, GATEWAY_ID, "ping")
    await wait("state/door-main", lambda s: s.get("connected") is True)

    await step(
        "Tenant of room 302 taps 'open' in the app: a signed unlock reaches the entrance lock over BLE"
    )
    await asyncio.to_thread(platform.send, "door-main", "unlock", {"seconds": 3}, "tenant-302")
    await wait("events/door-main", lambda e: e.get("type") == "door.locked")

    await step(
        "A battery on pile-1 port 2 is full: after its float period the gateway stops the port"
    )
    on_emulators(lambda: house.pile("pile-1").plug(2, soc=0.999))
    await wait("events/pile-1", lambda e: e.get("type") == "charger.port_cut", timeout=30)

    await step(
        "Smoke in room 301: FIRE MODE — every charger cut, every detector in the house sounding; "
        "the escape doors stay locked (one detector alone is not yet a confirmed fire)"
    )
    for dev in ("pile-1", "pile-3"):
        on_emulators(lambda d=dev: house.pile(d).plug(1))
    mark = view.mark()
    house.call(house.detector("smoke-301").alarm(180))
    await wait(f"state/{GATEWAY_ID}", sounding, after=mark)
    await wait("events/pile-3", lambda e: e.get("type") == "charger.port_cut", after=mark)

    await step(
        "The detector in room 302 goes off too: a second, independent alarm confirms the fire: "
        "the escape doors are released, the EFM-4 trips the non-fire power"
    )
    house.call(house.detector("smoke-302").alarm(150))
    await wait("events/door-back", lambda e: e.get("type") == "door.released", after=mark)
    await wait("events/door-main", lambda e: e.get("type") == "door.released", after=mark)
    await asyncio.sleep(1.0)
    view.say("Someone tries to switch a charger back on, and to lock the door: both refused")
    await asyncio.to_thread(platform.send, "pile-1", "port_on", {"port": 1})
    await asyncio.to_thread(platform.send, "door-main", "lock")

    await step(
        "The fire brigade has seen to it: the grid worker resets fire mode. Detectors hushed, "
        "doors lock again; chargers stay off"
    )
    mark = view.mark()
    for det in ("smoke-301", "smoke-302"):
        house.call(house.detector(det).clear())
        await wait(f"events/{det}", lambda e: e.get("type") == "smoke.cleared", after=mark)
    await asyncio.to_thread(platform.send, GATEWAY_ID, "fire_reset", None, "grid-worker-3")
    await wait("events/door-main", lambda e: e.get("type") == "door.restored", after=mark)

    await step(
        "The monthly fire drill: the grid worker runs the fire linkage in test mode. Nothing "
        "moves; every message says drill, and the platform knows it is no fire"
    )
    answer = await asyncio.to_thread(
        platform.send, GATEWAY_ID, "drill", {"actuate": False}, "grid-worker-3"
    )
    if answer and answer.get("code") == "ok":
        for st in answer["data"]["steps"]:
            would = ", ".join(f"{a['device']} {a['action']}" for a in st["actions"])
            view.say(f"  drill {st['phase']}: would {would or 'do nothing'}")

    await step("A forged command (wrong key) is refused")
    await asyncio.to_thread(Platform(view, b"\x00" * 32).send, GATEWAY_ID, "ping")

    # After the fire: no overheat cut lies within the fire's confirmation window before it (a
    # hot socket and then smoke *is* a confirmed fire: rules/fire_signals.py).
    await step(
        "After the fire the landlord switches pile-2 port 3 back on (chargers stay off until a "
        "person does); a bad plug heats it to 66 °C: the port is cut at once and an alarm raised"
    )
    on_emulators(lambda: house.pile("pile-2").plug(3))
    await asyncio.to_thread(platform.send, "pile-2", "port_on", {"port": 3})
    on_emulators(lambda: house.pile("pile-2").heat_port(3, 66.0))
    await wait(
        "alarms", lambda b: any(a["type"] == "charger.overheat" for a in b.get("active", []))
    )

    await step(
        "pile-2's overheat alarm stays on the list: a safety trip stays until a person resets "
        "it. The socket is replaced and has cooled; the landlord resets the alarm"
    )
    on_emulators(lambda: house.pile("pile-2").heat_port(3, 30.0))
    alarm = "pile-2/charger.overheat"
    # The rules see the cooled reading within a poll; the platform's retained state (report by
    # exception) only at its next refresh: the reset is refused ("still hot") until then.
    for _ in range(60):
        answer = await asyncio.to_thread(platform.send, GATEWAY_ID, "reset_alarm", {"alarm": alarm})
        if answer and answer.get("code") == "ok":
            break
        await asyncio.sleep(0.5)
    await wait("alarms", lambda b: not b.get("active"))

    efm: Efm4 = house.rtu.piles[EFM_UNIT]  # type: ignore[assignment]
    await step(
        "A leakage current creeps up on a ground-floor circuit: held at 300 mA for the "
        "detector's delay, the EFM-4 in the distribution box raises its electrical fire alarm"
    )
    on_emulators(lambda: efm.set_value(1, 340))
    await wait(
        "alarms",
        lambda b: any(a["type"] == "electrical.leakage_alarm" for a in b.get("active", [])),
    )
    await step(
        "An electrician dries out the damp socket; the leakage falls and the landlord resets "
        "the alarm (and with it the detector's latch)"
    )
    mark = view.mark()
    on_emulators(lambda: efm.set_value(1, 15))
    await wait(f"state/efm-{EFM_UNIT}", lambda s: (s.get("leakage_ma") or 999) < 300, after=mark)
    alarm = f"efm-{EFM_UNIT}/electrical.leakage_alarm"
    for _ in range(10):  # the alarm's condition ends a moment after the reading
        answer = await asyncio.to_thread(platform.send, GATEWAY_ID, "reset_alarm", {"alarm": alarm})
        if answer and answer.get("code") == "ok":
            break
        await asyncio.sleep(0.5)
    await wait("alarms", lambda b: not b.get("active"))


async def main(args: argparse.Namespace) -> int:
    work = Path(args.dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    broker = Broker(work)
    broker.start()
    gateway: subprocess.Popen[bytes] | None = None
    view: LiveView | None = None
    relay: RelayDemo | None = None
    recorder: Recorder | None = None
    house = EmulatedSite(work, SitePlan(receiver_firmware=REV_B))  # rev B: SOUND ALL
    house.rtu.piles[EFM_UNIT] = Efm4(unit=EFM_UNIT, delay=1)  # type: ignore[assignment]
    house.start()  # exports the fake BlueZ's bus for the gateway
    try:
        cfg, key = write_config(work, broker, house)
        view = LiveView(broker.port, ROOT, colour=sys.stdout.isatty())
        if args.record:
            recorder = Recorder(broker.port, ROOT, Path(args.record))
        watch = (
            f"watch it yourself with:\n  mosquitto_sub -p {broker.port} -t '{ROOT}/#' -v"
            if shutil.which("mosquitto_sub")
            else "to watch it yourself: apt-get install mosquitto-clients"
        )
        print(
            f"mosquitto on 127.0.0.1:{broker.port}; {watch}\ngateway log: {work / 'gatewayd.log'}"
            f"\ncheck the house: gatewayd check --all -c {cfg}"
        )
        with open(work / "gatewayd.log", "wb") as log:
            # Its own session, like the broker's and the bus's: Ctrl-C reaches the demo alone,
            # which then stops the gateway first and its peers after it (a clean shutdown).
            gateway = subprocess.Popen(
                tied_to_parent([sys.executable, "-m", "gatewayd", "run", "-c", str(cfg)]),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if view.wait_for("status", lambda b: b.get("online")) is None:
            print("the gateway did not come online; see", work / "gatewayd.log")
            return 1
        relay = start_relay(work, broker.port, GATEWAY_ID, key)
        await scenario(view, Platform(view, key), house, args.pace)
        await relay_step(view, relay, args.pace)
        if args.once:
            view.say("Demo scenario done.")
            return 0
        view.say("Demo scenario done; the house keeps running. Ctrl-C to stop everything.")
        await asyncio.Event().wait()
    finally:
        if relay is not None:
            relay.stop()
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(10)
        if view is not None:
            time.sleep(0.3)  # let the offline status show
            view.close()
        if recorder is not None:
            recorder.close()
        house.stop()
        broker.stop()
    return 0


def cli() -> None:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    ap.add_argument("--dir", default="demo-data", help="working directory (wiped at start)")
    ap.add_argument("--pace", type=float, default=2.0, help="seconds between scenario steps")
    ap.add_argument("--once", action="store_true", help="play the scenario, then stop")
    ap.add_argument("--record", metavar="FILE", help="write every message, one JSON line each")
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(args)))
    print("\nstopped.")


cli()
