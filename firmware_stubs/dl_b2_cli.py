"""``python -m firmware_stubs.dl_b2``: one or more DL-B2 locks on a fake BlueZ, for demos and
manual testing of a gateway on a machine without Bluetooth.

Starts a private D-Bus (unless ``--bus-address`` names one), prints the
``DBUS_SYSTEM_BUS_ADDRESS=...`` line to export for the gateway, then reads physical actions
from stdin, one per line (``help`` lists them). Stops on EOF of a terminal, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import stat
import sys

from firmware_stubs.dl_b2 import DLB2, M_CARD, M_FINGERPRINT, M_PIN
from firmware_stubs.fake_bluez import FakeBlueZ
from firmware_stubs.private_bus import ENV_VAR, PrivateBus

HELP = """actions (first lock unless prefixed with its address, e.g. "C0:FF:EE:00:00:02 card 7"):
  card USER | pin USER | finger USER    valid credential of USER unlocks for 5 s
  deny USER                             a card that is not allowed
  exit | key                            exit button / mechanical key
  open | close                          the door contact (open while locked = forced)
  mains-lost [MV] | mains-back          mains power
  tamper                                cover opened
  out | in                              out of radio range / back
  refuse on|off | jam on|off            refuse connections / bolt jammed
  drop                                  drop the link now
  fault NAME                            next command: drop_on_write, drop_before_ack, no_ack, busy
  show                                  state and accepted commands"""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m firmware_stubs.dl_b2", description=__doc__)
    ap.add_argument("--address", action="append", help="lock address (repeatable)")
    ap.add_argument("--key-hex", action="append", help="16-byte device key as 32 hex digits")
    ap.add_argument("--bus-address", help="serve on this bus instead of a private one")
    ap.add_argument("--adapter", default="hci0")
    ap.add_argument("--idle-timeout", type=float, default=120.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.address = args.address or ["C0:FF:EE:00:00:01"]
    keys = args.key_hex or ["00112233445566778899aabbccddeeff"]
    if len(keys) == 1:
        keys = keys * len(args.address)
    if len(keys) != len(args.address):
        ap.error("give one --key-hex, or one per --address")
    try:
        args.keys = [bytes.fromhex(k) for k in keys]
    except ValueError:
        ap.error("--key-hex takes 32 hex digits")
    if any(len(k) != 16 for k in args.keys):
        ap.error("--key-hex takes 32 hex digits (16 bytes)")
    return args


def apply(locks: dict[str, DLB2], line: str) -> str:
    """Carry out one stdin line; returns what to print."""
    words = line.split()
    if not words:
        return ""
    lock = next(iter(locks.values()))
    if words[0].upper() in locks:
        lock = locks[words.pop(0).upper()]
    verb, rest = (words[0], words[1:]) if words else ("help", [])
    arg = rest[0] if rest else ""
    simple = {
        "exit": lock.exit_button,
        "key": lock.mechanical_key,
        "open": lock.open_door,
        "close": lock.close_door,
        "mains-back": lock.mains_restored,
        "tamper": lock.tamper,
        "out": lock.out_of_range,
        "in": lock.back_in_range,
        "drop": lock.drop_link,
    }
    methods = {"card": M_CARD, "pin": M_PIN, "finger": M_FINGERPRINT}
    if verb in simple:
        simple[verb]()
    elif verb in methods:
        lock.credential(methods[verb], int(arg or 0))
    elif verb == "deny":
        lock.credential(M_CARD, int(arg or 0), valid=False)
    elif verb == "mains-lost":
        lock.mains_lost(int(arg) if arg else None)
    elif verb == "refuse":
        lock.refuse_connections = arg != "off"
    elif verb == "jam":
        lock.jammed = arg != "off"
    elif verb == "fault":
        lock.inject(arg)
    elif verb == "show":
        return (
            f"{lock.address}: lock={lock.lock_state} door={lock.door} mains={lock.mains} "
            f"counter={lock.counter} connected={lock.is_connected} "
            f"accepted={[(c.op, c.seq, c.arg) for c in lock.accepted()]}"
        )
    else:
        return HELP
    return "ok"


async def serve(args: argparse.Namespace, bus_address: str) -> None:
    bluez = FakeBlueZ(bus_address, adapter=args.adapter)
    await bluez.start()
    locks: dict[str, DLB2] = {}
    for address, key in zip(args.address, args.keys, strict=True):
        lock = DLB2(address, key, idle_timeout=args.idle_timeout)
        bluez.add_peripheral(lock)
        locks[lock.address] = lock
    print(f"{ENV_VAR}={bus_address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    if _pollable(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:  # e.g. </dev/null in a demo script: no actions, serve until a signal
        reader.feed_eof()
    try:
        while not stop.is_set():
            line_task = asyncio.ensure_future(reader.readline())
            stop_task = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait(
                {line_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (line_task, stop_task):
                if task not in done:
                    task.cancel()
            if line_task not in done:
                break
            raw = line_task.result()
            if not raw:  # stdin closed (e.g. run in the background): serve until a signal
                await stop.wait()
                break
            try:
                print(apply(locks, raw.decode()), flush=True)
            except (ValueError, IndexError) as exc:
                print(f"error: {exc}", flush=True)
    finally:
        for lock in locks.values():
            lock.cancel_timers()
        await bluez.stop()


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch ``fd`` (epoll refuses regular files and /dev/null)."""
    mode = os.fstat(fd).st_mode
    return os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    if args.bus_address:
        asyncio.run(serve(args, args.bus_address))
        return
    with PrivateBus() as bus:
        asyncio.run(serve(args, bus.address))
