"""Fixtures of the relay's end-to-end suite: the same tests run against SQLite with one relay
process and against PostgreSQL with two (taps and pages spread over both)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay import pg
from tests.relay.world import CHROMEDRIVER, CHROMIUM, Browsers, World, house_world

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    if not pg.available():
        pytest.fail("PostgreSQL is not installed: run scripts/debian-deps.sh (make test does)")
    cluster = pg.Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def house(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "postgresql":
        cluster: pg.Cluster = request.getfixturevalue("pg_cluster")
        with house_world(cluster.create_database(), processes=2) as w:
            yield w
    else:
        tmp = Path(tempfile.mkdtemp(prefix="relay-sqlite-"))
        try:
            with house_world(f"sqlite:///{tmp}/relay.db") as w:
                yield w
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browsers() -> Iterator[Browsers]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed (scripts/debian-deps.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="relay-browsers-"))
    b = Browsers(tmp)
    yield b
    b.close()
    shutil.rmtree(tmp, ignore_errors=True)
