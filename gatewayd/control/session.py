"""The connections of the control socket (gatewayd.control): who is let in, how many at once,
how long each may take, and the request/answer loop of each.

What one client can cost the daemon is bounded, so that no client, however many or however
slow, can take the descriptors, memory or log lines the safety path needs: at most
``max_clients`` connections (one more gets a ``busy`` line and is closed at once, so its
descriptor is free again before the next accept), ``MAX_LINE`` bytes and ``MAX_DEPTH`` levels
per request, ``idle_timeout`` s to send a complete request (not while streaming events),
``SEND_TIMEOUT`` s to take an answer. Every request gets a coded answer; no client can leave a
traceback in the log. What a request means is not decided here: that is ``handle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gatewayd.control.history import EventFilter, EventHistory
from gatewayd.control.peer import Peer, account, allowed, note_of, peer_credentials
from gatewayd.control.wire import (
    BUSY,
    FORBIDDEN,
    INVALID,
    MAX_LINE,
    TIMEOUT,
    Refusal,
    encode,
    refusal,
)
from gatewayd.control.wire import parse as parse_request
from gatewayd.model import Event, is_internal

log = logging.getLogger("gatewayd.control")

MAX_CLIENTS = 32  # connections at once; each costs a descriptor and a task
IDLE_TIMEOUT = 30.0  # s a connection may wait before its next request (not while streaming)
SEND_TIMEOUT = 30.0  # s a client may leave an answer or event unread before it is dropped
BUSY_LOG_EVERY = 60.0  # s between log lines about connections refused as busy
EVENT_QUEUE = 1000  # events buffered per slow `events` client before some are dropped

Handle = Callable[[Mapping[str, Any], Peer], Awaitable[dict[str, Any]]]


class Sessions:
    """Every client of one socket. ``client`` is the server's connection callback; ``close``
    ends them all. ``gid`` is the socket's group (members may connect)."""

    def __init__(
        self,
        handle: Handle,
        listeners: list[Callable[[Event], None]],
        *,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.handle = handle
        self.listeners = listeners
        self.history = EventHistory()
        listeners.append(self.history)
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.gid = os.getegid()
        self._writers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._busy_refused = 0  # since the last log line about it
        self._busy_logged = -BUSY_LOG_EVERY

    @property
    def count(self) -> int:
        return len(self._writers)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.remove(self.history)
        # End clients by closing their connections (their reads see EOF and they return):
        # cancelling the handler tasks makes asyncio's stream protocol log a traceback.
        for writer in list(self._writers.values()):
            writer.close()
        clients = list(self._writers)
        if clients:
            _done, stuck = await asyncio.wait(clients, timeout=2.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self.max_clients:
            self._refuse_busy(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._writers[task] = writer
        try:
            pid, uid, gid = peer_credentials(writer.get_extra_info("socket"))
            if not allowed(pid, uid, gid, self.gid):
                log.warning("control: refused uid %d (pid %d): not root nor in its group", uid, pid)
                await _send(writer, refusal(FORBIDDEN, "permission denied"))
                return
            await self._session(reader, writer, pid, uid)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client left, or took no answer for SEND_TIMEOUT s
        except Exception as exc:  # noqa: BLE001 - no client may cost a traceback
            log.error("control: connection dropped: %s: %r", type(exc).__name__, str(exc))
        finally:
            self._writers.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _refuse_busy(self, writer: asyncio.StreamWriter) -> None:
        """One coded line and the connection closed at once. Logged at most once a minute,
        with the count: a flood of connections must not become a flood of log lines."""
        # The line fits the new socket's empty buffer: it goes out with the close, no drain.
        writer.write(encode(refusal(BUSY, f"busy: {self.max_clients} clients connected")))
        writer.close()
        self._busy_refused += 1
        now = time.monotonic()
        if now - self._busy_logged >= BUSY_LOG_EVERY:
            log.warning(
                "control: %d connection(s) refused: %d clients connected already",
                self._busy_refused,
                self.max_clients,
            )
            self._busy_refused, self._busy_logged = 0, now

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pid: int, uid: int
    ) -> None:
        user = account(uid)
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    line = await reader.readline()
            except TimeoutError:
                idle = f"no request in {self.idle_timeout:g} s; connection closed"
                await _send(writer, refusal(TIMEOUT, idle))
                return
            except ValueError:  # longer than MAX_LINE: the rest of it cannot be skipped safely
                await _send(writer, refusal(INVALID, f"request longer than {MAX_LINE} bytes"))
                return
            if not line:
                return
            try:
                request = parse_request(line)
                peer = Peer(pid, uid, user, note_of(request))
            except Refusal as exc:
                await _send(writer, exc.answer())
                continue
            if request["cmd"] == "events":
                try:
                    wanted = EventFilter.of(request)
                except Refusal as exc:
                    await _send(writer, exc.answer())
                    continue
                await self._stream_events(reader, writer, wanted)
                return
            await _send(writer, await self.handle(request, peer))

    async def _stream_events(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wanted: EventFilter
    ) -> None:
        """The history asked for (``since``), then every new event until the client leaves
        (unless ``follow`` is false); both filtered by device and type."""
        queue: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE)
        dropped = 0

        def listener(event: Event) -> None:
            nonlocal dropped
            if is_internal(event.type) or not wanted(event):
                return  # readings for the rules, not happenings for a person
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                dropped += 1

        self.listeners.append(listener)  # before the history is read: nothing falls between
        past = self.history.since(wanted.since, wanted) if wanted.since is not None else []
        sent = {e.id for e in past}
        gone = asyncio.ensure_future(reader.read(1))  # any byte or EOF: the client is done
        try:
            answer: dict[str, Any] = {"ok": True, "streaming": "events"}
            if wanted.since is not None:
                answer["history"] = len(past)
            await _send(writer, answer)
            for event in past:
                await _send(writer, event.to_json())
            if not wanted.follow:
                return
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                if dropped:
                    await _send(writer, {"dropped": dropped})
                    dropped = 0
                event = get.result()
                if event.id not in sent:
                    await _send(writer, event.to_json())
        finally:
            gone.cancel()
            with contextlib.suppress(ValueError):
                self.listeners.remove(listener)


async def _send(writer: asyncio.StreamWriter, answer: Mapping[str, Any]) -> None:
    writer.write(encode(answer))
    async with asyncio.timeout(SEND_TIMEOUT):
        await writer.drain()
