"""Run the benchmarks: every ``benchmarks/bench_*.py``, or the ones named.

Usage::

    .venv/bin/python benchmarks/run.py                 # all of them, one after the other
    .venv/bin/python benchmarks/run.py convert render  # bench_convert.py, bench_render.py
    .venv/bin/python benchmarks/run.py --list

Each benchmark runs as its own process with this Python (so one cannot disturb another's
timing or memory), its output is shown as it comes, and a summary table of exit status
and wall time closes the run. The exit status is non-zero if any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> dict[str, Path]:
    """``{short name: script}`` for every bench_*.py beside this file."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; returns 0 when all exit 0."""
    parser = argparse.ArgumentParser(description="run cryovis benchmarks")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    found = discover()
    if args.list:
        print("\n".join(f"{name:12s} {path.name}" for name, path in found.items()))
        return 0
    wanted = [n.removeprefix("bench_").removesuffix(".py") for n in args.names] or list(found)
    unknown = [n for n in wanted if n not in found]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(found)}", file=sys.stderr)
        return 2
    results = []
    for name in wanted:
        print(f"=== {name} ({found[name].name})", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(found[name])], cwd=HERE.parent)
        results.append((name, code, time.perf_counter() - start))
    print("=== summary")
    for name, code, seconds in results:
        print(f"{name:12s} {'ok' if code == 0 else f'FAILED ({code})':12s} {seconds:8.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
