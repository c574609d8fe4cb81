"""Score the two baselines on simulated tomograms: the floor every model must clear.

Simulates ``--n`` tomograms per condition set with fixed seeds (fixed SHREC-like
conditions, and domain-randomised ones), runs the DoG blob picker and the thresholded
smoothed-density membrane map on each, scores them with ``cryoet_integration.evaluate``
and prints a Markdown table (per tomogram and mean) ready for ``docs/baselines.md``.

    .venv/bin/python -m validation.score_baselines                 # 3 + 3 tomograms
    .venv/bin/python -m validation.score_baselines --n 1 --size 128x128x64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cryoet_integration.evaluate import (
    evaluate_picks,
    evaluate_segmentation,
    missing_wedge_cap_mask,
)
from cryoet_integration.json_output import json_ready
from cryoet_integration.picking import pick_blobs
from cryoet_integration.segmentation.threshold_baseline import membrane_map
from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
from formats import Volume

COLUMNS = ["conditions", "seed", "voxel Å", "particles", "RR", "TP", "FP", "MH",
           "precision", "recall", "F1", "AD vox", "mem Dice", "mem Surface-Dice",
           "Dice caps", "Dice outside caps"]


def score_one(seed: int, conditions: str, size_xyz: tuple[int, int, int], diameter: float,
              thickness: float) -> dict:
    """Simulate one tomogram and score both baselines on it."""
    config = SimulationConfig.randomised(seed) if conditions == "randomised" \
        else SimulationConfig()
    t0 = time.perf_counter()
    sim = simulate_tomogram(seed=seed, size_xyz=size_xyz, config=config)
    t1 = time.perf_counter()
    picks = pick_blobs(sim.tomogram, diameter_angst=diameter)
    soft, _ = membrane_map(sim.tomogram, thickness_angst=thickness)
    t2 = time.perf_counter()
    instances = Volume(sim.instances, voxel_size=sim.tomogram.voxel_size)
    pick_scores = evaluate_picks(instances, sim.particles, picks)
    truth = sim.membranes > 0
    seg = evaluate_segmentation(truth, soft)
    caps = missing_wedge_cap_mask(truth, angle_deg=30)
    in_caps = evaluate_segmentation(truth, soft, region=caps, surface=False)
    outside = evaluate_segmentation(truth, soft, region=~caps, surface=False)
    return {
        "conditions": conditions, "seed": seed, "voxel_size": sim.tomogram.voxel_size,
        "size_xyz": list(size_xyz), "particles": pick_scores["n_true"],
        "picks": {k: pick_scores[k] for k in ("RR", "TP", "FP", "FN", "multiple_hits",
                                                "precision", "recall", "F1",
                                                "average_distance", "picks_on_excluded")},
        "membrane": {"dice": seg["dice"], "surface_dice": seg["surface_dice"],
                     "dice_caps": in_caps["dice"], "dice_outside_caps": outside["dice"],
                     "cap_fraction": float(caps.sum() / max(truth.sum(), 1)),
                     "membrane_fraction": float(truth.mean())},
        "seconds": {"simulate": t1 - t0, "baselines": t2 - t1},
    }


def _row(r: dict) -> list[str]:
    p, m = r["picks"], r["membrane"]
    ad = "-" if p["average_distance"] is None else f"{p['average_distance']:.2f}"
    return [r["conditions"], str(r["seed"]), f"{r['voxel_size']:.2f}", str(r["particles"]),
            str(p["RR"]), str(p["TP"]), str(p["FP"]), str(p["multiple_hits"]),
            f"{p['precision']:.3f}", f"{p['recall']:.3f}", f"{p['F1']:.3f}", ad,
            f"{m['dice']:.3f}", f"{m['surface_dice']:.3f}", f"{m['dice_caps']:.3f}",
            f"{m['dice_outside_caps']:.3f}"]


def _mean_row(rows: list[dict], label: str) -> list[str]:
    def mean(get):
        vals = [get(r) for r in rows if get(r) is not None]
        return f"{np.mean(vals):.3f}" if vals else "-"

    return [f"**mean {label}**", "", "", "", "", "", "", "",
            mean(lambda r: r["picks"]["precision"]), mean(lambda r: r["picks"]["recall"]),
            f"**{mean(lambda r: r['picks']['F1'])}**",
            mean(lambda r: r["picks"]["average_distance"]),
            f"**{mean(lambda r: r['membrane']['dice'])}**",
            f"**{mean(lambda r: r['membrane']['surface_dice'])}**",
            mean(lambda r: r["membrane"]["dice_caps"]),
            mean(lambda r: r["membrane"]["dice_outside_caps"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="tomograms per condition set")
    parser.add_argument("--size", default="256x256x128", help="XxYxZ voxels")
    parser.add_argument("--seed", type=int, default=1, help="first seed (seeds seed..seed+n-1)")
    parser.add_argument("--conditions", choices=["fixed", "randomised", "both"], default="both")
    parser.add_argument("--diameter", type=float, default=120.0,
                        help="blob picker particle diameter (Å)")
    parser.add_argument("--thickness", type=float, default=45.0,
                        help="membrane thickness for the threshold baseline (Å)")
    parser.add_argument("--json", type=Path, help="also write all results as JSON")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    sets = ["fixed", "randomised"] if args.conditions == "both" else [args.conditions]
    results = []
    for conditions in sets:
        for seed in range(args.seed, args.seed + args.n):
            r = score_one(seed, conditions, size, args.diameter, args.thickness)
            results.append(r)
            print(f"# {conditions} seed {seed}: simulated in {r['seconds']['simulate']:.0f} s, "
                  f"baselines in {r['seconds']['baselines']:.1f} s", file=sys.stderr)
    print(f"Blob picker: DoG, diameter {args.diameter:g} Å, threshold z >= 4. "
          f"Membrane map: {args.thickness:g} Å smoothing, top 10 % of evidence. "
          f"Tomograms {args.size} voxels.\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in results:
        print("| " + " | ".join(_row(r)) + " |")
    for conditions in sets:
        chosen = [r for r in results if r["conditions"] == conditions]
        print("| " + " | ".join(_mean_row(chosen, conditions)) + " |")
    if args.json:
        args.json.write_text(json.dumps(json_ready(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
