"""Score a membrane model on held-out simulated tomograms (new seeds, randomised conditions).

    .venv/bin/python -m validation.score_membrane_model [--model MODEL] [--n 3]
        [--seed 20000] [--cache DIR] [--out DIR] [--card-out CARD.json]

For each tomogram (``SimulationConfig.randomised(seed)``, 256x256x128 voxels, seeds that the
``default-membrane`` recipe never trains on) it runs tiled inference exactly as
``cryovis segment`` does and reports Dice and Surface-Dice against the true membrane mask,
separately inside and outside the missing-wedge caps (membrane whose normal is within 30° of
z), the per-slice Dice curve (PNG), and the thresholded-density baseline on the same data.
``--card-out CARD.json`` writes a copy of the model's card with the scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cryoet_integration.evaluate.segmentation import (
    evaluate_segmentation,
    missing_wedge_cap_mask,
    wedge_hidden_mask,
)
from cryoet_integration.json_output import write_json
from cryoet_integration.segmentation.checkpoint import (
    default_model_path,
    load_model,
    model_paths,
)
from cryoet_integration.segmentation.inference import segment_volume, use_bf16
from formats import read_volume

SIZE_XYZ = (256, 256, 128)


def held_out(cache: Path, seed: int) -> tuple[Path, Path, dict]:
    """Simulate (once) the held-out tomogram ``seed`` into ``cache``."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram, write_simulation

    name = f"heldout_{seed}"
    if not (cache / f"{name}.json").exists():
        sim = simulate_tomogram(seed=seed, size_xyz=SIZE_XYZ,
                                config=SimulationConfig.randomised(seed), tomo_name=name)
        write_simulation(sim, cache, name=name, overwrite=True)
    meta = json.loads((cache / f"{name}.json").read_text())
    return cache / f"{name}.mrc", cache / f"{name}_membranes.mrc", meta


def _summary(scores: dict) -> dict:
    keys = ("dice", "surface_dice", "precision", "recall", "surface_precision",
            "surface_recall")
    return {k: (None if scores.get(k) is None else round(float(scores[k]), 4)) for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model (default: the shipped one)")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20000)
    ap.add_argument("--cache", default=str(Path.home() / ".cache/cryovis/heldout"))
    ap.add_argument("--out", default=str(Path.home() / ".cache/cryovis/score"))
    ap.add_argument("--card-out", default=None, metavar="JSON",
                    help="also write a copy of the model's card with these scores to JSON "
                    "(review it, then replace the card by hand; the shipped card is never "
                    "edited here)")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from cryoet_integration.segmentation.threshold_baseline import membrane_map

    torch.set_num_threads(2)
    cache, out = Path(args.cache), Path(args.out)
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    net, card = load_model(args.model)
    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for seed in range(args.seed, args.seed + args.n):
        tomo_path, mask_path, meta = held_out(cache, seed)
        vol = read_volume(tomo_path)
        truth = read_volume(mask_path).data != 0
        t0 = time.perf_counter()
        # the precision `cryovis segment` uses by default on this machine
        seg = segment_volume(vol, net, card, bf16=use_bf16("auto"))
        seconds = time.perf_counter() - t0
        pred = seg.probabilities[0]
        caps = missing_wedge_cap_mask(truth)
        scores = evaluate_segmentation(truth, pred)
        # Inside the caps: the true cap voxels plus predictions near them; outside: the rest.
        from scipy import ndimage

        cap_region = ndimage.binary_dilation(caps, iterations=3)
        inside = evaluate_segmentation(truth, pred, region=cap_region)
        outside = evaluate_segmentation(truth, pred, region=~cap_region)
        base = evaluate_segmentation(truth, membrane_map(vol)[1])
        cfg = meta["config"]
        # Membrane no tilt of this series shows (near) edge-on, wherever its normal points.
        tilts = (cfg["tilt_min_deg"], cfg["tilt_max_deg"])
        hidden_region = ndimage.binary_dilation(wedge_hidden_mask(truth, tilts), iterations=3)
        rows.append({
            "seed": seed, "voxel_size": cfg["voxel_size"], "defocus_um": cfg["defocus_angst"] / 1e4,
            "dose": cfg["dose_total"], "snr": meta.get("snr"),
            "tilt_range": [cfg["tilt_min_deg"], cfg["tilt_max_deg"]],
            "membrane_fraction": float(truth.mean()),
            "cap_fraction_of_membrane": float(caps.sum() / max(truth.sum(), 1)),
            "seconds": round(seconds, 1), "all": _summary(scores),
            "inside_caps": _summary(inside if caps.any() else {}),
            "outside_caps": _summary(outside),
            "hidden_fraction_of_membrane": float((hidden_region & truth).sum()
                                                 / max(truth.sum(), 1)),
            # None when the tilt series hides no membrane (an empty region scores 1)
            "hidden_by_wedge": _summary(evaluate_segmentation(truth, pred, region=hidden_region)
                                        if (hidden_region & truth).any() else {}),
            "shown_by_some_tilt": _summary(evaluate_segmentation(truth, pred,
                                                                 region=~hidden_region)
                                           if (truth & ~hidden_region).any() else {}),
            "threshold_baseline": _summary(base)})
        ax.plot(scores["per_slice_dice"], label=f"seed {seed}")
        print(json.dumps(rows[-1]), flush=True)
    mean = {part: {k: round(float(np.mean([r[part][k] for r in rows
                                            if r[part][k] is not None] or [np.nan])), 4)
                   for k in ("dice", "surface_dice")}
            for part in ("all", "inside_caps", "outside_caps", "hidden_by_wedge",
                         "shown_by_some_tilt", "threshold_baseline")}
    ax.set_xlabel("z slice")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("membrane Dice per z slice, held-out simulated tomograms")
    fig.tight_layout()
    fig.savefig(out / "per_slice_dice.png", dpi=100)
    report = {"model": str(model_paths(args.model or default_model_path())[0]),
              "command": "python -m validation.score_membrane_model " + " ".join(
                  argv if argv is not None else sys.argv[1:]),
              "bf16": use_bf16("auto"),
              "held_out_seeds": list(range(args.seed, args.seed + args.n)),
              "size_xyz": SIZE_XYZ, "mean": mean, "tomograms": rows}
    (out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    print("MEAN", json.dumps(mean))
    if args.card_out:
        _, card_path = model_paths(args.model or default_model_path())
        card_data = json.loads(card_path.read_text())
        card_data["scores"] = {k: v for k, v in report.items() if k != "model"}
        write_json(args.card_out, card_data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
