from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_stubs.nats_cluster import NatsCluster
from tests.harness import REPO, Broker, Daemon, Probe, ReceiverThread, Site, make_site


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


@pytest.fixture(scope="session")
def nats_cluster_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One 3-node NATS cluster for the run's tests marked ``cluster``: starting one takes
    5-10 s here."""
    c = NatsCluster(tmp_path_factory.mktemp("nats"))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def cluster(nats_cluster_once: NatsCluster) -> Iterator[NatsCluster]:
    """The shared cluster with all three nodes accepting MQTT; a node a test killed is
    restarted afterwards, so the next test starts whole (and its own topics keep tests apart)."""
    c = nats_cluster_once
    c.wait_ready()
    yield c
    for i, node in enumerate(c.nodes):
        if not node.alive:
            c.restart(i)
    c.wait_ready()


@pytest.fixture
def smoke_receiver(tmp_path: Path) -> Iterator[ReceiverThread]:
    """The SRB-433 receiver emulated on a pty, on its own thread."""
    emu = ReceiverThread(tmp_path / "srb433")
    yield emu
    emu.close()


@dataclass(frozen=True)
class DemoRun:
    """`make demo`'s scenario played once (`--once`): what it printed, its working directory,
    and every message it published, recorded by a subscriber (one JSON line each)."""

    out: subprocess.CompletedProcess[str]
    dir: Path
    record: Path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One play of the demo for every test that reads it (it takes some 20 s)."""
    work = tmp_path_factory.mktemp("demo-run")
    record = work / "messages.jsonl"
    out = subprocess.run(
        [sys.executable, "-m", "demo", "--once", "--pace", "0.1", "--dir", str(work / "demo"),
         "--record", str(record)],
        capture_output=True, text=True, timeout=50, cwd=REPO,
    )  # fmt: skip
    return DemoRun(out, work / "demo", record)
