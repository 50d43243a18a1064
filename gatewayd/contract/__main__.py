"""``python -m gatewayd.contract [--check] [DIR]``: write the generated contract into DIR
(docs/contract by default), or with ``--check`` say which files differ from what the installed
families generate now (exit 1), writing nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatewayd.contract import build, render


def stale(out: Path) -> list[str]:
    """The generated files whose checked-in text differs (or is missing)."""
    found = []
    for name, doc in build().items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(doc):
            found.append(name)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gatewayd.contract", description=__doc__)
    ap.add_argument("dir", nargs="?", default="docs/contract", help="where the contract lives")
    ap.add_argument("--check", action="store_true", help="compare, write nothing")
    args = ap.parse_args(argv)
    out = Path(args.dir)
    if args.check:
        old = stale(out)
        for name in old:
            print(f"{out / name}: not what the installed families generate", file=sys.stderr)
        if old:
            print("regenerate with: make contract", file=sys.stderr)
        return 1 if old else 0
    for name, doc in build().items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc), encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
