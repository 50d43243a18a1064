"""Run the SRB-433 receiver emulator alone, for a demo or a session on the bench::

    python -m firmware_stubs.srb433 --link /tmp/srb433 --detector 1A2B3C4D --scenario demo
    python -m firmware_stubs.srb433 --link /tmp/srb433 --firmware 0x0200 \\
        --detector 1A2B3C4D:SHD-20 --detector 0BADF00D:SD-1L

A detector is ``ID`` or ``ID:MODEL`` (SD-10, SHD-20, SD-1L; SD-10 when left out). Supervised
detectors send a heartbeat every ``--heartbeat`` seconds; an SD-1L never does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable

from firmware_stubs.srb433 import ReceiverEmulator, parse_address
from firmware_stubs.srb433_wire import HEARTBEAT, MODEL_CODES, version


def detector_arg(text: str) -> tuple[int, int]:
    """``ID[:MODEL]`` -> (address, model code)."""
    address, _, model = text.partition(":")
    if model and model not in MODEL_CODES:
        raise argparse.ArgumentTypeError(f"unknown model {model!r} ({', '.join(MODEL_CODES)})")
    try:
        return parse_address(address), MODEL_CODES.get(model, 0x01)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a detector id: {address!r}") from exc


async def _demo(rx: ReceiverEmulator, say: Callable[[str], None]) -> None:
    dets = list(rx.detectors.values())
    for det in dets:
        if det.sends(HEARTBEAT):
            await det.heartbeat()
    if not dets:
        return
    await asyncio.sleep(5)
    say(f"detector {dets[0]}: smoke alarm")
    await dets[0].alarm(150)
    await asyncio.sleep(20)
    say(f"detector {dets[0]}: cleared")
    await dets[0].clear()


async def _main(args: argparse.Namespace) -> None:
    rx = ReceiverEmulator(
        args.link, spacing=args.spacing, alarm_repeat=args.alarm_repeat, firmware=args.firmware
    )
    for address, model in args.detector:
        rx.detector(address, model)
    for address, model in args.join:
        rx.joining.append((address, model))
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Leave through ``async with`` so the link is removed, not left dangling.
        loop.add_signal_handler(sig, main.cancel)
    async with rx:
        where = f"SRB-433 emulator on {rx.slave_path}" + (f" (link {rx.link})" if rx.link else "")
        rev = "B" if rx.rev_b else "A"
        print(f"{where}, firmware {version(rx.firmware)} (rev {rev})", flush=True)
        print(f"detectors: {', '.join(map(str, rx.detectors.values())) or 'none'}", flush=True)
        if args.scenario == "demo":
            await _demo(rx, lambda text: print(text, flush=True))
        while True:
            for det in rx.detectors.values():
                if det.address in rx.paired and det.sends(HEARTBEAT):
                    await det.heartbeat()
            await asyncio.sleep(args.heartbeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_stubs.srb433",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--link", help="stable symlink to create for the pty, e.g. /tmp/srb433")
    parser.add_argument(
        "--detector", action="append", default=[], type=detector_arg, help="paired ID[:MODEL]"
    )
    parser.add_argument(
        "--join",
        action="append",
        default=[],
        type=detector_arg,
        help="ID[:MODEL] joining in pair mode",
    )
    parser.add_argument("--scenario", choices=("idle", "demo"), default="idle")
    parser.add_argument(
        "--firmware",
        type=lambda v: int(v, 0),
        default=0x0102,
        help="reported firmware, e.g. 0x0102 (rev A, the default) or 0x0200 (rev B: sound all)",
    )
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between copies")
    parser.add_argument("--alarm-repeat", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=3600.0, help="heartbeat period, s")
    args = parser.parse_args(argv)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
