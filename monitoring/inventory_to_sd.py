#!/usr/bin/env python3
"""Turn the installers' gateway inventory (CSV) into Prometheus file_sd targets (JSON).

    inventory_to_sd.py inventory.csv -o /etc/prometheus/targets/gatewayd.json [--port 9108]

The CSV has a header row with at least ``gateway_id,address,village,township`` (extra
columns are ignored; a spreadsheet's UTF-8 BOM is fine). ``address`` is the gateway's VPN
address, ``host`` or ``host:port`` (``[v6]:port`` for IPv6); the port defaults to the
gateway's ``[metrics] listen`` port. Each gateway becomes one target group labelled
``gateway``, ``village`` and ``township``: the labels every alert, roll-up and dashboard uses.

The output is written atomically (Prometheus re-reads the file when it changes, and must
never see half of it). Every problem is reported with its line number and nothing is
written, so a bad edit never empties the monitoring centre's view. Standard library only: it
runs on the monitoring server, where gatewayd is not installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from typing import Any

REQUIRED = ("gateway_id", "address", "village", "township")
DEFAULT_PORT = 9108
# The same rule as gateway.toml's [gateway] id (gatewayd/config_schema.py ID_PATTERN).
ID_RX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
HOST_RX = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*")


class InventoryError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def target(address: str, port: int) -> str | None:
    """``host[:port]`` -> ``host:port``; None if it is not an address."""
    host, sep, tail = address.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):  # no port, or bare IPv6
        host, tail = address, str(port)
    if not HOST_RX.fullmatch(host) or not tail.isdigit() or not 0 < int(tail) < 65536:
        return None
    return f"{host}:{int(tail)}"


def groups(
    rows: Iterable[dict[str, str]], port: int = DEFAULT_PORT, source: str = "inventory"
) -> list[dict[str, Any]]:
    """The file_sd target groups for ``rows``; raises InventoryError listing every problem."""
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    seen_targets: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        values = {k: (row.get(k) or "").strip() for k in REQUIRED}
        if not any(values.values()):
            continue  # a blank line
        where = f"{source}:{line}"
        missing = [k for k in REQUIRED if not values[k]]
        if missing:
            problems.append(f"{where}: empty {', '.join(missing)}")
            continue
        gid = values["gateway_id"]
        addr = target(values["address"], port)
        if not ID_RX.fullmatch(gid):
            problems.append(
                f"{where}: gateway_id {gid!r} is not a gateway id (letters A-Z a-z, digits, _ -)"
            )
        if addr is None:
            problems.append(f"{where}: address {values['address']!r} is not host or host:port")
        if gid in seen_ids:
            problems.append(f"{where}: gateway_id {gid} is on line {seen_ids[gid]} already")
        if addr is not None and addr in seen_targets:
            problems.append(f"{where}: address {addr} is on line {seen_targets[addr]} already")
        seen_ids.setdefault(gid, line)
        if addr is not None:
            seen_targets.setdefault(addr, line)
            labels = {"gateway": gid, "village": values["village"], "township": values["township"]}
            out.append({"targets": [addr], "labels": labels})
    if problems:
        raise InventoryError(problems)
    out.sort(
        key=lambda g: (g["labels"]["township"], g["labels"]["village"], g["labels"]["gateway"])
    )
    return out


def read(path: str, port: int = DEFAULT_PORT) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        absent = [k for k in REQUIRED if k not in (reader.fieldnames or [])]
        if absent:
            raise InventoryError([f"{path}:1: the header lacks {', '.join(absent)}"])
        return groups(reader, port, path)


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".inventory-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inventory", help="the inventory CSV")
    ap.add_argument("-o", "--output", help="file_sd JSON to write (default: standard output)")
    ap.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="metrics port when an address has none"
    )
    args = ap.parse_args(argv)
    try:
        sd = read(args.inventory, args.port)
    except InventoryError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.inventory}: {exc.strerror}", file=sys.stderr)
        return 2
    text = json.dumps(sd, ensure_ascii=False, indent=1) + "\n"
    if args.output:
        write_atomically(args.output, text)
        villages = {(g["labels"]["township"], g["labels"]["village"]) for g in sd}
        print(f"{args.output}: {len(sd)} gateways in {len(villages)} villages", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
