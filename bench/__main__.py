"""Run the benchmarks and record them: `python -m bench [--quick] [--only core,srb433]`."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
import traceback
from typing import Any

from bench.common import REPO

RESULTS = REPO / "bench" / "results" / "latest.json"
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# Modules that run only when named in --only: they take longer than the whole default run.
OPT_IN = {"fleet_cluster"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sample sizes (a smoke test)")
    ap.add_argument("--only", default="", help="comma-separated module suffixes, e.g. core,srb433")
    args = ap.parse_args()
    names = sorted(p.stem.removeprefix("bench_") for p in (REPO / "bench").glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    else:
        names = [n for n in names if n not in OPT_IN]
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"modules": {}}
    for name in names:
        print(f"== bench {name}", flush=True)
        t0 = time.perf_counter()
        try:
            rows = importlib.import_module(f"bench.bench_{name}").run(args.quick)
        except Exception:
            traceback.print_exc()
            rows = [
                {
                    "name": f"{name}: FAILED",
                    "value": None,
                    "unit": "",
                    "baseline": "",
                    "baseline_value": None,
                    "ratio": None,
                    "target": "",
                    "ok": False,
                }
            ]
        for r in rows:
            print(
                f"  {r['name']}: {r['value']} {r['unit']}  (baseline {r['baseline_value']}, ratio {r['ratio']}, "
                f"target {r['target']}, {'ok' if r['ok'] else 'MISSED' if r['ok'] is False else '-'})",
                flush=True,
            )
        previous["modules"][name] = {
            "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1),
            "quick": args.quick,
            "when": time.strftime("%Y-%m-%d %H:%M"),
        }
    previous["machine"] = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=1, ensure_ascii=False) + "\n")
    write_doc(previous)


def write_doc(results: dict[str, Any]) -> None:
    lines = [BEGIN, "", f"Machine: {results.get('machine', '?')}.", ""]
    lines.append("| module | figure | value | baseline (same run) | ratio | target | met |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, mod in sorted(results["modules"].items()):
        for r in mod["rows"]:
            base = f"{r['baseline']}: {r['baseline_value']}" if r["baseline"] else ""
            met = {True: "yes", False: "**no**", None: "-"}[r["ok"]]
            ratio = "" if r["ratio"] is None else f"{r['ratio']}"
            lines.append(
                f"| {name} ({mod['when']}{', quick' if mod['quick'] else ''}) | {r['name']} | "
                f"{r['value']} {r['unit']} | {base} | {ratio} | {r['target']} | {met} |"
            )
    lines += ["", END]
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n" + BEGIN + "\n" + END + "\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + "\n".join(lines) + tail)


if __name__ == "__main__":
    main()
