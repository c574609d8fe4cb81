"""Benchmark: 1,000,000 particles RELION 5 STAR -> Dynamo .tbl and back, end to end.

Each conversion runs through the real command line (``cryovis convert``: read, convert
conventions, write) and is timed against ``starfile.read`` of the same STAR file in the
same run; the goal is each conversion within 3x of that bare read. Also reports our STAR
reader alone against starfile.read, and our STAR writer against starfile.write of the same
blocks (``--no-write-baseline`` skips that ~30 s measurement).

Run: ``.venv/bin/python benchmarks/bench_convert.py [--n 1000000] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryoet_integration.cli import main  # noqa: E402
from formats import (  # noqa: E402
    orientations,
    read_particles,
    read_star,
    write_star,
    write_tomograms,
)

TOMOS = ["TS_01", "TS_03", "TS_43", "TS_45", "TS_54"]
SIZE = (4000.0, 4000.0, 2000.0)
TS_PX = 1.35


def make_inputs(workdir: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """A RELION 5 particles STAR (n particles, tutorial-like columns) and tomograms.star."""
    rng = np.random.default_rng(seed)
    tomos = pd.DataFrame({"tomo_name": TOMOS, "size_x": SIZE[0], "size_y": SIZE[1],
                          "size_z": SIZE[2], "tilt_series_pixel_size": TS_PX,
                          "binning": 7.407407})
    tomo_path = workdir / "tomograms.star"
    write_tomograms(tomo_path, tomos, overwrite=True)
    names = np.array(TOMOS)[rng.integers(0, len(TOMOS), n)]
    half = np.array(SIZE) / 2 * TS_PX
    particles = pd.DataFrame({
        "rlnTomoName": names,
        "rlnTomoSubtomogramRot": rng.uniform(-180, 180, n),
        "rlnTomoSubtomogramTilt": rng.uniform(0, 180, n),
        "rlnTomoSubtomogramPsi": rng.uniform(-180, 180, n),
        "rlnAngleRot": rng.uniform(-180, 180, n),
        "rlnAngleTilt": rng.uniform(0, 180, n),
        "rlnAnglePsi": rng.uniform(-180, 180, n),
        "rlnOpticsGroup": 1,
        "rlnTomoParticleName": [f"{t}/{i}" for i, t in enumerate(names)],
        "rlnOriginXAngst": rng.normal(0, 2, n),
        "rlnOriginYAngst": rng.normal(0, 2, n),
        "rlnOriginZAngst": rng.normal(0, 2, n),
        "rlnCenteredCoordinateXAngst": rng.uniform(-half[0], half[0], n),
        "rlnCenteredCoordinateYAngst": rng.uniform(-half[1], half[1], n),
        "rlnCenteredCoordinateZAngst": rng.uniform(-half[2], half[2], n),
        "rlnClassNumber": rng.integers(1, 4, n),
        "rlnRandomSubset": rng.integers(1, 3, n),
    })
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["optics1"],
                           "rlnTomoTiltSeriesPixelSize": [TS_PX],
                           "rlnTomoSubtomogramBinning": [1.0], "rlnImagePixelSize": [TS_PX],
                           "rlnImageSize": [192], "rlnImageDimensionality": [2]})
    star_path = workdir / "run_data.star"
    write_star(star_path, {"general": {"rlnTomoSubTomosAre2DStacks": 1}, "optics": optics,
                           "particles": particles}, overwrite=True, version="50001")
    return star_path, tomo_path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cli(*args: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    if code != 0:
        raise SystemExit(f"cryovis {' '.join(args)} failed with {code}")


def run(n: int, workdir: Path, write_baseline: bool = True) -> dict[str, float]:
    """Time the bare read and both conversions; returns the measured seconds and ratios."""
    import starfile

    t_make = timed(lambda: make_inputs(workdir, n))
    star_path, tomo_path = workdir / "run_data.star", workdir / "tomograms.star"
    size_mb = star_path.stat().st_size / 1e6
    t_starfile = timed(lambda: starfile.read(star_path))
    t_ours = timed(lambda: read_star(star_path))
    writes = {}
    if write_baseline:
        blocks = read_star(star_path)
        writes["starfile_write"] = timed(lambda: starfile.write(
            blocks, workdir / "sf_write.star", overwrite=True))
        writes["our_star_write"] = timed(lambda: write_star(
            workdir / "our_write.star", blocks, overwrite=True, version="50001"))
    tbl, back = workdir / "particles.tbl", workdir / "back.star"
    t_fwd = timed(lambda: cli("convert", str(star_path), str(tbl), "--to", "dynamo",
                              "--tomograms", str(tomo_path), "--force"))
    t_back = timed(lambda: cli("convert", str(tbl), str(back), "--to", "relion5",
                               "--tomograms", str(tomo_path), "--force"))
    a = read_particles(star_path, tomograms=tomo_path)
    b = read_particles(back, tomograms=tomo_path)
    pos_err = float(np.abs(a[["x_angst", "y_angst", "z_angst"]].to_numpy()
                           - b[["x_angst", "y_angst", "z_angst"]].to_numpy()).max())
    rot_err = float(np.abs(orientations(a) - orientations(b)).max())
    return {**writes, "n": n, "star_mb": size_mb, "make": t_make, "starfile_read": t_starfile,
            "our_star_read": t_ours, "relion5_to_dynamo": t_fwd, "dynamo_to_relion5": t_back,
            "ratio_fwd": t_fwd / t_starfile, "ratio_back": t_back / t_starfile,
            "ratio_reader": t_ours / t_starfile, "pos_err_A": pos_err, "rot_err": rot_err}


def main_bench(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of particles")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--no-write-baseline", action="store_true",
                        help="skip timing starfile.write against our STAR writer")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cryovis_bench_convert_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        r = run(args.n, workdir, write_baseline=not args.no_write_baseline)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"bench_convert: {r['n']:,} particles, RELION 5 STAR {r['star_mb']:.0f} MB "
          f"(generated in {r['make']:.1f} s)")
    print(f"  baseline starfile.read            {r['starfile_read']:7.2f} s")
    print(f"  cryovis STAR reader alone         {r['our_star_read']:7.2f} s   "
          f"RATIO {r['ratio_reader']:.2f}x")
    if "starfile_write" in r:
        print(f"  starfile.write (same blocks)      {r['starfile_write']:7.2f} s")
        print(f"  cryovis STAR writer               {r['our_star_write']:7.2f} s   "
              f"RATIO {r['our_star_write'] / r['starfile_write']:.2f}x of starfile.write")
    print(f"  convert RELION 5 -> Dynamo .tbl   {r['relion5_to_dynamo']:7.2f} s   "
          f"RATIO {r['ratio_fwd']:.2f}x (goal <= 3x)")
    print(f"  convert Dynamo .tbl -> RELION 5   {r['dynamo_to_relion5']:7.2f} s   "
          f"RATIO {r['ratio_back']:.2f}x (goal <= 3x)")
    print(f"  round trip: max position error {r['pos_err_A']:.2e} Å, "
          f"max matrix error {r['rot_err']:.2e}")
    ok = r["ratio_fwd"] <= 3 and r["ratio_back"] <= 3 and r["pos_err_A"] < 1e-3 \
        and r["rot_err"] < 1e-4
    print("  goal met" if ok else "  GOAL NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_bench())
