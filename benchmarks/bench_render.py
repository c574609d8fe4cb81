"""Benchmark `cryovis render` on a 4-class 256x256x128 volume (x, y, z voxels).

Measures the one-off precompute (raw low-pass + Algorithm 1 thresholds, then per-voxel
classification + ambient occlusion + soft shadows) and the time of further frames at 512x512
and 1920x1080 for both backends, against the goals of issue 5 (precompute <= 20 s, a further
frame <= 1 s at 512x512 and <= 3 s at 1920x1080 on a 2-core CPU) and against a baseline measured
in the same run: a plain maximum intensity projection of the same volume and size.

Frames sample the volume at its own resolution (one ray per voxel across the view, one sample
per slice crossed) and the intermediate image is upsampled to the output size by the final warp.

Run: .venv/bin/python benchmarks/bench_render.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

GOAL_PRECOMPUTE_S = 20.0
GOAL_FRAME_S = {(512, 512): 1.0, (1920, 1080): 3.0}
AZIMUTHS = (20.0, 65.0, 110.0, 155.0)  # views whose principal axes differ (z and x)


def phantom(shape=(128, 256, 256), seed=0):
    """A noisy tomogram ``[z, y, x]`` and four soft class maps: membrane, lumen, particles,
    filaments (smoothed binary shapes; the raw data is dark where density is)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    membrane = np.zeros(shape, bool)
    lumen = np.zeros(shape, bool)
    for cx, cy, cz, r in ((85, 95, 64, 50), (180, 165, 62, 46)):
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
        membrane |= np.abs(d - r) < 2.0
        lumen |= d < r - 3
    particles = np.zeros(shape, bool)
    for _ in range(60):
        cx, cy, cz = rng.uniform(8, shape[2] - 8), rng.uniform(8, shape[1] - 8), rng.uniform(
            8, shape[0] - 8)
        particles |= (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < 20
    filaments = np.zeros(shape, bool)
    for _ in range(4):
        y0, z0 = rng.uniform(20, shape[1] - 20), rng.uniform(20, shape[0] - 20)
        filaments |= (y - y0 - 0.3 * (x - 128)) ** 2 + (z - z0) ** 2 < 6
    density = (membrane | particles | filaments).astype(np.float32) + 0.3 * lumen
    raw = -ndimage.gaussian_filter(density, 1.0) + rng.normal(0, 0.8, shape).astype(np.float32)
    soft = [np.clip(ndimage.gaussian_filter(m.astype(np.float32), 1.2) * 1.4, 0, 1)
            for m in (membrane, lumen, particles, filaments)]
    soft[1] *= 0.6
    return raw.astype(np.float32), soft


def timed(fn, *args) -> float:
    """Seconds taken by ``fn(*args)``."""
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one view per size")
    parser.add_argument("--torch-threads", default="1,2",
                        help="torch thread counts to measure, comma-separated (default 1,2)")
    args = parser.parse_args()
    from cryoet_integration.rendering import Camera, RenderSettings, Scene

    backends = [("numpy", 0)]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        backends += [("torch", int(n)) for n in args.torch_threads.split(",")]
    azimuths = AZIMUTHS[:1] if args.quick else AZIMUTHS
    raw, soft = phantom()
    print(f"volume {raw.shape[::-1]} (x, y, z voxels), {len(soft)} classes")
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} cores")
    names = ["membrane", "lumen", "particles", "filaments"]
    for backend, threads in backends:
        if threads:
            torch.set_num_threads(threads)
        label = f"{backend}, {threads} thread{'s' * (threads > 1)}" if threads else backend
        t = time.perf_counter()
        scene = Scene(raw, soft, RenderSettings(backend=backend), names=names)
        t_prep = time.perf_counter() - t
        t = time.perf_counter()
        scene.stack("ours")
        t_illum = time.perf_counter() - t
        scene.stack("mip")
        pre = t_prep + t_illum
        print(f"\n[{label}] precompute {pre:.2f} s (low-pass + thresholds {t_prep:.2f} s, "
              f"classification + AO + shadows {t_illum:.2f} s): "
              f"ratio to goal {pre / GOAL_PRECOMPUTE_S:.2f} (goal {GOAL_PRECOMPUTE_S:.0f} s)")
        thresholds = ", ".join(f"{n}={v:.3f}" for n, v in zip(scene.names, scene.thresholds))
        print(f"  thresholds: {thresholds}")
        first = timed(scene.render, Camera(512, 512, azimuth=azimuths[0], elevation=25.0), "ours")
        print(f"  first 512x512 frame (builds the slice-major copy for its axis): {first:.3f} s")
        for size, goal in GOAL_FRAME_S.items():
            frames, mips = [], []
            for az in azimuths:
                cam = Camera(size[0], size[1], azimuth=az, elevation=25.0)
                scene.render(cam, "ours")  # the first view of an axis builds its copy
                scene.render(cam, "mip")
                frames.append(timed(scene.render, cam, "ours"))
                mips.append(timed(scene.render, cam, "mip"))
            f, m = statistics.median(frames), statistics.median(mips)
            print(f"  {size[0]}x{size[1]}: further frame median {f:.3f} s "
                  f"(min {min(frames):.3f}, max {max(frames):.3f}) -> ratio to goal "
                  f"{f / goal:.2f} (goal {goal:.0f} s); plain MIP baseline {m:.3f} s -> "
                  f"ours/MIP {f / m:.2f}")


if __name__ == "__main__":
    main()
