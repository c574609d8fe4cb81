"""Make docs/images/simulated_slice.png: a simulated tomogram's central slice next to its labels.

Run: .venv/bin/python docs/make_gallery.py [--seed 10] [--out docs/images/simulated_slice.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    """Simulate one 256x256x128 tomogram and draw slice z = 64 with its class labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "images" / "simulated_slice.png")
    args = parser.parse_args()

    cfg = SimulationConfig(n_vesicles=3, n_sheets=1, n_tubes=1, n_microtubules=1, n_actin=2,
                           crowding=0.12, defocus_angst=3.5e4, dose_total=120.0)
    sim = simulate_tomogram(seed=args.seed, size_xyz=(256, 256, 128), config=cfg)
    tomo = sim.tomogram.data
    z = tomo.shape[0] // 2
    view = tomo[z - 1:z + 2].mean(axis=0)  # 3-slice average, as tomograms are usually viewed
    lo, hi = np.percentile(view, [1, 99])

    names = sorted(sim.metadata["labels"].items(), key=lambda kv: kv[1])
    colours = ["#000000"] + list(plt.get_cmap("tab20").colors)[::2] + ["#ffffff", "#f5d000"]
    cmap = ListedColormap(colours[:len(names)])
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.4), constrained_layout=True)
    axes[0].imshow(view, cmap="gray", vmin=lo, vmax=hi)
    axes[0].set_title(f"simulated tomogram, slice z={z} "
                      f"({sim.tomogram.voxel_size:g} Å/voxel, SNR {sim.metadata['snr']:.2f})")
    axes[1].imshow(sim.labels[z], cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
                   interpolation="nearest")
    axes[1].set_title("ground-truth labels")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    present = set(np.unique(sim.labels[z]).tolist())
    handles = [Patch(color=colours[i], label=n) for n, i in names if i in present and i > 0]
    axes[1].legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
