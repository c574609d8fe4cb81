"""Benchmark: `cryovis extract` of 10,000 particles (box 48) from a 1024x1024x512 float32
tomogram (2 GiB, memory-mapped), against one plain pass over the same tomogram.

Both run as the user runs them (a fresh `cryovis` process each):

* extract: ``cryovis extract TOMO picks.csv --box 48 --normalise --tilt-range -60 60``
  (RELION 3.1 STAR + 10,000 MRC files + the wedge weight);
* baseline: ``cryovis convert TOMO copy.mrc`` (read the tomogram once, write it once).

Reported: wall time of each and their ratio, and each process's peak RSS against the
tomogram's size (goal for extract: <= 25 %). The tomogram (noise) and the picks (random
sub-voxel positions and orientations) are made in a temporary folder first; the file is in
the page cache for both commands (the first run reads it warm, like the baseline).

    .venv/bin/python benchmarks/bench_extract.py [--n 10000] [--box 48] [--size 1024x1024x512]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import run_cryovis


def make_tomogram(path: Path, size_xyz: tuple[int, int, int], voxel_size: float) -> None:
    """A float32 noise tomogram written slab by slab (never whole in this process)."""
    import mrcfile

    nx, ny, nz = size_xyz
    rng = np.random.default_rng(0)
    with mrcfile.new_mmap(str(path), shape=(nz, ny, nx), mrc_mode=2, overwrite=True) as mrc:
        mrc.voxel_size = voxel_size
        for z in range(0, nz, 16):
            n = min(16, nz - z)
            mrc.data[z:z + n] = rng.standard_normal((n, ny, nx), dtype=np.float32)
        mrc.update_header_stats()


def make_picks(path: Path, n: int, size_xyz: tuple[int, int, int], box: int) -> None:
    """``n`` picks at random sub-voxel positions (boxes inside) with random RELION angles."""
    rng = np.random.default_rng(1)
    half = box / 2 + 1
    xyz = rng.uniform(half, np.asarray(size_xyz) - half, size=(n, 3))
    angles = np.column_stack([rng.uniform(-180, 180, n), np.degrees(np.arccos(
        rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)])
    rows = [",".join(f"{v:.3f}" for v in (*p, *a)) for p, a in zip(xyz, angles)]
    path.write_text("x,y,z,rot,tilt,psi\n" + "\n".join(rows) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--box", type=int, default=48)
    parser.add_argument("--size", default="1024x1024x512", help="XxYxZ voxels")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp)
        tomo, picks = folder / "tomo.mrc", folder / "picks.csv"
        t0 = time.perf_counter()
        make_tomogram(tomo, size, 10.0)
        make_picks(picks, args.n, size, args.box)
        tomo_mib = tomo.stat().st_size / 2**20
        print(f"made {tomo} ({tomo_mib:.0f} MiB) and {args.n} picks in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        base = run_cryovis(["convert", str(tomo), str(folder / "copy.mrc")])
        base_s, base_mib = base.seconds, base.peak_mib
        (folder / "copy.mrc").unlink()
        print(f"baseline convert: {base_s:.1f} s, peak RSS {base_mib:.0f} MiB", flush=True)
        ext = run_cryovis(["extract", str(tomo), str(picks), "--box", str(args.box),
                           "--out", str(folder / "subtomos"), "--normalise",
                           "--tilt-range", "-60", "60"])
        ext_s, ext_mib = ext.seconds, ext.peak_mib
        written = len(list((folder / "subtomos").glob("subtomo_*.mrc")))
        print(f"extract: {ext_s:.1f} s, peak RSS {ext_mib:.0f} MiB, {written} subtomograms",
              flush=True)
    result = {"size_xyz": list(size), "tomogram_mib": tomo_mib, "n": args.n, "box": args.box,
              "extract_s": ext_s, "baseline_convert_s": base_s,
              "ratio_extract_over_convert": ext_s / base_s,
              "extract_peak_rss_mib": ext_mib, "baseline_peak_rss_mib": base_mib,
              "extract_rss_fraction_of_tomogram": ext_mib / tomo_mib,
              "goals": {"extract_rss_fraction_of_tomogram": 0.25}}
    print(json.dumps(result))
    print(f"\nextract {ext_s:.1f} s vs one convert pass {base_s:.1f} s: ratio "
          f"{result['ratio_extract_over_convert']:.2f}; extract peak RSS {ext_mib:.0f} MiB = "
          f"{100 * ext_mib / tomo_mib:.1f} % of the {tomo_mib:.0f} MiB tomogram (goal <= 25 %; "
          f"convert {base_mib:.0f} MiB)")
    return 0 if written == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
