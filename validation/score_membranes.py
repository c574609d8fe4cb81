"""Score ``cryovis membranes`` (instances + surface fitting) on simulated tomograms.

    .venv/bin/python -m validation.score_membranes --json OUT.json [--figures DIR]
        [--seeds 20000-20007] [--broken-seeds 1-3] [--cache DIR]

Two studies, each against the simulator's true membrane mask:

* **Broken masks** (seeds ``--broken-seeds``, fixed conditions, 192x192x96): the true mask
  with the missing-wedge caps cut away (membrane whose normal is within 45 degrees of z) and
  spurious blobs added; Dice before/after fitting, the per-slice Dice curve (as the paper's
  Fig. 21), and the count of closed vesicles against the true count.
* **Held-out model output** (seeds ``--seeds``, the held-out seeds of the shipped membrane
  model's card, randomised conditions, 256x256x128): the shipped model's probabilities
  (``cryovis segment``) thresholded at 0.5, then ``cryovis membranes`` on them; Dice and
  Surface-Dice of segment alone and of segment + membranes, overall and on the membrane no
  tilt of the series shows edge-on (``wedge_hidden_mask`` with the series' tilt range).

Figures (per-slice curves) go to ``--figures``; all numbers to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from formats import Volume, read_volume, write_volume

HELD_OUT_SIZE_XYZ = (256, 256, 128)


def seed_range(text: str) -> list[int]:
    """``A-B`` (inclusive) or ``A,B,C`` as a list of seeds."""
    if "-" in text:
        a, b = (int(p) for p in text.split("-"))
        return list(range(a, b + 1))
    return [int(p) for p in text.split(",")]


def held_out_probabilities(cache: Path, seed: int) -> tuple[Path, Path, dict]:
    """Simulate (once) held-out tomogram ``seed`` and segment it (once) with the shipped
    model as ``cryovis segment`` does; returns (probability map, true mask, metadata)."""
    from validation.score_membrane_model import held_out

    tomo_path, mask_path, meta = held_out(cache, seed)
    prob_path = cache / f"heldout_{seed}_prob.mrc"
    if not prob_path.exists():
        from cryoet_integration.segmentation.checkpoint import load_model
        from cryoet_integration.segmentation.inference import segment_volume, use_bf16

        net, card = load_model(None)
        vol = read_volume(tomo_path)
        seg = segment_volume(vol, net, card, bf16=use_bf16("auto"))
        write_volume(prob_path, Volume(np.asarray(seg.class_map(1), dtype=np.float32),
                                       voxel_size=seg.voxel_size), overwrite=True)
    return prob_path, mask_path, meta


CLOSED_KINDS = ("vesicle", "ellipsoid", "blob", "inner_vesicle", "tube")


def closed_inside(meta: dict, shape_zyx: tuple[int, int, int]) -> int:
    """True closed membranes (vesicles, tubes) lying wholly inside the tomogram."""
    vs = float(meta["voxel_size_angst"])
    size = np.asarray(shape_zyx[::-1], dtype=float) * vs
    count = 0
    for m in meta["membranes"]:
        if m["kind"] not in CLOSED_KINDS:
            continue
        if "radii_angst" in m:
            axes = np.asarray(m["axes"]).T
            reach = np.sqrt(((axes * np.asarray(m["radii_angst"])) ** 2).sum(1))
            lo, hi = np.asarray(m["centre_angst"]) - reach, np.asarray(m["centre_angst"]) + reach
        elif "radius_angst" in m and "a_angst" in m:
            r = m["radius_angst"]
            ends = np.array([m["a_angst"], m["b_angst"]])
            lo, hi = ends.min(0) - r, ends.max(0) + r
        else:  # a blob: centre and mean radius (up to ~25 % out of round)
            r = 1.25 * m["radius_angst"]
            lo, hi = np.asarray(m["centre_angst"]) - r, np.asarray(m["centre_angst"]) + r
        count += bool((lo >= 0).all() and (hi <= size - vs).all())
    return count


def broken_mask(truth: np.ndarray, rng: np.random.Generator, cap_deg: float = 45.0,
                n_blobs: int = 8) -> np.ndarray:
    """The true mask with its missing-wedge caps (normal within ``cap_deg`` of z) cut away
    and ``n_blobs`` solid spurious blobs (radius 2-4 voxels) added."""
    from cryoet_integration.evaluate.segmentation import missing_wedge_cap_mask

    out = truth & ~missing_wedge_cap_mask(truth, cap_deg)
    zz, yy, xx = np.indices(truth.shape)
    for _ in range(n_blobs):
        c = rng.uniform([0, 0, 0], truth.shape)
        r = rng.uniform(2, 4)
        out |= (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
    return out


def _scores(truth: np.ndarray, pred: np.ndarray, region: np.ndarray | None = None) -> dict:
    from cryoet_integration.evaluate.segmentation import evaluate_segmentation

    s = evaluate_segmentation(truth, pred, region=region)
    return {"dice": round(s["dice"], 4), "surface_dice": round(s["surface_dice"], 4),
            "precision": round(s["precision"], 4), "recall": round(s["recall"], 4),
            "per_slice_dice": s["per_slice_dice"]}


def _strip(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "per_slice_dice"}


def broken_study(seeds: list[int], cache: Path) -> tuple[dict, list]:
    """Fit deliberately broken true masks (module docstring); returns (report, curves)."""
    from cryoet_integration.membranes import fit_membranes
    from cryoet_integration.simulate import simulate_tomogram

    rows, curves = [], []
    for seed in seeds:
        sim = simulate_tomogram(seed=seed, size_xyz=(192, 192, 96))
        truth = sim.membranes != 0
        broken = broken_mask(truth, np.random.default_rng(seed))
        t0 = time.perf_counter()
        result = fit_membranes(broken, float(sim.tomogram.voxel_size))
        seconds = time.perf_counter() - t0
        before, after = _scores(truth, broken), _scores(truth, result.mask != 0)
        closed = [r for r in result.table if r["closed"] and r["model"] != "sheet"]
        rows.append({"seed": seed, "seconds": round(seconds, 1), "before": _strip(before),
                     "after": _strip(after), "true_closed_inside": closed_inside(
                         sim.metadata, truth.shape),
                     "fitted_closed": len(closed),
                     "fitted_closed_watertight": sum(bool(r["watertight"]) for r in closed),
                     "instances": result.info["instances"],
                     "models": [r["model"] for r in result.table]})
        curves.append((seed, before["per_slice_dice"], after["per_slice_dice"]))
        print(json.dumps(rows[-1]), flush=True)
    mean = {k: {m: round(float(np.mean([r[k][m] for r in rows])), 4)
                for m in ("dice", "surface_dice")} for k in ("before", "after")}
    return {"seeds": seeds, "size_xyz": [192, 192, 96], "mean": mean, "tomograms": rows}, curves


def held_out_study(seeds: list[int], cache: Path) -> tuple[dict, list]:
    """segment vs segment + membranes on the held-out tomograms (module docstring)."""
    from scipy import ndimage

    from cryoet_integration.evaluate.segmentation import wedge_hidden_mask
    from cryoet_integration.membranes import fit_membranes

    rows, curves = [], []
    for seed in seeds:
        prob_path, mask_path, meta = held_out_probabilities(cache, seed)
        prob = read_volume(prob_path)
        truth = read_volume(mask_path).data != 0
        seg = np.asarray(prob.data) > 0.5
        cfg = meta["config"]
        tilts = (cfg["tilt_min_deg"], cfg["tilt_max_deg"])
        t0 = time.perf_counter()
        result = fit_membranes(seg, float(prob.voxel_size), tilt_range_deg=tilts)
        seconds = time.perf_counter() - t0
        fitted = result.mask != 0
        # what --keep-observed writes: the kept instances' voxels plus the fitted surfaces
        union = fitted | (result.observed_instances > 0)
        # as validation.score_membrane_model: the hidden membrane plus 3 voxels around it
        hidden = ndimage.binary_dilation(wedge_hidden_mask(truth, tilts), iterations=3)
        row = {"seed": seed, "seconds": round(seconds, 1), "tilt_range": list(tilts),
               "instances": result.info["instances"],
               "models": [r["model"] for r in result.table]}
        for name, pred in (("segment", seg), ("segment_membranes", fitted),
                           ("segment_or_membranes", union)):
            every = _scores(truth, pred)
            row[name] = {"all": _strip(every),
                         "hidden_by_wedge": _strip(_scores(truth, pred, hidden))
                         if (hidden & truth).any() else None,
                         "shown_by_some_tilt": _strip(_scores(truth, pred, ~hidden))}
            if name != "segment_or_membranes":
                curves.append((seed, name, every["per_slice_dice"]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {}
    for name in ("segment", "segment_membranes", "segment_or_membranes"):
        mean[name] = {}
        for part in ("all", "hidden_by_wedge", "shown_by_some_tilt"):
            vals = [r[name][part] for r in rows if r[name][part] is not None]
            mean[name][part] = {m: round(float(np.mean([v[m] for v in vals])), 4)
                                for m in ("dice", "surface_dice")} if vals else None
    return {"seeds": seeds, "size_xyz": list(HELD_OUT_SIZE_XYZ), "mean": mean,
            "tomograms": rows}, curves


def plot_curves(broken: list, held: list, folder: Path) -> dict[str, str]:
    """Per-slice Dice curves (the paper's Fig. 21) as PNGs in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    if broken:
        fig, ax = plt.subplots(figsize=(7, 4))
        for k, (seed, before, after) in enumerate(broken):
            color = f"C{k}"
            ax.plot(before, color=color, ls="--", lw=1, label=f"seed {seed} broken mask")
            ax.plot(after, color=color, lw=1.5, label=f"seed {seed} fitted")
        ax.set(xlabel="z slice", ylabel="Dice", ylim=(0, 1.02),
               title="broken true masks (caps cut, blobs added): before / after fitting")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        files["broken"] = str(folder / "membranes_broken_per_slice_dice.png")
        fig.savefig(files["broken"], dpi=100)
        plt.close(fig)
    if held:
        fig, ax = plt.subplots(figsize=(7, 4))
        seg = np.nanmean([np.asarray(c, float) for _, n, c in held if n == "segment"], axis=0)
        fit = np.nanmean([np.asarray(c, float) for _, n, c in held if n != "segment"], axis=0)
        ax.plot(seg, color="C0", label="segment (shipped model, > 0.5)")
        ax.plot(fit, color="C3", label="segment + membranes")
        ax.set(xlabel="z slice", ylabel="mean Dice over held-out tomograms", ylim=(0, 1.02),
               title="held-out simulated tomograms: per-slice Dice")
        ax.legend()
        fig.tight_layout()
        files["held_out"] = str(folder / "membranes_heldout_per_slice_dice.png")
        fig.savefig(files["held_out"], dpi=100)
        plt.close(fig)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="write the figures (numbers) here")
    ap.add_argument("--figures", default=None, help="folder for the PNG curves")
    ap.add_argument("--seeds", default="20000-20007",
                    help="held-out seeds of the model card ('' to skip)")
    ap.add_argument("--broken-seeds", default="1-3", help="seeds of the broken-mask study")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/cryovis/heldout"))
    ap.add_argument("--prepare-only", action="store_true",
                    help="only simulate and segment the held-out tomograms into --cache")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        import torch

        torch.set_num_threads(1)
        for seed in seed_range(args.seeds):
            t0 = time.perf_counter()
            held_out_probabilities(cache, seed)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    from cryoet_integration.json_output import write_json

    report: dict = {"command": "python -m validation.score_membranes " + " ".join(
        argv if argv is not None else sys.argv[1:])}
    broken_curves, held_curves = [], []
    if args.broken_seeds:
        report["broken_masks"], broken_curves = broken_study(seed_range(args.broken_seeds),
                                                             cache)
    if args.seeds:
        report["held_out"], held_curves = held_out_study(seed_range(args.seeds), cache)
    if args.figures:
        report["figures"] = plot_curves(broken_curves, held_curves, Path(args.figures))
    write_json(args.json, report, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
