"""The main job on embedded data: simulate, segment, fit membranes, score, pick, export, render.

Needs no user data: a tomogram with exact ground truth comes from the simulator, the
membranes from the shipped default model. Everything lands in one folder with a
``summary.json`` that a person or a check can read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from formats import Volume, write_particles, write_volume

from .errors import CryovisError
from .json_output import write_json

DEMO_SEED = 2026
DEMO_SIZE_XYZ = (192, 192, 96)


def run_demo(out_dir: str | Path, seed: int = DEMO_SEED,
             size_xyz: tuple[int, int, int] = DEMO_SIZE_XYZ, overwrite: bool = False,
             log: Callable[[str], None] = print,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return the summary (also written as summary.json).

    Args:
        out_dir: output folder (created; existing demo files are kept unless ``overwrite``).
        seed: simulator seed.
        size_xyz: tomogram size in voxels ``(x, y, z)``.
        overwrite: replace files from an earlier run.
        log: receives one line per step.
        progress: called as ``progress(done, total)`` over the segmentation's tiles.
    """
    from .evaluate import evaluate_picks, evaluate_segmentation
    from .membranes import fit_membranes, write_result
    from .picking.learned import load_picker, pick_tomogram
    from .rendering import Camera, render
    from .segmentation.checkpoint import default_model_path, load_model
    from .segmentation.inference import segment_volume
    from .simulate import SimulationConfig, simulate_tomogram, write_simulation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    if summary_path.exists() and not overwrite:
        raise CryovisError(f"{summary_path}: a demo already ran here (use --force to redo it)")
    steps: dict[str, float] = {}
    t0 = time.perf_counter()

    def done(step: str, message: str) -> None:
        steps[step] = round(time.perf_counter() - t0 - sum(steps.values()), 2)
        log(f"[{step}] {message} ({steps[step]:.1f} s)")

    log(f"[simulate] {'x'.join(map(str, size_xyz))} voxels, randomised conditions (seed {seed})")
    sim = simulate_tomogram(seed=seed, size_xyz=size_xyz,
                            config=SimulationConfig.randomised(seed))
    name = "demo_tomo"
    paths = write_simulation(sim, out, name=name, overwrite=overwrite)
    vs = float(sim.tomogram.voxel_size)
    done("simulate", f"{size_xyz[0]}x{size_xyz[1]}x{size_xyz[2]} voxels at {vs:.2f} Å, "
                     f"{len(sim.particles)} particles")

    net, card = load_model(None)
    log(f"[segment] membranes with {default_model_path().name} (rescaling {vs:.2f} -> "
        f"{float(card['voxel_size']):g} Å per voxel, normalising)")
    seg = segment_volume(sim.tomogram, net, card, progress=progress)
    membrane = seg.class_map(1).astype(np.float32)
    membranes_path = out / "membranes.mrc"
    write_volume(membranes_path, Volume(membrane, voxel_size=vs), overwrite=overwrite)
    seg_scores = evaluate_segmentation(sim.membranes, membrane, threshold=0.5)
    done("segment", f"membranes with {default_model_path().name}: "
                    f"Dice {seg_scores['dice']:.3f}, Surface-Dice {seg_scores['surface_dice']:.3f}")

    fitted = fit_membranes(membrane > 0.5, vs)
    surfaces = write_result(fitted, out / "surfaces", "membranes", voxel_size=vs,
                            overwrite=overwrite)
    fit_scores = evaluate_segmentation(sim.membranes, fitted.mask, surface=False)
    done("membranes", f"{fitted.info['instances']} membranes fitted "
                      f"({fitted.info['closed']} closed, {fitted.info['sheets']} sheets), "
                      f"{len(surfaces['meshes'])} meshes; Dice {fit_scores['dice']:.3f}")

    picker, picker_card = load_picker()
    picks = pick_tomogram(sim.tomogram, picker, picker_card, tomo_name=name).table
    picks_csv = out / "picks.csv"
    write_particles(picks_csv, picks, format="csv", overwrite=overwrite)
    size_unbinned = "x".join(str(n) for n in size_xyz)
    picks_star = out / "picks_relion5.star"
    write_particles(picks_star, picks, format="relion5", overwrite=overwrite,
                    tomo_size_xyz=size_unbinned, tilt_series_pixel_size=vs)
    truth = sim.particles
    pick_scores = evaluate_picks(sim.instances, truth, picks)
    done("pick", f"{len(picks)} picks (default picker), F1 {pick_scores['F1']:.3f} "
                 f"(precision {pick_scores['precision']:.3f}, recall {pick_scores['recall']:.3f})")

    view = out / "view.png"
    # the fitted surfaces drawn over the network's membranes, softened into a class map
    from scipy import ndimage

    fitted_soft = np.clip(ndimage.gaussian_filter(fitted.mask.astype(np.float32), 0.8) * 1.5,
                          0, 1)
    render(np.asarray(sim.tomogram.data), [membrane, fitted_soft],
           camera=Camera(960, 720, azimuth=30, elevation=25), out=view, overwrite=overwrite)
    done("render", f"{view.name}")

    summary = {
        "seed": seed,
        "size_xyz": list(size_xyz),
        "voxel_size_angst": vs,
        "files": {**paths, "membranes": str(membranes_path), "picks_csv": str(picks_csv),
                  "picks_relion5": str(picks_star), "view": str(view),
                  "surfaces": surfaces},
        "segmentation": {k: seg_scores[k] for k in ("dice", "surface_dice") if k in seg_scores},
        "membranes": {"instances": fitted.info["instances"], "closed": fitted.info["closed"],
                      "sheets": fitted.info["sheets"], "dice_fitted": fit_scores["dice"],
                      "table": fitted.table},
        "picking": {k: pick_scores[k] for k in ("F1", "precision", "recall")},
        "model": card.get("name", default_model_path().name),
        "seconds": steps,
    }
    write_json(summary_path, summary, overwrite=overwrite)
    log(f"summary: {summary_path}")
    return summary
