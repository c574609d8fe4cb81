"""Regenerate the rendering figures of docs/rendering.md into docs/images/.

A tomogram is simulated with ``cryoet_integration.simulate`` (256 x 256 x 128 voxels at 10 Å,
three vesicles and a sheet, SHREC-like microscope). The soft class maps are NOT a network's
output: they are the simulator's ground-truth labels blurred into soft probabilities
(Gaussian, sigma 1 voxel, scaled by 1.5 and clipped to [0, 1]), standing in for a trained
segmentation. The same data are shown as a raw slice, plain DVR and MIP of the low-passed data
(the paper's Figure 9), our rendering, its build-up (the paper's Figure 7), the uncertainty
display, and the Algorithm 1 histogram of the membrane class.

Run: .venv/bin/python docs/make_renders.py [--out docs/images] [--seed 7]   (about 1 minute)
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

CLASSES = [("membrane", [1]), ("ribosome", [2]), ("other complexes", [3, 4, 5, 6, 7, 8]),
           ("gold", [9])]
SIZE = (960, 540)


def soft_maps(labels: np.ndarray) -> list[np.ndarray]:
    """Ground-truth labels to soft per-class probabilities (see the module docstring)."""
    from scipy import ndimage

    return [np.clip(ndimage.gaussian_filter(np.isin(labels, ids).astype(np.float32), 1.0) * 1.5,
                    0.0, 1.0) for _, ids in CLASSES]


def raw_slice(tomo: np.ndarray) -> np.ndarray:
    """The central z slice, y up, contrast 1-99 percentiles, as uint8 (dense = dark)."""
    s = tomo[tomo.shape[0] // 2][::-1].astype(np.float32)
    lo, hi = np.percentile(s, (1, 99))
    return (np.clip((s - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def panel_figure(path: Path, images: list[np.ndarray], titles: list[str], cols: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = -(-len(images) // cols)
    fig = Figure(figsize=(4.8 * cols, 3.0 * rows), dpi=100, facecolor="white",
                 layout="constrained")
    for i, (img, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.savefig(path, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "images"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from cryoet_integration.rendering import Camera, RenderSettings, Scene, write_png
    from cryoet_integration.rendering.transfer import write_histogram_png
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(SimulationConfig(), n_vesicles=3, crowding=0.06)
    sim = simulate_tomogram(seed=args.seed, size_xyz=(256, 256, 128), config=config)
    tomo = np.asarray(sim.tomogram.data)
    soft = soft_maps(sim.labels)
    names = [n for n, _ in CLASSES]
    colors = ["skyblue", "orange", "bluishgreen", "reddishpurple"]
    scene = Scene(tomo, soft, RenderSettings(colors=colors), names=names)
    camera = Camera(*SIZE, azimuth=25.0, elevation=35.0, zoom=1.3)

    images = {"raw_slice": raw_slice(tomo)}
    for mode in ("dvr", "mip", "ours"):
        images[mode] = scene.render(camera, mode)
    persp = dataclasses.replace(camera, projection="perspective", azimuth=-35.0, elevation=20.0)
    images["ours_perspective"] = scene.render(persp)
    for key, img in images.items():
        write_png(out / f"render_{key}.png", img, overwrite=True)
    panel_figure(out / "render_comparison.png",
                 [images[k] for k in ("raw_slice", "dvr", "mip", "ours")],
                 ["raw slice (z = 64)", "plain DVR (low-passed)", "MIP (low-passed)",
                  "ours (soft classes x raw, AO, shadows, bloom)"], cols=2)

    stages = []
    for ao, shadow, bloom in ((0.0, 0.0, 0.0), (0.9, 0.0, 0.0), (0.9, 0.75, 0.5)):
        s = Scene(tomo, soft, RenderSettings(colors=colors, ao_strength=ao,
                                             shadow_strength=shadow, bloom=bloom), names=names)
        stages.append(s.render(camera))
    panel_figure(out / "render_stages.png", stages,
                 ["(a) material colour only", "(b) + local ambient occlusion",
                  "(c) + soft shadows and bloom"], cols=3)
    unc = Scene(tomo, soft, RenderSettings(colors=colors, uncertainty=True), names=names)
    write_png(out / "render_uncertainty.png", unc.render(camera), overwrite=True)
    write_histogram_png(out / "render_histogram_membrane.png", scene.probs[0],
                        scene.estimates[0], "membrane", (0.34, 0.71, 0.91), overwrite=True)
    print("thresholds:", {n: round(v, 3) for n, v in zip(names, scene.thresholds)})
    print("wrote", ", ".join(sorted(p.name for p in out.glob("render_*.png"))))


if __name__ == "__main__":
    main()
