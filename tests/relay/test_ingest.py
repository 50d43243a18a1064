"""The unlock log and the live pages while the relay's other work writes too: the relay's own
ingest and live stream on a real SQLite database (migrated by the relay's migrations) and a
real mosquitto. The interleavings a loaded machine produces by chance are forced here."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gatewayd_relay import ingest, live
from gatewayd_relay.core import Relay
from gatewayd_relay.db import Database
from gatewayd_relay.keystore import KeyStore
from gatewayd_relay.models import AccessEvent, Command
from gatewayd_relay.notify import Fanout
from gatewayd_relay.provisioning import create_account, create_house
from gatewayd_relay.settings import BrokerSettings, Settings
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import event, select

from tests.harness import Broker

GW = "gw-ingest"


def unlocked(eid: str, user: str = "li.wei") -> dict[str, Any]:
    """A gateway's door.unlocked event, as the contract has it."""
    return {
        "id": eid,
        "ts": time.time(),
        "device": "door-main",
        "type": "door.unlocked",
        "severity": "info",
        "data": {"user": user, "method": "remote"},
    }


def logged(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(AccessEvent.event_id)))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(f"sqlite:///{tmp_path}/relay.db")
    d.migrate()
    with d.session() as s:
        create_account(s, "t", "wang", "pw-wang-123", "landlord", "王房东")
        create_house(s, "t", GW, "柳墅村 17号", "柳墅村", "wang")
    yield d
    d.close()


def test_an_unlock_is_logged_when_another_write_commits_during_its_ingest(db: Database) -> None:
    """A tap records its command and answer (another worker thread) while the ingest of the
    gateway's door.unlocked is between its reads and its insert: the unlock must still be in
    the log and on the live pages. With SQLite's deferred transactions the insert failed at
    once ("database is locked") and the event was dropped."""
    tap_wrote = threading.Event()

    def tap_records_its_command() -> None:
        with db.session() as s:
            s.add(
                Command(
                    id="c1",
                    house_id=1,
                    device="door-main",
                    action="unlock",
                    user="li.wei",
                    created=time.time(),
                )
            )
        tap_wrote.set()

    tap = threading.Thread(target=tap_records_its_command)

    def before(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.startswith("INSERT INTO access_log") and not tap.is_alive():
            tap.start()
            tap.join(0.5)  # the tap's commit lands now, unless it waits for the ingest's

    event.listen(db.engine, "before_cursor_execute", before)
    with db.session() as s:
        out = ingest.handle_batch(s, [(GW, "events/door-main", unlocked("e1"))], 120)
    event.remove(db.engine, "before_cursor_execute", before)
    tap.join(10)
    assert tap_wrote.is_set()
    assert logged(db) == ["e1"]
    assert [(kind, body["user"]) for _h, kind, body in out.updates] == [("access", "li.wei")]


def test_an_unlock_the_database_refused_is_logged_and_shown_on_the_next_try(
    db: Database, tmp_path: Path
) -> None:
    """The database is busy or away once when the relay ingests an unlock (a lock held too
    long, a PostgreSQL fail-over): the batch is tried again, not dropped."""
    refusals = [sqlite3.OperationalError("database is locked")]

    def before(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.startswith("INSERT INTO access_log") and refusals:
            raise refusals.pop()

    event.listen(db.engine, "before_cursor_execute", before)
    broker = Broker(tmp_path)
    broker.start()
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2)
    try:
        gateway.connect("127.0.0.1", broker.port)
        gateway.loop_start()
        frames = asyncio.run(_ingest_one(db, broker.port, gateway))
    finally:
        gateway.loop_stop()
        gateway.disconnect()
        broker.stop()
        event.remove(db.engine, "before_cursor_execute", before)
    assert refusals == []  # the fault did happen
    assert logged(db) == ["e2"]
    access = [f for f in frames if f.startswith("event: access")]
    assert len(access) == 1 and '"user": "li.wei"' in access[0]


async def _ingest_one(db: Database, port: int, gateway: mqtt.Client) -> list[str]:
    """Run a relay on ``db``; publish one unlock as the gateway; the frames a page gets."""
    settings = Settings(broker=BrokerSettings(port=port), notifiers=())
    relay = Relay(settings, db, KeyStore(os.urandom(32)), Fanout([]))
    running = asyncio.create_task(relay.run())
    page = relay.live.stream(lambda _house: True)
    frames = [await anext(page)]
    try:
        while relay.bus is None:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(relay.bus.connected.wait(), 10)
        # Retained: whenever the relay's subscription lands, it gets the event.
        body = json.dumps(unlocked("e2")).encode()
        gateway.publish(f"pingan/v1/{GW}/events/door-main", body, qos=1, retain=True)
        while not any(f.startswith("event: access") for f in frames):
            frames.append(await asyncio.wait_for(anext(page), 10))
    finally:
        await page.aclose()
        relay.stop()
        await running
    return frames


def test_a_page_is_told_to_reload_once_subscribed_and_when_it_fell_behind() -> None:
    """`sync` comes after the page is subscribed (the browser's "open" comes before); a page
    that stopped reading is told to reload instead of silently losing updates."""

    async def run() -> tuple[list[str], list[str]]:
        hub = live.Broadcaster()
        page = hub.stream(lambda _house: True)
        first = await anext(page)
        assert len(hub) == 1  # subscribed by the time the page reads `sync`
        for i in range(live.QUEUE + 5):
            hub.send(1, "access", {"id": i})
        rest = [await anext(page) for _ in range(6)]
        await page.aclose()
        return [first], rest

    first, rest = asyncio.run(run())
    assert "event: sync" in first[0]
    assert rest[0] == live.SYNC
    # What stayed queued is the newest; the page's reload covers what was let go.
    assert [json.loads(f.split("data: ", 1)[1])["id"] for f in rest[1:]] == [
        live.QUEUE + i for i in range(5)
    ]
