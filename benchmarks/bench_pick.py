"""Benchmark: the learned picker end to end vs `cryovis segment` on the same tomogram.

Both commands run as the user runs them (a fresh `cryovis` process each: reading the MRC,
loading the model, inference, writing the output), alternating, ``--repeats`` times; the
median wall-clock times give the ratio picker / segment (goal <= 1.5, and <= 60 s), and
each process reports its own peak resident memory.

    .venv/bin/python benchmarks/bench_pick.py [--tomogram T.mrc] [--model MODEL]

Without ``--tomogram`` a 256x256x128 tomogram at 10 Å (SHREC-like fixed conditions) is
simulated once into the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from measure import run_cryovis


def bench_tomogram(cache: Path) -> Path:
    from cryoet_integration.picking.recipes import simulate_cached

    return simulate_cached(cache, "bench_pick_7", 7, [256, 256, 128], randomised=False)["tomogram"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tomogram", default=None)
    parser.add_argument("--model", default=None, help="picker model (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default=str(Path.home() / ".cache/cryovis/bench"))
    args = parser.parse_args()
    tomo = Path(args.tomogram) if args.tomogram else bench_tomogram(Path(args.cache))
    pick_extra = ["--model", args.model] if args.model else []
    times: dict[str, list[float]] = {"segment": [], "pick": []}
    memory: dict[str, list[float]] = {"segment": [], "pick": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, cmd in (("segment", ["segment", str(tomo), "--out", f"{tmp}/s{i}.mrc"]),
                              ("pick", ["pick", str(tomo), "--out", f"{tmp}/p{i}.csv",
                                        *pick_extra])):
                m = run_cryovis(cmd)
                s, mib = m.seconds, m.peak_mib
                times[name].append(s)
                memory[name].append(mib)
                print(f"{name} run {i + 1}: {s:.1f} s, peak RSS {mib:.0f} MiB", flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {"tomogram": str(tomo), "segment_s": med["segment"], "pick_s": med["pick"],
              "ratio_pick_over_segment": med["pick"] / med["segment"],
              "peak_rss_mib": {k: max(v) for k, v in memory.items()},
              "goals": {"ratio": 1.5, "pick_s": 60.0}}
    print(json.dumps(result))
    print(f"\npicker {med['pick']:.1f} s vs segment {med['segment']:.1f} s: ratio "
          f"{result['ratio_pick_over_segment']:.2f} (goal <= 1.5); picker peak memory "
          f"{result['peak_rss_mib']['pick']:.0f} MiB (segment "
          f"{result['peak_rss_mib']['segment']:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
