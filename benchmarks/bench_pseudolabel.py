"""Pseudo-labelling speed and memory on a 256x256x128 simulated tomogram (3 classes).

    .venv/bin/python benchmarks/bench_pseudolabel.py [--threads N] [--work DIR]

(a) ``cryovis pseudolabel`` from strokes (~0.2 % of the voxels): feature bank on z-slabs,
    forest training, slab-wise prediction, EM prior correction; wall time, time per voxel
    and peak resident memory, in its own process.
(b) applying the saved forest (``--classifier``) slab by slab, against the baseline
    measured in this run: (c) the same features on the whole volume at once (no slabs) and
    the same forest on all of them; the ratios (b)/(c) show what slabbing costs in time and
    saves in memory.
The paper (Nano-Ötzi, section 4.2) needed 1.5-4 h per full-size tomogram in ilastik; the
per-voxel figure here is what to compare, given its volume size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE_XYZ = (256, 256, 128)


def make_inputs(work: Path) -> tuple[Path, Path]:
    """The simulated tomogram and its strokes (painted from the truth)."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from formats import Volume, write_volume
    from validation.strong_pseudolabel import paint_strokes, truth_labels

    tomo, strokes = work / "bench_pl_tomo.mrc", work / "bench_pl_strokes.mrc"
    if not strokes.exists():
        sim = simulate_tomogram(seed=888, size_xyz=SIZE_XYZ,
                                config=SimulationConfig.randomised(888))
        write_volume(tomo, sim.tomogram, overwrite=True)
        painted = paint_strokes(truth_labels(sim.labels), 800)
        write_volume(strokes, Volume(painted, voxel_size=sim.tomogram.voxel_size),
                     overwrite=True)
    return tomo, strokes


def run_measured(code: str, threads: int) -> dict:
    """``code`` in a fresh interpreter: wall seconds and the child's own peak RSS (MB)."""
    wrapper = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + code + textwrap.dedent("""
        import json
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
        print("BENCH", json.dumps({"peak_mb": int(hwm.split()[1]) / 1024}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                          env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    return {"seconds": round(seconds, 1), **json.loads(line[6:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=None, help="folder for inputs/outputs (default tmp)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_pl_"))
    work.mkdir(parents=True, exist_ok=True)
    tomo, strokes = make_inputs(work)
    voxels = SIZE_XYZ[0] * SIZE_XYZ[1] * SIZE_XYZ[2]
    ours = run_measured(textwrap.dedent(f"""
        from cryoet_integration.cli import main
        assert main(["pseudolabel", {str(tomo)!r}, "--labels", {str(strokes)!r}, "--out",
                     {str(work / "soft.mrc")!r}, "--save-classifier",
                     {str(work / "weak.npz")!r}, "--threads", "{args.threads}",
                     "--force"]) == 0
    """), args.threads)
    slabs = run_measured(textwrap.dedent(f"""
        from cryoet_integration.cli import main
        assert main(["pseudolabel", {str(tomo)!r}, "--classifier", {str(work / "weak.npz")!r},
                     "--out", {str(work / "soft2.mrc")!r}, "--threads", "{args.threads}",
                     "--force"]) == 0
    """), args.threads)
    baseline = run_measured(textwrap.dedent(f"""
        import numpy as np
        from formats import read_volume
        from cryoet_integration.pseudolabel.features import compute_features
        from cryoet_integration.pseudolabel.forest import load_forest
        from cryoet_integration.pseudolabel.weak import prepare_image
        forest = load_forest({str(work / "weak.npz")!r})
        x = compute_features(prepare_image(read_volume({str(tomo)!r})), forest.scales)
        proba = forest.predict_proba(x, {args.threads})
        assert proba.shape == ({voxels}, 3)
    """), args.threads)
    result = {
        "size_xyz": list(SIZE_XYZ), "voxels": voxels, "threads": args.threads,
        "pseudolabel": {**ours, "us_per_voxel": round(ours["seconds"] / voxels * 1e6, 2)},
        "classify_slabs": {**slabs, "us_per_voxel": round(slabs["seconds"] / voxels * 1e6, 2)},
        "whole_volume_baseline": {**baseline,
                                  "us_per_voxel": round(baseline["seconds"] / voxels * 1e6,
                                                        2)},
        "time_ratio": round(slabs["seconds"] / baseline["seconds"], 3),
        "memory_ratio": round(slabs["peak_mb"] / baseline["peak_mb"], 3),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    print(f"pseudolabel (train + classify) {ours['seconds']} s, "
          f"{result['pseudolabel']['us_per_voxel']} µs/voxel, peak {ours['peak_mb']:.0f} MB; "
          f"classify in slabs {slabs['seconds']} s, peak {slabs['peak_mb']:.0f} MB vs "
          f"whole-volume baseline {baseline['seconds']} s, peak {baseline['peak_mb']:.0f} MB: "
          f"ratios time {result['time_ratio']}, memory {result['memory_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
