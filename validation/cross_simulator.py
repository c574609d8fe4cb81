"""Cross-simulator check: score a membrane model on phantoms from an independent generator.

    nice -n 10 .venv/bin/python -m validation.cross_simulator [--model MODEL] [--n 6]
        [--size 192 192 96] [--json OUT.json] [--save-dir DIR]

The phantoms (``validation/phantom_sim.py``) share no code with ``cryoet_integration.simulate``:
vesicles, tubes and undulating sheets with a two-leaflet or single-band profile, Gaussian
protein clusters and filaments, a 3D CTF, coloured plus white noise, and the missing wedge
as a Fourier mask instead of a tilt series and back-projection. Each phantom is one
fixed-seed condition (voxel size, profile, SNR, tilt range, polarity); see ``CONDITIONS``.
The model runs through ``segment_volume`` as ``cryovis segment`` does; the thresholded-density
baseline runs on the same data. Scores: Dice and Surface-Dice at probability 0.5, over all
voxels and separately inside/outside the missing-wedge caps (membrane normal within 30° of z).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cryoet_integration.evaluate.segmentation import (
    evaluate_segmentation,
    missing_wedge_cap_mask,
)
from formats import Volume
from validation.phantom_sim import PhantomConfig, make_phantom

# One condition per phantom: (name, seed, overrides of PhantomConfig). The first is the
# "reference" condition; the others each move a few knobs away from it.
CONDITIONS: list[tuple[str, int, dict]] = [
    ("reference", 9001, {}),
    ("coarse-thick-band", 9002, dict(voxel_size=14.0, profile="band", leaflet_sigma=10.0,
                                     tilt_max_deg=55.0, defocus_um=5.0)),
    ("fine-thin-bilayer", 9003, dict(voxel_size=8.0, leaflet_separation=30.0,
                                     leaflet_sigma=5.0, snr=0.08, tilt_max_deg=65.0,
                                     defocus_um=3.0)),
    ("high-snr-flipped", 9004, dict(voxel_size=12.0, snr=0.5, phase_flipped=True,
                                    pink_alpha=1.5)),
    ("low-snr-16A", 9005, dict(voxel_size=16.0, profile="band", snr=0.03,
                               tilt_max_deg=50.0, defocus_um=6.0, pink_fraction=0.8)),
    ("inverted-polarity", 9006, dict(polarity="light")),
    # Two controls that separate the membrane profile from the voxel size.
    ("band-10A", 9007, dict(profile="band", leaflet_sigma=8.0)),
    ("bilayer-14A", 9008, dict(voxel_size=14.0)),
]

KEYS = ("dice", "surface_dice", "precision", "recall")


def condition(i: int, size_xyz: tuple[int, int, int]) -> tuple[str, int, PhantomConfig]:
    """The ``i``-th phantom: conditions repeat with new seeds beyond ``len(CONDITIONS)``."""
    name, seed, over = CONDITIONS[i % len(CONDITIONS)]
    rnd = i // len(CONDITIONS)
    return (name if rnd == 0 else f"{name}#{rnd}", seed + 100 * rnd,
            replace(PhantomConfig(size_xyz=size_xyz), **over))


def _short(scores: dict) -> dict:
    return {k: (None if scores.get(k) is None else round(float(scores[k]), 4)) for k in KEYS}


def score(truth: np.ndarray, prob: np.ndarray, caps_region: np.ndarray) -> dict:
    """Dice/Surface-Dice over all voxels and inside/outside the dilated cap region."""
    return {"all": _short(evaluate_segmentation(truth, prob, threshold=0.5)),
            "inside_caps": _short(evaluate_segmentation(truth, prob, threshold=0.5,
                                                        region=caps_region)),
            "outside_caps": _short(evaluate_segmentation(truth, prob, threshold=0.5,
                                                         region=~caps_region))}


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:5.3f}"


def print_table(rows: list[dict]) -> None:
    head = (f"{'phantom':22s} {'vs':>4s} {'snr':>5s} {'memb%':>5s} | {'Dice':>5s} {'SDice':>5s} "
            f"{'capD':>5s} {'offD':>5s} {'prec':>5s} {'rec':>5s} | {'thrD':>5s} {'thrSD':>5s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        m, b = r["model"], r["threshold_baseline"]
        print(f"{r['phantom']:22s} {r['voxel_size']:4.0f} {r['snr']:5.2f} "
              f"{100 * r['membrane_fraction']:5.1f} | {_fmt(m['all']['dice'])} "
              f"{_fmt(m['all']['surface_dice'])} {_fmt(m['inside_caps']['dice'])} "
              f"{_fmt(m['outside_caps']['dice'])} {_fmt(m['all']['precision'])} "
              f"{_fmt(m['all']['recall'])} | {_fmt(b['all']['dice'])} "
              f"{_fmt(b['all']['surface_dice'])}")


def mean_scores(rows: list[dict], which: str) -> dict:
    """Mean of each score over phantoms (None values skipped)."""
    out = {}
    for part in ("all", "inside_caps", "outside_caps"):
        out[part] = {}
        for k in KEYS:
            vals = [r[which][part][k] for r in rows if r[which][part][k] is not None]
            out[part][k] = round(float(np.mean(vals)), 4) if vals else None
    return out


def save_png(path: Path, tomo: np.ndarray, truth: np.ndarray, prob: np.ndarray,
             title: str) -> None:
    """Central z slice and central y section of tomogram, truth and prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z, y = tomo.shape[0] // 2, tomo.shape[1] // 2
    fig, ax = plt.subplots(2, 3, figsize=(13, 7))
    for row, sl in enumerate(((z, slice(None), slice(None)), (slice(None), y, slice(None)))):
        lo, hi = np.percentile(tomo[sl], (1, 99))
        ax[row, 0].imshow(tomo[sl], cmap="gray", vmin=lo, vmax=hi)
        ax[row, 1].imshow(truth[sl], cmap="gray")
        ax[row, 2].imshow(prob[sl], cmap="magma", vmin=0, vmax=1)
    for a, t in zip(ax[0], ("tomogram (z slice)", "truth", "model probability")):
        a.set_title(t)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model .pt/.json (default: the shipped one)")
    ap.add_argument("--n", type=int, default=len(CONDITIONS), help="number of phantoms")
    ap.add_argument("--size", type=int, nargs=3, default=(192, 192, 96),
                    metavar=("X", "Y", "Z"), help="phantom size in voxels (x y z)")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--save-dir", default=None, help="write a PNG per phantom here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)

    import torch
    from scipy import ndimage

    from cryoet_integration.segmentation.checkpoint import (
        default_model_path,
        load_model,
        model_paths,
    )
    from cryoet_integration.segmentation.inference import segment_volume
    from cryoet_integration.segmentation.threshold_baseline import membrane_map

    torch.set_num_threads(args.threads)
    model = args.model or str(default_model_path())
    net, card = load_model(model)
    print(f"model {model_paths(model)[0]} (step {card.get('step')}, "
          f"{card.get('voxel_size')} Å)", flush=True)
    save_dir = Path(args.save_dir) if args.save_dir else None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.n):
        name, seed, cfg = condition(i, tuple(args.size))
        tomo, truth, summary = make_phantom(cfg, seed)
        vol = Volume(data=tomo, voxel_size=cfg.voxel_size)
        caps = missing_wedge_cap_mask(truth)
        caps_region = ndimage.binary_dilation(caps, iterations=3)
        t0 = time.perf_counter()
        prob = segment_volume(vol, net, card).class_map(1)
        seconds = time.perf_counter() - t0
        base = membrane_map(vol)[1]
        rows.append({"phantom": name, "seed": seed, "voxel_size": cfg.voxel_size,
                     "snr": cfg.snr, "profile": cfg.profile, "polarity": cfg.polarity,
                     "tilt_max_deg": cfg.tilt_max_deg,
                     "membrane_fraction": summary["membrane_fraction"],
                     "cap_fraction_of_membrane": float(caps.sum() / max(truth.sum(), 1)),
                     "seconds": round(seconds, 1), "config": summary["config"],
                     "model": score(truth, prob, caps_region),
                     "threshold_baseline": score(truth, base, caps_region)})
        if save_dir:
            save_png(save_dir / f"{i:02d}_{name}.png", tomo, truth, prob,
                     f"{name}: Dice {rows[-1]['model']['all']['dice']:.3f}")
        print(f"  {name}: {seconds:.1f} s, Dice {rows[-1]['model']['all']['dice']}", flush=True)
    print()
    print_table(rows)
    means = {"model": mean_scores(rows, "model"),
             "threshold_baseline": mean_scores(rows, "threshold_baseline")}
    m, b = means["model"]["all"], means["threshold_baseline"]["all"]
    print(f"{'MEAN':38s} | {_fmt(m['dice'])} {_fmt(m['surface_dice'])} "
          f"{_fmt(means['model']['inside_caps']['dice'])} "
          f"{_fmt(means['model']['outside_caps']['dice'])} {_fmt(m['precision'])} "
          f"{_fmt(m['recall'])} | {_fmt(b['dice'])} {_fmt(b['surface_dice'])}")
    print("capD/offD: Dice inside/outside the missing-wedge caps; thr*: threshold baseline")
    if args.json:
        report = {"model": str(model_paths(model)[0]), "model_step": card.get("step"),
                  "command": "python -m validation.cross_simulator " + " ".join(
                      argv if argv is not None else sys.argv[1:]),
                  "size_xyz": list(args.size), "mean": means, "phantoms": rows}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
