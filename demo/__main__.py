"""Run the demo: a local mosquitto, the device emulators, the gateway, and a scripted scenario.

`python -m demo` (what `make demo` runs); `--once` plays the scenario and exits (for tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo.view import LiveView
from firmware_stubs.broker import Broker
from firmware_stubs.srb433 import ReceiverEmulator
from gatewayd.signing import sign

GATEWAY_ID = "xz-liushu-017"
ROOT = f"pingan/v1/{GATEWAY_ID}"
DETECTORS = {
    "smoke-301": ("1A2B3C4D", "301"),
    "smoke-302": ("1A2B3C4E", "302"),
    "smoke-hall": ("1A2B3C4F", "楼道"),
}


def write_config(work: Path, broker: Broker, rx: ReceiverEmulator) -> tuple[Path, bytes]:
    key = os.urandom(32)
    key_file = work / "command.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    devices = "".join(
        f'\n[[devices]]\nid = "{dev}"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "{addr}"\nroom = "{room}"\n'
        for dev, (addr, room) in DETECTORS.items()
    )
    cfg = work / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "{GATEWAY_ID}"\nsite = "柳墅村 17号 (demo)"\ndata_dir = "{work / "data"}"\n\n'
        f'[mqtt]\nurl = "{broker.url}"\n\n[security]\ncommand_key_file = "{key_file}"\n\n'
        f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{rx.path}"\nping_seconds = 10\n'
        f"{devices}"
    )
    return cfg, key


class Platform:
    """Signs and sends commands as the landlord app's back end would."""

    def __init__(self, view: LiveView, key: bytes) -> None:
        self.view = view
        self.key = key
        self.n = 0

    def send(
        self, device: str, action: str, args: dict | None = None, user: str = "landlord-17"
    ) -> dict | None:
        self.n += 1
        now = time.time()
        cmd = sign(
            self.key,
            {
                "id": f"demo-{os.getpid()}-{self.n}",
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


async def scenario(view: LiveView, platform: Platform, rx: ReceiverEmulator, pace: float) -> None:
    dets = {dev: rx.detector(addr) for dev, (addr, _room) in DETECTORS.items()}
    view.say("The platform pings the gateway with a signed command")
    await asyncio.to_thread(platform.send, GATEWAY_ID, "ping")
    await asyncio.sleep(pace)
    view.say("Every detector sends its hourly heartbeat")
    for det in dets.values():
        await det.heartbeat()
    await asyncio.sleep(pace)
    view.say("Smoke in room 301: the detector alarms (sent 3× over the radio, reported once)")
    await dets["smoke-301"].alarm(160)
    await asyncio.to_thread(
        view.wait_for,
        "alarms",
        lambda b: any(a["type"] == "smoke.alarm" for a in b.get("active", [])),
    )
    await asyncio.sleep(pace)
    view.say("Someone opens the window: the detector reports clear, the alarm ends")
    await dets["smoke-301"].clear()
    await asyncio.to_thread(view.wait_for, "alarms", lambda b: not b.get("active"))
    await asyncio.sleep(pace)
    view.say("A forged command (wrong key) is refused")
    forged = Platform(view, b"\x00" * 32)
    await asyncio.to_thread(forged.send, GATEWAY_ID, "ping")


async def main(args: argparse.Namespace) -> int:
    work = Path(args.dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    broker = Broker(work)
    broker.start()
    gateway: subprocess.Popen[bytes] | None = None
    view: LiveView | None = None
    try:
        async with ReceiverEmulator(str(work / "srb433"), spacing=0.2, alarm_repeat=30.0) as rx:
            cfg, key = write_config(work, broker, rx)
            view = LiveView(broker.port, ROOT, colour=sys.stdout.isatty())
            print(
                f"mosquitto on 127.0.0.1:{broker.port}; watch it yourself with:\n"
                f"  mosquitto_sub -p {broker.port} -t '{ROOT}/#' -v\n"
                f"gateway log: {work / 'gatewayd.log'}"
            )
            with open(work / "gatewayd.log", "wb") as log:
                gateway = subprocess.Popen(
                    [sys.executable, "-m", "gatewayd", "run", "-c", str(cfg)],
                    stdout=log,
                    stderr=log,
                )
            if view.wait_for("status", lambda b: b.get("online")) is None:
                print("the gateway did not come online; see", work / "gatewayd.log")
                return 1
            await scenario(view, Platform(view, key), rx, args.pace)
            if args.once:
                return 0
            view.say("Demo scenario done; the house keeps running. Ctrl-C to stop everything.")
            await asyncio.Event().wait()
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(10)
        if view is not None:
            time.sleep(0.3)  # let the offline status show
            view.close()
        broker.stop()
    return 0


def cli() -> None:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    ap.add_argument("--dir", default="demo-data", help="working directory (wiped at start)")
    ap.add_argument("--pace", type=float, default=2.0, help="seconds between scenario steps")
    ap.add_argument("--once", action="store_true", help="play the scenario, then stop")
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(args)))
    print("\nstopped.")


cli()
