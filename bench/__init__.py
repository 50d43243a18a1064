"""The benchmark harness: `make bench` (or `python -m bench`) runs every bench_*.py module.

Each module offers ``run(quick: bool) -> list[dict]``; a row names the figure, its value, the
baseline measured side by side in the same run, their ratio and the target. Results go to
bench/results/latest.json and into the table of docs/benchmarks.md.
"""
