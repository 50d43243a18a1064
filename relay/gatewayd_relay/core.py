"""One relay process: its database handle, its MQTT client, the requests it has waiting for
a gateway's answer, its live pages, its notifiers and its escalation timer. Routes hold a
``Relay``; nothing else is shared between requests.

Long-lived tasks run in one TaskGroup owned by ``run()``; ``stop()`` ends them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from gatewayd_relay import incidents, ingest, signing, views
from gatewayd_relay.bus import Bus, Message
from gatewayd_relay.db import Database
from gatewayd_relay.gateway_cmds import GatewayCommand
from gatewayd_relay.keystore import KeyStore
from gatewayd_relay.live import Broadcaster
from gatewayd_relay.models import AccessEvent, Account, Command, House, Incident, Person
from gatewayd_relay.notify import Fanout, Notification
from gatewayd_relay.pending import Pending
from gatewayd_relay.settings import Settings

log = logging.getLogger("gatewayd_relay")
T = TypeVar("T")
INGEST_QUEUE = 10_000
INGEST_BATCH = 200
RETRY_FIRST, RETRY_MAX = 0.2, 5.0  # seconds between tries of a batch the database refused


class Relay:
    def __init__(self, settings: Settings, db: Database, keys: KeyStore, notify: Fanout) -> None:
        self.settings = settings
        self.db = db
        self.keys = keys
        self.notify = notify
        self.pending = Pending()
        self.live = Broadcaster()
        self.bus: Bus | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue(INGEST_QUEUE)
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Follow the broker, ingest, escalate, until stop(); then end every task."""
        loop = asyncio.get_running_loop()
        self.bus = Bus(self.settings, loop, self.deliver)
        self.bus.start()
        tasks = [
            loop.create_task(self._ingest_loop(), name="ingest"),
            loop.create_task(self._escalation_loop(), name="escalation"),
        ]
        if ready is not None:
            ready.set()
        try:
            await self._stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.bus.stop()

    def stop(self) -> None:
        self._stop.set()

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` after the request has been answered, keeping a reference."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def db_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, *args)`` in one transaction on a worker thread."""

        def work() -> T:
            with self.db.session() as s:
                return fn(s, *args)

        return await asyncio.to_thread(work)

    # -- from the broker (on the event loop) ------------------------------------------

    def deliver(self, msg: Message) -> None:
        if msg.topic.endswith("/cmd/result"):
            # The fast path: a phone is waiting. The database learns of it in turn below.
            try:
                body = json.loads(msg.payload)
            except ValueError:
                return
            if isinstance(body, dict):
                self.pending.resolve(body)
        try:
            self._inbox.put_nowait(msg)
        except asyncio.QueueFull:
            log.warning("ingest queue full; dropped a message on %s", msg.topic)

    async def _ingest_loop(self) -> None:
        """Whatever has queued up is ingested in one transaction on one worker thread: a
        burst (a gateway back from an outage, a busy door) costs one hop and one commit,
        not one per message, and leaves the thread pool to the taps."""
        prefix = self.settings.topic_prefix + "/"
        internal = self.settings.relay_topic + "/"
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < INGEST_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            items: list[tuple[str, str, dict[str, Any]]] = []
            for msg in batch:
                try:
                    body = json.loads(msg.payload)
                except ValueError:
                    continue
                if not isinstance(body, dict):
                    continue
                if msg.topic.startswith(internal):
                    try:
                        await self._changed_elsewhere(body)
                    except Exception:  # must not end this loop: the gateways' messages wait
                        log.exception("could not show a change to the live pages")
                elif msg.topic.startswith(prefix):
                    gateway_id, _, rest = msg.topic[len(prefix) :].partition("/")
                    items.append((gateway_id, rest, body))
            if not items:
                continue
            out = await self._ingest(items)
            if out is None:
                continue
            for house_id, kind, view in out.updates:
                self.live.send(house_id, kind, view)
            for push in out.pushes:
                await self._push(push)

    async def _ingest(self, items: list[tuple[str, str, dict[str, Any]]]) -> ingest.Outcome | None:
        """The batch into the database, tried again while the database is away or busy
        (dropped, it would be an unlock missing from the log or an alarm nobody is told
        of; the batch left nothing behind and every write is idempotent). Messages meanwhile
        wait in the inbox, up to its bound. None: a fault of ours, not the database's;
        logged and skipped."""
        delay = RETRY_FIRST
        while True:
            try:
                return await self.db_call(ingest.handle_batch, items, self.settings.escalate_after)
            except ingest.DB_AWAY as e:
                log.warning(
                    "could not ingest %d messages (%s); trying again in %.1f s",
                    len(items),
                    getattr(e, "orig", None) or type(e).__name__,  # never the SQL's values
                    delay,
                )
            except Exception:
                log.exception("could not ingest %d messages", len(items))
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- changes the gateways cannot show, told to every process ----------------------

    def changed(self, house_id: int, kind: str, ref: int) -> None:
        """Tell every process (this one included) that row ``ref`` of ``kind`` changed."""
        if self.bus is not None:
            body = json.dumps({"house": house_id, "kind": kind, "ref": ref}).encode()
            self.bus.publish(f"{self.settings.relay_topic}/changed", body)

    async def _changed_elsewhere(self, body: dict[str, Any]) -> None:
        house_id, kind, ref = body.get("house"), body.get("kind"), body.get("ref")
        if not (isinstance(house_id, int) and isinstance(ref, int) and self.live):
            return

        def view(s: Any) -> dict[str, Any] | None:
            if kind == "incident":
                inc, house = s.get(Incident, ref), s.get(House, house_id)
                return (
                    None
                    if inc is None or house is None
                    else views.incident(inc, house, incidents.entries(s, ref))
                )
            if kind == "access":
                row = s.get(AccessEvent, ref)
                return None if row is None else views.access(row)
            if kind == "person":
                p = s.get(Person, ref)
                return (
                    None
                    if p is None
                    else {"id": p.id, "house": p.house_id, "revoked": p.revoked_at is not None}
                )
            return None

        v = await self.db_call(view)
        if v is not None and isinstance(kind, str):
            self.live.send(house_id, kind, v)

    # -- pushes and escalation ---------------------------------------------------------

    async def _push(self, push: incidents.Push) -> None:
        inc, house = push.incident, push.house
        base = self.settings.public_url.rstrip("/")
        for acct in push.accounts:
            note = Notification(
                incident=inc.id,
                house=house.name,
                gateway_id=house.gateway_id,
                alarm_id=inc.alarm_id,
                type=inc.type,
                severity=inc.severity,
                device=inc.device,
                since=inc.since,
                level=push.level,
                username=acct.username,
                name=acct.name,
                phone=acct.phone,
                url=f"{base}/alarms/{inc.id}" if base else f"/alarms/{inc.id}",
            )
            errors = await self.notify.send(note)
            await self.db_call(
                incidents.note,
                inc.id,
                "pushed",
                acct.username,
                time.time(),
                push.level,
                "; ".join(errors),
            )
        self.changed(house.id, "incident", inc.id)

    async def _escalation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.escalation_poll)
            try:
                due = await self.db_call(
                    incidents.escalate_due, time.time(), self.settings.escalate_after
                )
            except Exception:
                log.exception("escalation check failed; trying again")
                continue
            for push in due:
                log.info(
                    "alarm %s of %s escalated to level %d",
                    push.incident.alarm_id,
                    push.house.gateway_id,
                    push.level,
                )
                await self._push(push)

    # -- commands to a gateway ---------------------------------------------------------

    def sign_for(
        self,
        s: Any,
        house: House,
        cmd: GatewayCommand,
        user: str,
        record: bool = True,
        cid: str | None = None,
    ) -> dict[str, Any] | None:
        """The signed command (recorded in ``commands`` unless the caller records it with
        its answer); None when the house has no key."""
        if house.key_sealed is None:
            return None
        key = self.keys.open(house.gateway_id, house.key_sealed)
        signed = signing.command(
            key,
            cmd.device or house.gateway_id,
            cmd.action,
            cmd.args,
            user,
            self.settings.command_lifetime,
            cid=cid,
        )
        if not record:
            return signed
        s.add(
            Command(
                id=signed["id"],
                house_id=house.id,
                device=signed["device"],
                action=cmd.action,
                user=user,
                created=time.time(),
            )
        )
        return signed

    def publish_command(self, gateway_id: str, signed: dict[str, Any]) -> None:
        """Thread-safe: a worker thread that just signed may publish at once."""
        assert self.bus is not None
        topic = f"{self.settings.topic_prefix}/{gateway_id}/cmd"
        self.bus.publish(topic, json.dumps(signed, ensure_ascii=False).encode())

    async def wait_result(
        self, cid: str, fut: asyncio.Future[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The gateway's result for ``cid`` (None after the action timeout)."""
        try:
            return await asyncio.wait_for(fut, self.settings.action_timeout)
        except TimeoutError:
            return None
        finally:
            self.pending.forget(cid)

    async def publish_and_wait(
        self, gateway_id: str, signed: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Publish a signed command and wait for its result (None after the action timeout)."""
        fut = self.pending.expect(signed["id"])
        self.publish_command(gateway_id, signed)
        return await self.wait_result(signed["id"], fut)

    async def send_as(
        self, house_id: int, cmd: GatewayCommand, who: Account
    ) -> dict[str, Any] | None:
        """Sign ``cmd`` as a staff account and wait for the gateway's answer."""

        def prepare(s: Any) -> tuple[str, dict[str, Any] | None]:
            house = s.get(House, house_id)
            assert house is not None
            return house.gateway_id, self.sign_for(s, house, cmd, who.username)

        gateway_id, signed = await self.db_call(prepare)
        if signed is None:
            return {"id": None, "ok": False, "code": "not_enrolled"}
        return await self.publish_and_wait(gateway_id, signed)
