from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Broker, Daemon, Probe, ReceiverThread, Site, make_site


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def probe(broker: Broker) -> Iterator[Probe]:
    p = Probe(broker.port)
    yield p
    p.close()


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Site:
    return make_site(tmp_path, broker.url)


@pytest.fixture
def daemon(site: Site) -> Iterator[Daemon]:
    d = Daemon(site)
    d.start()
    yield d
    if d.alive:
        d.stop()


@pytest.fixture
def smoke_receiver(tmp_path: Path) -> Iterator[ReceiverThread]:
    """The SRB-433 receiver emulated on a pty, on its own thread."""
    emu = ReceiverThread(tmp_path / "srb433")
    yield emu
    emu.close()
