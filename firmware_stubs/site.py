"""A whole emulated rental house: the smoke receiver on a pty, charging piles on an RS-485 pty
line and over Modbus TCP, and DL-B2 locks on a fake BlueZ. One asyncio loop in a background
thread runs the serial and Modbus emulators (the fake BlueZ has its own); synchronous code
(tests, the demo, benchmarks) scripts them through ``call``. Also writes the matching
``[[buses]]``/``[[devices]]`` for gateway.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from firmware_stubs.ebc_model import Pile
from firmware_stubs.ebc_pile import EbcEmulator
from firmware_stubs.harness import BleWorld, world
from firmware_stubs.srb433 import ReceiverEmulator
from firmware_stubs.srb433_wire import MODELS

T = TypeVar("T")


@dataclass
class SitePlan:
    detectors: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {
            "smoke-301": ("1A2B3C4D", "301"),
            "smoke-302": ("1A2B3C4E", "302"),
            "smoke-bike": ("1A2B3C50", "车棚"),
        }
    )
    # Detector model codes (datasheet table) where not an SD-10: the bike shed's detector is
    # a combined smoke/heat SHD-20, the only model that sends a heat alarm.
    detector_models: dict[str, int] = field(default_factory=lambda: {"smoke-bike": 0x02})
    rtu_piles: dict[str, int] = field(default_factory=lambda: {"pile-1": 1, "pile-2": 2})
    tcp_piles: dict[str, int] = field(default_factory=lambda: {"pile-3": 1})
    ports: int = 4
    locks: dict[str, tuple[str, bytes, bool]] = field(
        default_factory=lambda: {
            "door-main": (
                "C0:FF:EE:00:00:01",
                bytes.fromhex("00112233445566778899aabbccddeeff"),
                True,
            ),
            "door-back": (
                "C0:FF:EE:00:00:02",
                bytes.fromhex("ffeeddccbbaa99887766554433221100"),
                True,
            ),
        }
    )
    #: What the receiver's status frame says: 0x0102 is rev A, 0x0200 and later rev B (it
    #: acts on SOUND ALL).
    receiver_firmware: int = 0x0102
    radio_spacing: float = 0.05
    fast_seconds: float = 0.2
    slow_seconds: float = 2.0
    #: The piles' period at rest (the driver's own default when None).
    idle_seconds: float | None = None


class EmulatedSite:
    def __init__(self, workdir: Path, plan: SitePlan | None = None) -> None:
        self.workdir = workdir
        self.plan = plan or SitePlan()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="emulated-site", daemon=True
        )
        p = self.plan
        self.rx = ReceiverEmulator(
            str(workdir / "srb433"), spacing=p.radio_spacing, firmware=p.receiver_firmware
        )
        self.rtu = EbcEmulator([Pile(unit=u, ports_n=p.ports) for u in p.rtu_piles.values()])
        self.tcp = EbcEmulator([Pile(unit=u, ports_n=p.ports) for u in p.tcp_piles.values()])
        self.rtu_path = ""
        self.tcp_port = 0
        self.ble: BleWorld | None = None
        self._ble_cm: contextlib.AbstractContextManager[BleWorld] | None = None
        self.locks: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> EmulatedSite:
        self._thread.start()

        async def up() -> None:
            await self.rx.start()
            await self.rtu.__aenter__()
            await self.tcp.__aenter__()
            self.rtu_path = self.rtu.open_rtu()
            self.tcp_port = await self.tcp.serve_tcp()

        self.call(up())
        if self.plan.locks:
            self._ble_cm = world()  # exports the private bus as DBUS_SYSTEM_BUS_ADDRESS
            self.ble = self._ble_cm.__enter__()
            for dev, (address, key, _escape) in self.plan.locks.items():
                self.locks[dev] = self.ble.emu.add_lock(address, key)
        return self

    def stop(self) -> None:
        if self._ble_cm is not None:
            self._ble_cm.__exit__(None, None, None)

        async def down() -> None:
            await self.tcp.__aexit__(None, None, None)
            await self.rtu.__aexit__(None, None, None)
            await self.rx.stop()

        self.call(down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def __enter__(self) -> EmulatedSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def lock_call(self, fn: Any, *args: Any) -> Any:
        assert self.ble is not None
        return self.ble.emu.call(fn, *args)

    # -- what the gateway is told --------------------------------------------------------------

    def pile(self, device: str) -> Pile:
        p = self.plan
        if device in p.rtu_piles:
            return self.rtu.pile(p.rtu_piles[device])
        return self.tcp.pile(p.tcp_piles[device])

    def piles(self) -> Iterator[tuple[str, Pile]]:
        for dev in (*self.plan.rtu_piles, *self.plan.tcp_piles):
            yield dev, self.pile(dev)

    def detector(self, device: str) -> Any:
        model = self.plan.detector_models.get(device, 0x01)
        return self.rx.detector(self.plan.detectors[device][0], model)

    def config(self, keys_dir: Path) -> str:
        p, out = self.plan, []
        out.append(
            f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{self.rx.path}"\nping_seconds = 5\n'
        )
        periods = f"fast_seconds = {p.fast_seconds}\nslow_seconds = {p.slow_seconds}\n"
        if p.idle_seconds is not None:
            periods += f"idle_seconds = {p.idle_seconds}\n"
        out.append(
            f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nport = "{self.rtu_path}"\nbaudrate = 9600\n'
            + periods
        )
        out.append(
            f'[[buses]]\nname = "pile-lan"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {self.tcp_port}\n'
            + periods
        )
        if p.locks:
            out.append('[[buses]]\nname = "ble"\ndriver = "ble"\nkeepalive_seconds = 30\n')
        for dev, (address, room) in p.detectors.items():
            model = MODELS[p.detector_models.get(dev, 0x01)].name
            out.append(
                f'[[devices]]\nid = "{dev}"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "{address}"\nroom = "{room}"\nmodel = "{model}"\n'
            )
        for dev, unit in p.rtu_piles.items():
            out.append(
                f'[[devices]]\nid = "{dev}"\nkind = "charger"\nbus = "rs485"\nunit = {unit}\n'
            )
        for dev, unit in p.tcp_piles.items():
            out.append(
                f'[[devices]]\nid = "{dev}"\nkind = "charger"\nbus = "pile-lan"\nunit = {unit}\n'
            )
        for dev, (address, key, escape) in p.locks.items():
            key_path = keys_dir / f"{dev}.key"
            key_path.write_text(key.hex())
            key_path.chmod(0o600)
            out.append(
                f'[[devices]]\nid = "{dev}"\nkind = "door_lock"\nbus = "ble"\naddress = "{address}"\n'
                f'key_file = "{key_path}"\nescape_route = {"true" if escape else "false"}\n'
            )
        return "\n".join(out)
