"""Benchmark: the whole `cryovis membranes` step on a 256x256x128 mask with 4 vesicles.

The mask holds four vesicles (two spheres, two rotated ellipsoids, radii 18-30 voxels, 5
voxels thick) whose missing-wedge caps (normal within 35 degrees of z) are cut away, as a
segmentation of a real tomogram shows them. `cryovis membranes` runs as a user runs it (a
fresh process: reading the MRC, instances, fits, meshes, writing every output),
``--repeats`` times; the baseline, measured in the same run, is a fresh process doing
connected components alone on the same file (read + `scipy.ndimage.label`). Prints the
median times, the RATIO membranes / connected components, and each process's peak
resident memory and CPU time (goal: <= 60 s for the step).

    .venv/bin/python benchmarks/bench_membranes.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from measure import run_cryovis, run_python

BASELINE = ("import sys\n"
            "import numpy as np\n"
            "from scipy import ndimage\n"
            "from formats import read_volume\n"
            "mask = np.asarray(read_volume(sys.argv[1]).data) != 0\n"
            "labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))\n")


def vesicle_mask(shape_zyx=(128, 256, 256), seed: int = 0) -> np.ndarray:
    """Four capless vesicles ``[z, y, x]`` (uint8)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    mask = np.zeros(shape_zyx, dtype=bool)
    specs = [((64, 64, 64), (24, 24, 24)), ((190, 70, 60), (30, 30, 30)),
             ((70, 190, 66), (28, 22, 18)), ((185, 185, 62), (26, 30, 21))]
    for centre, radii in specs:
        rot = Rotation.random(random_state=rng).as_matrix()
        r = np.asarray(radii, float)
        lo = np.maximum(np.asarray(centre)[::-1] - r.max() - 4, 0).astype(int)
        hi = np.minimum(np.asarray(centre)[::-1] + r.max() + 5, shape_zyx).astype(int)
        zz, yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(float)
        p = np.stack([xx, yy, zz], -1) - centre
        q = p @ rot / r
        rho = np.linalg.norm(q, axis=-1)
        grad = (q / r / np.maximum(rho, 1e-9)[..., None]) @ rot.T
        g = np.linalg.norm(grad, axis=-1)
        shell = np.abs((rho - 1) / np.maximum(g, 1e-12)) <= 2
        shell &= np.abs(grad[..., 2] / np.maximum(g, 1e-12)) < np.cos(np.deg2rad(35))
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= shell
    return mask.astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from formats import Volume, write_volume

    times: dict[str, list[float]] = {"membranes": [], "components": []}
    cpu: dict[str, list[float]] = {"membranes": [], "components": []}
    memory: dict[str, list[float]] = {"membranes": [], "components": []}
    with tempfile.TemporaryDirectory() as tmp:
        mask = Path(tmp) / "bench_mask.mrc"
        write_volume(mask, Volume(vesicle_mask(), voxel_size=10.0))
        summary = None
        for i in range(args.repeats):
            m = run_python(BASELINE, [str(mask)])
            s, mib, c = m.seconds, m.peak_mib, m.cpu_seconds
            times["components"].append(s)
            cpu["components"].append(c)
            memory["components"].append(mib)
            m = run_cryovis(["membranes", str(mask), "--out", str(Path(tmp) / "out"),
                             "--force", "--json", "--threads", "1"])
            s, mib, out, c = m.seconds, m.peak_mib, m.stdout, m.cpu_seconds
            times["membranes"].append(s)
            cpu["membranes"].append(c)
            memory["membranes"].append(mib)
            summary = json.loads(out)
            print(f"run {i + 1}: membranes {s:.1f} s ({c:.1f} CPU s, peak RSS {mib:.0f} MiB), "
                  f"connected components {times['components'][-1]:.1f} s", flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {"size_xyz": [256, 256, 128], "vesicles": 4, "median_s": med,
              "median_cpu_s": {k: float(np.median(v)) for k, v in cpu.items()},
              "ratio_membranes_over_components": med["membranes"] / med["components"],
              "peak_rss_mib": {k: max(v) for k, v in memory.items()},
              "instances": summary["info"]["instances"], "closed": summary["info"]["closed"],
              "models": [r["model"] for r in summary["membranes"]]}
    print(json.dumps(result, indent=2))
    print(f"RATIO membranes / connected components: "
          f"{result['ratio_membranes_over_components']:.1f} ({med['membranes']:.1f} s vs "
          f"{med['components']:.2f} s; goal <= 60 s for the step; CPU "
          f"{result['median_cpu_s']['membranes']:.1f} s); peak memory "
          f"{result['peak_rss_mib']['membranes']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
