"""The main job on embedded data: every face of cryovis on one simulated tomogram.

Simulate, segment membranes, fit their surfaces, pick, classify the picks, orient one
class by template matching, drop duplicate picks of it (closer than the template's radius),
export RELION 5 and Dynamo, extract and average the oriented class, score the two
baselines, render a view and a turntable. Every step is scored against the simulator's
exact ground truth. Needs no user data: the membranes, picks and classes come from the
shipped default models. Everything lands in one folder with a ``summary.json`` that a
person or a check can read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from formats import (
    Volume,
    orientations,
    positions_voxels,
    read_volume,
    write_particles,
    write_volume,
)

from .errors import CryovisError
from .json_output import write_json

DEMO_SEED = 2026
DEMO_SIZE_XYZ = (192, 192, 96)
# A coarse grid keeps the orientation search to about a minute on two shared cores; the
# local refinement after it goes to step / 9 (4.4 degrees).
DEMO_ANGULAR_STEP = 40.0
# At most this many picks of the chosen class are oriented and averaged (the classifier's
# most confident first).
DEMO_MAX_ORIENTED = 20
TURNTABLE_FRAMES = 16
# A call the classifier makes with at least this probability counts as confident: the
# class to orient is the one with the most such calls (the shipped classifier is weak, and
# a class it names often but unsure of is mostly background; classifier.md).
CONFIDENT_PROBABILITY = 0.5
# The baselines' defaults of docs/baselines.md
BLOB_DIAMETER_ANGST = 120.0
MEMBRANE_THICKNESS_ANGST = 45.0


def choose_template_class(classified: pd.DataFrame, templates: Any,
                          min_probability: float = CONFIDENT_PROBABILITY) -> str | None:
    """The class to orient: among the classes in ``templates`` (names the simulator has a
    template for), the one with the most confident calls (``class_probability`` >=
    ``min_probability``), else the one called most often; None when none was called."""
    called = classified[classified["class"].isin(list(templates))]
    confident = called[called["class_probability"] >= min_probability]
    counts = (confident if len(confident) else called)["class"].value_counts()
    return str(counts.index[0]) if len(counts) else None


def run_demo(out_dir: str | Path, seed: int = DEMO_SEED,
             size_xyz: tuple[int, int, int] = DEMO_SIZE_XYZ, overwrite: bool = False,
             log: Callable[[str], None] = print,
             progress: Callable[[int, int], None] | None = None,
             angular_step: float = DEMO_ANGULAR_STEP, max_oriented: int = DEMO_MAX_ORIENTED,
             turntable_frames: int = TURNTABLE_FRAMES) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return the summary (also written as summary.json).

    Args:
        out_dir: output folder (created; existing demo files are kept unless ``overwrite``).
        seed: simulator seed.
        size_xyz: tomogram size in voxels ``(x, y, z)``.
        overwrite: replace files from an earlier run.
        log: receives one line per step.
        progress: called as ``progress(done, total)`` over the segmentation's tiles.
        angular_step: global grid step (degrees) of the orientation search.
        max_oriented: orient and average at most this many picks of the chosen class.
        turntable_frames: frames of the turntable GIF.
    """
    from scipy import ndimage

    from .evaluate import evaluate_picks, evaluate_segmentation, orientation_errors
    from .membranes import fit_membranes, write_result
    from .picking import pick_blobs
    from .picking.learned import load_picker, pick_tomogram
    from .picking.peaks import suppress_close
    from .picking.template import TemplateMatchOptions, match_template, prepare_template
    from .rendering import Camera, Scene, render_turntable, write_png
    from .segmentation.checkpoint import default_model_path, load_model
    from .segmentation.inference import segment_volume
    from .segmentation.threshold_baseline import membrane_map
    from .simulate import SimulationConfig, simulate_tomogram, write_simulation
    from .simulate.io import write_tomograms_star
    from .simulate.shapes import CLASS_SYMMETRY, CLASSES, class_template
    from .subtomograms.average import (
        average_subtomograms,
        place_back,
        plot_fsc,
        reference_agreement,
    )
    from .subtomograms.classifier.prediction import (
        classified_table,
        classify_picks,
        default_classifier_path,
        load_classifier,
    )
    from .subtomograms.extract import extract_relion_set

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    if summary_path.exists() and not overwrite:
        raise CryovisError(f"{summary_path}: a demo already ran here (use --force to redo it)")
    steps: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def done(step: str, message: str) -> None:
        # wall and CPU time: on a shared machine the CPU seconds say what the step costs
        steps[step] = round(time.perf_counter() - t0 - sum(steps.values()), 2)
        cpu[step] = round(time.process_time() - c0 - sum(cpu.values()), 2)
        log(f"[{step}] {message} ({steps[step]:.1f} s, CPU {cpu[step]:.1f} s)")

    log(f"[simulate] {'x'.join(map(str, size_xyz))} voxels, randomised conditions (seed {seed})")
    config = SimulationConfig.randomised(seed)
    sim = simulate_tomogram(seed=seed, size_xyz=size_xyz, config=config)
    name = "demo_tomo"
    paths = write_simulation(sim, out, name=name, overwrite=overwrite)
    vs = float(sim.tomogram.voxel_size)
    # the RELION 5 project's tomogram table: what reads the centred picks back
    tomograms_star = out / "tomograms.star"
    write_tomograms_star(tomograms_star, [{
        "name": name, "voxel_size": vs, "size_xyz": list(size_xyz),
        "voltage_kv": config.voltage_kv, "cs_mm": config.cs_angst / 1e7,
        "amplitude_contrast": config.amplitude_contrast}], overwrite=overwrite)
    paths["tomograms_star"] = str(tomograms_star)
    instances = Volume(sim.instances, voxel_size=vs)
    truth = sim.particles
    done("simulate", f"{size_xyz[0]}x{size_xyz[1]}x{size_xyz[2]} voxels at {vs:.2f} Å, "
                     f"{len(truth)} particles")

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
    relion5 = {"tomo_size_xyz": size_unbinned, "tilt_series_pixel_size": vs}
    picks_star = out / "picks_relion5.star"
    write_particles(picks_star, picks, format="relion5", overwrite=overwrite, **relion5)
    pick_scores = evaluate_picks(instances, truth, picks)
    done("pick", f"{len(picks)} picks (default picker), F1 {pick_scores['F1']:.3f} "
                 f"(precision {pick_scores['precision']:.3f}, recall {pick_scores['recall']:.3f})")

    classifier, classifier_card = load_classifier()
    result = classify_picks(np.asarray(sim.tomogram.data), vs, positions_voxels(picks),
                            classifier, classifier_card)
    classified = classified_table(picks, result)
    classified_csv = out / "classified.csv"
    write_particles(classified_csv, classified, format="csv", overwrite=overwrite)
    class_scores = evaluate_picks(instances, truth, classified)
    picker_class_f1 = pick_scores["classification_F1_macro"] or 0.0
    classifier_f1 = class_scores["classification_F1_macro"] or 0.0
    done("classify", f"{len(classified)} picks with {default_classifier_path().name}: class "
                     f"macro F1 {classifier_f1:.3f} (the picker's own classes "
                     f"{picker_class_f1:.3f})")

    orientation: dict[str, Any] = {}
    averaging: dict[str, Any] = {}
    oriented_files: dict[str, str] = {}
    target = choose_template_class(classified, CLASSES)
    if target is None:
        orientation["skipped"] = "the classifier called no class the simulator has a " \
                                 "template for"
        done("orient", orientation["skipped"])
    else:
        symmetry = CLASS_SYMMETRY.get(target, "C1")
        chosen = classified[classified["class"] == target]
        chosen = chosen.sort_values("class_probability", ascending=False).head(max_oriented)
        # the user's view of a known structure: a map on disk, read back
        template_path = out / f"template_{target}.mrc"
        write_volume(template_path, Volume(class_template(CLASSES[target], vs), voxel_size=vs),
                     overwrite=overwrite)
        template = read_volume(template_path)
        options = TemplateMatchOptions(
            angular_step_deg=angular_step, symmetry=symmetry,
            tilt_range_deg=(config.tilt_min_deg, config.tilt_max_deg),
            defocus_um=config.defocus_angst / 1e4, voltage_kv=config.voltage_kv,
            cs_mm=config.cs_angst / 1e7, amplitude_contrast=config.amplitude_contrast,
            phase_flipped=config.phase_flip)
        prepared = prepare_template(template, vs, options)
        matched = match_template(sim.tomogram, prepared, options,
                                 positions_xyz=positions_voxels(chosen), class_name=target)
        # Two picks within one template radius are one particle (distinct particles are
        # about two radii apart): averaging both would put the same noise into both half
        # maps and inflate the FSC. The better template score stays, as in a global search.
        order = np.argsort(-matched.table["score"].to_numpy(), kind="stable")
        unique = np.sort(order[suppress_close(positions_voxels(matched.table)[order],
                                              prepared.radius)])
        oriented = matched.table.iloc[unique].reset_index(drop=True)
        oriented["tomo_name"] = name
        duplicates_removed = len(matched.table) - len(oriented)
        left = evaluate_picks(instances, truth, oriented)["duplicate_picks"]
        errors = orientation_errors(instances, truth, oriented, symmetry=symmetry,
                                    classes=[target])
        orientation = {"class": target, "symmetry": symmetry, "angular_step_deg": angular_step,
                       "orientations": int(len(matched.grid)), "template": str(template_path),
                       "duplicates_removed": int(duplicates_removed),
                       "min_distance_voxels": float(prepared.radius),
                       "duplicates_left_on_truth": int(left),
                       **{k: v for k, v in errors.items() if k != "symmetry"}}
        median = "n/a" if errors["median_deg"] is None else f"{errors['median_deg']:.1f}°"
        done("orient", f"{len(oriented)} '{target}' picks oriented ({symmetry}, "
                       f"{len(matched.grid)} orientations at {angular_step:g}° + refinement; "
                       f"{duplicates_removed} duplicates within {prepared.radius:.1f} voxels "
                       f"removed): {errors['n_matched']} on true {target}s, median error "
                       f"{median}")

        oriented_star = out / "oriented_relion5.star"
        oriented_tbl = out / "oriented_dynamo.tbl"
        write_particles(oriented_star, oriented, format="relion5", overwrite=overwrite,
                        **relion5)
        write_particles(oriented_tbl, oriented, format="dynamo", overwrite=overwrite)
        oriented_files = {"oriented_relion5": str(oriented_star),
                          "oriented_dynamo": str(oriented_tbl)}
        done("export", f"{oriented_star.name}, {oriented_tbl.name}")

        # the class as a reference: dense matter bright, box even (RELION) with a margin
        box = int(template.data.shape[0]) + 5
        box += box % 2
        tilt = (config.tilt_min_deg, config.tilt_max_deg)
        cut = extract_relion_set(
            np.asarray(sim.tomogram.data), vs, oriented, box, out / "subtomograms",
            f"{name}.mrc", tilt_range_deg=tilt, invert=True, overwrite=overwrite,
            microscope={"rlnVoltage": config.voltage_kv,
                        "rlnSphericalAberration": config.cs_angst / 1e7,
                        "rlnAmplitudeContrast": config.amplitude_contrast})
        kept = np.flatnonzero(cut["kept"])
        mats = orientations(oriented)[kept]
        avg = average_subtomograms(
            ((sub, mats[i], cut["shifts_xyz"][i], cut["wedge"], 1 + i % 2)
             for i, sub in enumerate(cut["stack"])), box, vs)
        average_path = out / "average.mrc"
        for path, data in ((average_path, avg.average),
                           (out / "average_half1.mrc", avg.half1),
                           (out / "average_half2.mrc", avg.half2)):
            write_volume(path, Volume(data, voxel_size=vs), overwrite=overwrite)
        fsc_png = out / "average_fsc.png"
        plot_fsc(fsc_png, avg, box, vs, overwrite=overwrite)
        agreement = reference_agreement(avg.average, template.data, vs)
        averaging = {"class": target, "n_particles": int(len(kept)), "box": box,
                     "duplicates_removed": int(duplicates_removed),
                     "fsc0143_angst": avg.resolution_angst["0.143"],
                     "fsc05_angst": avg.resolution_angst["0.5"],
                     "correlation_with_truth": agreement["correlation"],
                     "fsc05_with_truth_angst": agreement["fsc05_angst"],
                     "fsc0143_with_truth_angst": agreement["fsc0143_angst"]}
        oriented_files.update({"subtomograms": str(cut["star"]), "average": str(average_path),
                               "average_fsc": str(fsc_png)})
        done("average", f"{averaging['n_particles']} subtomograms of {averaging['box']}^3: "
                        f"half-map FSC 0.143 {averaging['fsc0143_angst']:.1f} Å; against the "
                        f"true {target}: correlation {averaging['correlation_with_truth']:.3f}, "
                        f"FSC 0.5 {averaging['fsc05_with_truth_angst']:.1f} Å")

    blobs = pick_blobs(sim.tomogram, diameter_angst=BLOB_DIAMETER_ANGST)
    blob_scores = evaluate_picks(instances, truth, blobs)
    soft_baseline, _ = membrane_map(sim.tomogram, thickness_angst=MEMBRANE_THICKNESS_ANGST)
    threshold_scores = evaluate_segmentation(sim.membranes, soft_baseline, threshold=0.5,
                                             surface=False)
    baselines = {"blob_picker": {k: blob_scores[k] for k in ("F1", "precision", "recall")},
                 "threshold_membranes": {"dice": threshold_scores["dice"]}}
    done("baselines", f"blob picker F1 {blob_scores['F1']:.3f} (ours "
                      f"{pick_scores['F1']:.3f}), thresholded density Dice "
                      f"{threshold_scores['dice']:.3f} (ours {seg_scores['dice']:.3f})")

    view = out / "view.png"
    # the fitted surfaces drawn over the network's membranes, softened into a class map;
    # the oriented class as a third map: the average placed back at its picks
    fitted_soft = np.clip(ndimage.gaussian_filter(fitted.mask.astype(np.float32), 0.8) * 1.5,
                          0, 1)
    classes = [membrane, fitted_soft]
    if averaging:
        placed = place_back(sim.tomogram.data.shape, avg.average, positions_voxels(oriented)[kept],
                            mats)
        top = float(np.percentile(placed[placed > 0], 99)) if (placed > 0).any() else 1.0
        classes.append(np.clip(placed / top, 0, 1))
    # one scene (low-pass, transfer functions, ambient occlusion, shadows) for both
    scene = Scene(np.asarray(sim.tomogram.data), classes)
    write_png(view, scene.render(Camera(960, 720, azimuth=30, elevation=25)),
              overwrite=overwrite)
    done("render", view.name)

    turntable = out / "turntable.gif"
    frames = render_turntable(scene, Camera(320, 240, azimuth=30, elevation=25), turntable,
                              frames=turntable_frames, fps=8.0, overwrite=overwrite)
    done("turntable", f"{turntable.name}, {frames} frames")

    summary = {
        "seed": seed,
        "size_xyz": list(size_xyz),
        "voxel_size_angst": vs,
        "files": {**paths, "membranes": str(membranes_path), "picks_csv": str(picks_csv),
                  "picks_relion5": str(picks_star), "classified_csv": str(classified_csv),
                  **oriented_files, "view": str(view), "turntable": str(turntable),
                  "surfaces": surfaces},
        "segmentation": {k: seg_scores[k] for k in ("dice", "surface_dice") if k in seg_scores},
        "membranes": {"instances": fitted.info["instances"], "closed": fitted.info["closed"],
                      "sheets": fitted.info["sheets"], "dice_fitted": fit_scores["dice"],
                      "table": fitted.table},
        "picking": {k: pick_scores[k] for k in ("F1", "precision", "recall")},
        "classification": {"model": classifier_card.get("name", default_classifier_path().stem),
                           "F1_macro": classifier_f1, "picker_F1_macro": picker_class_f1,
                           "called": classified["class"].value_counts().to_dict()},
        "orientation": orientation,
        "average": averaging,
        "baselines": baselines,
        "model": card.get("name", default_model_path().name),
        "seconds": steps,
        "cpu_seconds": cpu,
        "total_seconds": round(sum(steps.values()), 2),
        "total_cpu_seconds": round(sum(cpu.values()), 2),
        "load_average": list(os.getloadavg()),
    }
    write_json(summary_path, summary, overwrite=overwrite)
    log(f"summary: {summary_path}")
    return summary
