"""`gatewayd check --all` looks at each bus and device through its driver: without the daemon
it pings the SRB-433 receiver and asks each pile's id who it is; with the daemon running (it
holds the ports) it reports what the daemon sees. The emulators stand in for the hardware."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import DETECTOR, ControlDaemon, EmulatorThread, gatewayd
from tests.harness import Broker, make_site, wait_until
from tests.test_cli_scan import EbcThread


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433")
    emu.do(emu.rx.detector, DETECTOR)
    yield emu
    emu.close()


@pytest.fixture
def piles() -> Iterator[EbcThread]:
    emu = EbcThread([2])
    yield emu
    emu.close()


def test_check_all_sees_each_bus_and_device_with_and_without_the_daemon(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread, piles: EbcThread
) -> None:
    rx = receiver.rx.path
    body = (
        f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{rx}"\nping_seconds = 0.5\n\n'
        f'[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "{DETECTOR}"\n\n'
        f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {piles.tcp_port}\n\n'
        '[[devices]]\nid = "pile-2"\nkind = "charger"\nbus = "rs485"\nunit = 2\n\n'
        '[[devices]]\nid = "pile-3"\nkind = "charger"\nbus = "rs485"\nunit = 3\n'
    )  # fmt: skip
    site = make_site(tmp_path, broker.url, body)
    alone = gatewayd("--lang", "en", "check", "--all", "-c", str(site.config))
    assert alone.returncode == 1  # pile-3 is not there
    lines = alone.stdout.splitlines()
    for line in (
        "· daemon not running",
        f"✓ smoke-rx: receiver on {rx} answers (firmware 1.2, 1 detectors paired)",
        f"· smoke-301: detector {DETECTOR}: seen once the daemon runs (gatewayd status)",
        f"✓ rs485: 127.0.0.1:{piles.tcp_port} reachable",
        "✓ pile-2 (unit 2): EBC pile, firmware 1.3, 10 ports",
        "✗ pile-3 (unit 3): no answer; check wiring A/B, the charging pile's address and baud rate",
    ):
        assert line in lines, alone.stdout
    daemon = ControlDaemon(site)
    daemon.start()
    try:

        def seen() -> str | None:
            out = gatewayd("--lang", "en", "check", "--all", "-c", str(site.config)).stdout
            return out if "✓ pile-2 (unit 2): online" in out else None

        out = wait_until(seen, 15, "the daemon to see pile-2")
    finally:
        daemon.stop()
    lines = out.splitlines()
    assert f"✓ smoke-rx: receiver on {rx} answers the daemon (1 detectors paired)" in lines
    assert "✗ pile-3 (unit 3): offline in the daemon; check wiring A/B, address and baud" in lines
    assert not any(ln.startswith("· smoke-301") for ln in lines)  # the daemon's view instead
