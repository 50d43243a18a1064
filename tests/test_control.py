"""The control socket served by a real Gateway (in this process), reached as the CLI reaches it:
status, alarms, ack, fire reset, the event stream, receiver calls; and refused to other users."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.broker import free_port
from firmware_stubs.srb433 import ReceiverEmulator
from gatewayd import config, control
from gatewayd.model import Event
from gatewayd.runtime import Gateway
from tests.harness import make_site

NOBODY = 65534
ME = pwd.getpwuid(os.getuid()).pw_name


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, body: str = "", sock: str | None = None, **limits: Any
) -> AsyncIterator[tuple[Gateway, control.ControlServer]]:
    """A Gateway running (no broker: safety never needs one) with its control socket; with
    ``sock`` or ``limits`` (max_clients, idle_timeout), a second server of it there."""
    site = make_site(tmp_path, f"mqtt://127.0.0.1:{free_port()}", body)
    gw = Gateway(config.load(str(site.config)), tick_seconds=0.1)
    ready = asyncio.Event()
    gw.ready = ready.set
    task = asyncio.create_task(gw.run(), name="gateway")
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the gateway failed to start: show why
    assert ready.is_set(), "the gateway did not get ready in 10 s"
    assert gw.control is not None
    server = gw.control
    if sock is not None or limits:
        where = sock or str(tmp_path / "limited.sock")
        server = await control.ControlServer(gw, where, **limits).start()
    try:
        yield gw, server
    finally:
        if server is not gw.control:
            await server.close()
        gw.stop()
        await asyncio.wait_for(task, 15)


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, **request: Any) -> dict[str, Any]:
        self.writer.write(json.dumps(request).encode() + b"\n")
        return await self.next()

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line, "the daemon closed the connection"
        return dict(json.loads(line))

    def close(self) -> None:
        self.writer.close()


async def connect(path: str) -> Conn:
    return Conn(*await asyncio.open_unix_connection(path))


def test_socket_path_prefers_run_dir_only_when_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(control.ENV_VAR, raising=False)
    monkeypatch.setattr(control.server, "RUN_DIR", str(tmp_path / "run-gatewayd"))
    assert control.socket_path("/var/lib/x") == "/var/lib/x/control.sock"
    (tmp_path / "run-gatewayd").mkdir()
    assert control.socket_path("/var/lib/x") == str(tmp_path / "run-gatewayd" / "control.sock")
    monkeypatch.setenv(control.ENV_VAR, "/elsewhere.sock")
    assert control.socket_path("/var/lib/x") == "/elsewhere.sock"


def test_status_alarms_ack_and_fire_reset(tmp_path: Path) -> None:
    body = f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{tmp_path}/none"\n\n[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "1A2B3C4D"\nroom = "301"\n'

    async def scenario() -> None:
        async with gateway(tmp_path, body) as (gw, server):
            assert server.path == str(tmp_path / "data" / "control.sock")
            mode = os.stat(server.path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
            c = await connect(server.path)
            st = await c.ask(cmd="status")
            assert st["ok"] and st["gateway"] == "gw-test" and st["broker_connected"] is False
            assert st["fire_mode"] is False and st["outbox_depth"] >= 0 and st["uptime"] >= 0
            # No broker in this test: the heartbeat-free start still queued the bus's events.
            assert set(st["outbox"]) >= {
                "depth",
                "oldest_age_seconds",
                "disk_bytes",
                "dropped_info",
                "dropped_urgent",
                "dropped_telemetry",
            }
            assert st["outbox"]["depth"] == st["outbox_depth"]
            assert st["buses"]["smoke-rx"]["driver"] == "serial"
            assert [d["id"] for d in st["devices"]] == ["smoke-301"]
            gw.set_state("smoke-301", {"battery_mv": 2900})
            st = await c.ask(cmd="status")
            assert st["devices"][0]["state"]["battery_mv"] == 2900

            gw.alarms.raise_("smoke-301", "smoke.alarm", {"density": 90})
            listed = await c.ask(cmd="alarms")
            # (the receiver's port may not answer in this test: its own alarm may be listed too)
            assert "smoke-301/smoke.alarm" in [a["id"] for a in listed["alarms"]]
            # Recorded as the OS account of this process (SO_PEERCRED); the name given is a note.
            acked = await c.ask(cmd="ack", alarm="smoke-301/smoke.alarm", user="installer-li")
            assert acked == {
                "ok": True,
                "alarm": "smoke-301/smoke.alarm",
                "acked_by": ME,
                "note": "installer-li",
            }
            assert gw.alarms.alarms["smoke-301/smoke.alarm"].acked_by == ME
            missing = await c.ask(cmd="ack", alarm="nope/none", note="x")
            assert missing == {
                "ok": False,
                "code": "not_found",
                "error": "no active alarm 'nope/none'",
            }

            gw.alarms.raise_("gw-test", "gateway.fire_mode", {}, part="smoke-301")
            early = await c.ask(cmd="reset", note="installer-li")  # the detector still in alarm
            assert early["ok"] is False and early["code"] == "forbidden"
            assert "smoke-301" in early["error"]
            assert gw.alarms.fire_mode is True
            gw.alarms.clear("smoke-301", "smoke.alarm")
            gw.alarms.clear("gw-test", "gateway.fire_mode", "smoke-301")
            reset = await c.ask(cmd="reset", note="installer-li")
            assert reset == {"ok": True, "reset": True, "fire_mode": False, "by": ME}
            assert gw.alarms.fire_mode is False
            again = await c.ask(cmd="reset")
            assert again["reset"] is False

            # A reload says whether the new config was taken, and why not.
            taken = await c.ask(cmd="reload")
            assert taken == {"ok": True, "reloaded": True, "devices": 1}
            Path(gw.config.path).write_text("[gateway]\nid = 3\n")  # broken
            refused = await c.ask(cmd="reload")
            assert refused["ok"] and refused["reloaded"] is False and refused["devices"] == 1
            assert "gateway.id: expected" in refused["refused"]
            c.close()

    asyncio.run(scenario())


def test_bad_requests_get_one_coded_error_and_the_connection_survives(tmp_path: Path) -> None:
    """(Malformed lines of every kind, against the real daemon: tests/test_control_daemon.py.)"""

    async def scenario() -> None:
        async with gateway(tmp_path) as (_gw, server):
            c = await connect(server.path)
            c.writer.write(b"not json\n")
            assert await c.next() == {
                "ok": False,
                "code": "invalid",
                "error": 'expected {"cmd": ...} on one line',
            }
            for request, code, error in [
                ({"cmd": "explode"}, "invalid", "unknown command 'explode'"),
                ({"cmd": "ack"}, "invalid", "alarm must be a non-empty string"),
                ({"cmd": "ack", "alarm": "a/b", "note": 7}, "invalid", "note must be a string"),
                ({"cmd": "call", "bus": "nope", "method": "pair"}, "not_found", "no bus 'nope'"),
                ({"cmd": "call", "device": "ghost", "method": "status"}, "not_found", "no device 'ghost'"),
                ({"cmd": "call", "device": "gw-test", "method": "x", "args": [1]}, "invalid", "args must be an object"),
            ]:  # fmt: skip
                assert await c.ask(**request) == {"ok": False, "code": code, "error": error}
            assert (await c.ask(cmd="status"))["ok"] is True
            c.close()

    asyncio.run(scenario())


def test_events_stream_until_the_client_leaves_and_pair_call_reaches_the_receiver(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        rx = ReceiverEmulator(str(tmp_path / "srb433"), spacing=0.01)
        async with rx:
            body = f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{rx.path}"\nping_seconds = 0.5\n'
            async with gateway(tmp_path, body) as (gw, server):
                before = list(gw.listeners)  # metrics has its own
                events = await connect(server.path)
                assert await events.ask(cmd="events") == {"ok": True, "streaming": "events"}
                assert len(gw.listeners) == len(before) + 1
                gw.handle_event(Event("gw-test", "gateway.hello", "info", {"n": 1}))
                got = await events.next()
                assert (got["device"], got["type"], got["data"]) == (
                    "gw-test",
                    "gateway.hello",
                    {"n": 1},
                )

                for _ in range(50):  # the driver opens the port and gets its first answer
                    if gw.buses["smoke-rx"].driver is not None and gw.world.states.get(
                        "gw-test", {}
                    ).get("receiver.smoke-rx", {}).get("online"):
                        break
                    await asyncio.sleep(0.1)
                ctl = await connect(server.path)
                answer = await ctl.ask(
                    cmd="call", bus="smoke-rx", method="pair", args={"seconds": 30}
                )
                assert answer["ok"], answer
                await rx.wait_host_frame(0x81)
                rx.queue_join("1A2B3C4E", model=2)
                while (ev := await events.next())["type"] != "gateway.detector_paired":
                    pass
                assert ev["data"]["address"] == "1A2B3C4E" and ev["data"]["model"] == 2
                refused = await ctl.ask(cmd="call", bus="smoke-rx", method="run")
                assert refused["ok"] is False and "has no 'run'" in refused["error"]
                assert refused["code"] == "forbidden"  # not a receiver command: never reachable
                wrong = await ctl.ask(cmd="call", bus="smoke-rx", method="pair", args={"s": 1})
                assert wrong == {
                    "ok": False,
                    "code": "invalid",
                    "error": "pair: args.s: unknown key (known keys: seconds)",
                }

                events.close()
                for _ in range(50):
                    if gw.listeners == before:
                        break
                    await asyncio.sleep(0.05)
                assert gw.listeners == before
                ctl.close()

    asyncio.run(scenario())


# -- what a client may cost ---------------------------------------------------------------------


async def eof_after(conn: Conn, timeout: float = 5) -> bool:
    """True when the daemon closed the connection (EOF) within ``timeout``."""
    return await asyncio.wait_for(conn.reader.read(), timeout) == b""


def test_a_client_beyond_the_bound_gets_busy_and_is_closed_a_freed_slot_serves_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with gateway(tmp_path, max_clients=4) as (_gw, server):
            held = [await connect(server.path) for _ in range(4)]
            assert [(await c.ask(cmd="status"))["ok"] for c in held] == [True] * 4
            for _ in range(3):
                extra = await connect(server.path)
                assert await extra.next() == {
                    "ok": False,
                    "code": "busy",
                    "error": "busy: 4 clients connected",
                }
                assert await eof_after(extra), "a refused connection must be closed at once"
                extra.close()
            held.pop().close()
            for _ in range(50):  # the daemon sees the EOF and frees the slot
                if server.sessions.count < 4:
                    break
                await asyncio.sleep(0.02)
            fresh = await connect(server.path)
            assert (await fresh.ask(cmd="status"))["gateway"] == "gw-test"
            for c in [*held, fresh]:
                c.close()

    with caplog.at_level("WARNING", logger="gatewayd.control"):
        asyncio.run(scenario())
    busy = [r.getMessage() for r in caplog.records if r.name == "gatewayd.control"]
    # Three refusals, one line (at most one a minute): a flood must not flood the log.
    assert busy == ["control: 1 connection(s) refused: 4 clients connected already"]


def test_an_idle_connection_is_closed_with_a_coded_line_a_quiet_event_stream_is_not(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with gateway(tmp_path, idle_timeout=0.3) as (_gw, server):
            follower = await connect(server.path)
            assert await follower.ask(cmd="events") == {"ok": True, "streaming": "events"}
            silent = await connect(server.path)
            half = await connect(server.path)
            half.writer.write(b'{"cmd": "sta')  # a request that never ends counts as none
            for c in (silent, half):
                assert await c.next(timeout=2) == {
                    "ok": False,
                    "code": "timeout",
                    "error": "no request in 0.3 s; connection closed",
                }
                assert await eof_after(c)
            # A client that keeps asking is never idle.
            busy = await connect(server.path)
            for _ in range(4):
                await asyncio.sleep(0.2)
                assert (await busy.ask(cmd="alarms"))["ok"] is True
            # The follower, silent for > 1 s, still gets what happens.
            _gw.handle_event(Event("gw-test", "gateway.hello", "info", {}))
            assert (await follower.next())["type"] == "gateway.hello"
            for c in (follower, silent, half, busy):
                c.close()

    asyncio.run(scenario())


def test_a_socket_a_live_daemon_listens_on_is_never_taken_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gateway(tmp_path) as (gw, first):
            second = await control.serve(gw, first.path)  # as a second daemon would
            assert second.server is None  # left out, logged
            await second.close()  # and closing it leaves the first one's socket alone
            c = await connect(first.path)
            assert (await c.ask(cmd="status"))["pid"] == os.getpid()
            c.close()
        # A socket left by a daemon that was killed (nobody listens) is taken over.
        import socket

        stale = tmp_path / "stale.sock"
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(stale))
        s.close()
        async with gateway(tmp_path / "again", sock=str(stale)) as (_gw, server):
            assert server.server is not None
            c = await connect(str(stale))
            assert (await c.ask(cmd="status"))["ok"] is True
            c.close()

    (tmp_path / "again").mkdir()
    asyncio.run(scenario())


# -- who may connect ----------------------------------------------------------------------------


def _client_as(path: str, uid: int, gid: int, groups: list[int]) -> str:
    """In a forked child: become ``uid``, ask for status, return the first answer line."""
    import socket

    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
    except PermissionError:
        return "EACCES"
    # Refused before it read the request, the answer is waiting anyway (the CLI reads it too).
    with contextlib.suppress(BrokenPipeError):
        s.sendall(b'{"cmd": "status"}\n')
    return s.makefile().readline().strip()


async def as_user(path: str, uid: int, gid: int, groups: list[int]) -> str:
    """A client run as another user, while this process's event loop keeps serving."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the test or the event loop
        code = 0
        try:
            os.close(r)
            os.write(w, _client_as(path, uid, gid, groups).encode())
        except BaseException as exc:
            os.write(w, repr(exc).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        await asyncio.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the client as another user hung")
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_other_users_are_refused_group_members_let_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A directory everyone may traverse, so only the socket's own checks decide.
    where = Path(tempfile.mkdtemp(prefix="gwctl-"))
    where.chmod(0o755)
    sock = str(where / "control.sock")

    async def scenario() -> None:
        async with gateway(tmp_path, sock=sock) as (_gw, server):
            # Mode 0660 root:root: a stranger cannot even connect.
            assert await as_user(sock, NOBODY, NOBODY, []) == "EACCES"
            # Even if someone loosens the mode, SO_PEERCRED still refuses the stranger...
            os.chmod(sock, 0o666)
            os.chown(sock, 0, NOBODY)
            server.sessions.gid = NOBODY
            answer = await as_user(sock, NOBODY, 1, [])
            assert json.loads(answer) == {
                "ok": False,
                "code": "forbidden",
                "error": "permission denied",
            }
            # ...and lets in a member of the socket's group (a supplementary group counts).
            answer = await as_user(sock, NOBODY, 1, [NOBODY])
            assert json.loads(answer)["gateway"] == "gw-test"

    with caplog.at_level("WARNING", logger="gatewayd.control"):
        try:
            asyncio.run(scenario())
        finally:
            with contextlib.suppress(OSError):
                os.unlink(sock)
            where.rmdir()
    refusals = [
        r.getMessage()
        for r in caplog.records
        if r.name == "gatewayd.control" and "refused" in r.getMessage()
    ]
    assert len(refusals) == 1, refusals  # one line per refused connection
    assert refusals[0].startswith(f"control: refused uid {NOBODY} (pid ")
    assert refusals[0].endswith("not root nor in its group")
