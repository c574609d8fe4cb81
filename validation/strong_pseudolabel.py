"""Weak vs strong classifier on simulated tomograms (issue #15, Nano-Ötzi sections 4-4.5).

Stages (run from the repository root, ``python -m validation.strong_pseudolabel STAGE``):

``prepare``  simulates the painted tomogram and the held-out ones (160x160x80 voxels,
             ``SimulationConfig.randomised``, three classes: 1 background, 2 membrane,
             3 particles), paints short strokes on the painted one only, and runs
             ``cryovis pseudolabel`` there (soft maps + a saved forest) and with the saved
             forest on the held-out tomograms.
``truth``    writes the painted tomogram's full ground truth as the same K-map family
             (one-hot), so the reference network is trained exactly like the strong one.
``figure``   the docs figure (like the paper's Figs 4 and 12): slices of the painted and a
             held-out tomogram, strokes, pseudo-labels, network output and a
             segmentation-aware render (``cryovis render``) of the network's soft output.
``score``    scores the weak classifier and every trained network (``--model NAME=PATH``)
             on the held-out tomograms with ``evaluate.binary_scores`` (the house F1): the
             membrane map thresholded at 0.5 and the argmax per class. Writes ``--json``.

The two trainings (pseudo-labels and full ground truth, same budget) are plain
``cryovis train segmenter`` commands; docs/pseudolabel.md lists them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

NAMES = ["background", "membrane", "particle"]
PAINTED_SEED = 101
HELD_OUT_SEEDS = (202, 303)
SIZE_XYZ = (160, 160, 80)
STROKES_PER_CLASS = 200
STROKE_HALF_LENGTH = 3


def truth_labels(sim_labels: np.ndarray) -> np.ndarray:
    """Simulator labels (0 background, 1 membrane, 2.. particles) as stroke values 1..3."""
    lab = np.asarray(sim_labels)
    return np.where(lab == 0, 1, np.where(lab == 1, 2, 3)).astype(np.int8)


def paint_strokes(truth: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Short x-lines (at most 2 * half length + 1 voxels, inside their class) at random
    voxels of every class, as a user scribbles in a viewer."""
    rng = np.random.default_rng(seed)
    strokes = np.zeros_like(truth)
    for c in np.unique(truth):
        zz, yy, xx = np.nonzero(truth == c)
        for i in rng.choice(len(zz), min(per_class, len(zz)), replace=False):
            for d in range(-STROKE_HALF_LENGTH, STROKE_HALF_LENGTH + 1):
                x = xx[i] + d
                if 0 <= x < truth.shape[2] and truth[zz[i], yy[i], x] == c:
                    strokes[zz[i], yy[i], x] = c
    return strokes


def _cryovis(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cryoet_integration.cli", *args], check=True)


def prepare(work: Path) -> None:
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram
    from formats import Volume, write_volume

    work.mkdir(parents=True, exist_ok=True)
    for seed in (PAINTED_SEED, *HELD_OUT_SEEDS):
        tomo = work / f"tomo_{seed}.mrc"
        if tomo.exists():
            continue
        sim = simulate_tomogram(seed=seed, size_xyz=SIZE_XYZ,
                                config=SimulationConfig.randomised(seed))
        vs = sim.tomogram.voxel_size
        truth = truth_labels(sim.labels)
        write_volume(work / f"truth_{seed}.mrc", Volume(truth, voxel_size=vs))
        if seed == PAINTED_SEED:
            strokes = paint_strokes(truth, STROKES_PER_CLASS)
            write_volume(work / f"strokes_{seed}.mrc", Volume(strokes, voxel_size=vs))
            print(f"strokes: {np.count_nonzero(strokes)} voxels "
                  f"({100 * np.count_nonzero(strokes) / strokes.size:.3f} %)", flush=True)
        write_volume(tomo, sim.tomogram)
    painted = PAINTED_SEED
    _cryovis("pseudolabel", str(work / f"tomo_{painted}.mrc"), "--labels",
             str(work / f"strokes_{painted}.mrc"), "--classes", *NAMES, "--out",
             str(work / f"weak_{painted}.mrc"), "--labels-out",
             str(work / f"weak_{painted}_labels.mrc"), "--save-classifier",
             str(work / "weak.npz"), "--force")
    for seed in HELD_OUT_SEEDS:
        _cryovis("pseudolabel", str(work / f"tomo_{seed}.mrc"), "--classifier",
                 str(work / "weak.npz"), "--out", str(work / f"weak_{seed}.mrc"),
                 "--labels-out", str(work / f"weak_{seed}_labels.mrc"), "--force")


def write_truth_family(work: Path, seed: int = PAINTED_SEED) -> Path:
    """The ground truth of ``seed`` as one-hot class maps ``gt_<seed>_<class>.mrc`` with
    their manifest: the pseudo-label format, so both networks train the same way."""
    from cryoet_integration.segmentation.classmaps import class_map_paths, write_manifest
    from formats import Volume, read_volume, write_volume

    truth = read_volume(work / f"truth_{seed}.mrc")
    out = work / f"gt_{seed}.mrc"
    for k, path in enumerate(class_map_paths(out, NAMES).values(), start=1):
        write_volume(path, Volume((np.asarray(truth.data) == k).astype(np.float32),
                                  voxel_size=truth.voxel_size), overwrite=True)
    write_manifest(out, NAMES, [1, 2, 3], overwrite=True)
    return out


def _scores(truth: np.ndarray, membrane: np.ndarray, labels: np.ndarray) -> dict:
    from cryoet_integration.evaluate.segmentation import binary_scores

    row = {"membrane_F1_at_0.5": binary_scores(truth == 2, membrane > 0.5,
                                                surface=False)["F1"]}
    for k, name in enumerate(NAMES, start=1):
        row[f"argmax_F1_{name}"] = binary_scores(truth == k, labels == k, surface=False)["F1"]
        row[f"called_{name}"] = float(np.mean(labels == k))
        row[f"true_{name}"] = float(np.mean(truth == k))
    return {k: round(v, 4) for k, v in row.items()}


def weak_outputs(work: Path, seed: int, rule: str, threads: int) -> tuple[Path, Path]:
    """The weak classifier's soft maps and argmax of ``seed`` under prior ``rule``: the
    ``prepare`` outputs for ``auto`` (and on the painted tomogram, where auto estimates),
    else a ``cryovis pseudolabel --priors RULE`` run with the saved forest."""
    if rule == "auto" or (rule == "estimate" and seed == PAINTED_SEED):
        return work / f"weak_{seed}.mrc", work / f"weak_{seed}_labels.mrc"
    stem, labels = work / f"weak_{seed}_{rule}.mrc", work / f"weak_{seed}_{rule}_labels.mrc"
    if not labels.exists():
        _cryovis("pseudolabel", str(work / f"tomo_{seed}.mrc"), "--classifier",
                 str(work / "weak.npz"), "--out", str(stem), "--labels-out", str(labels),
                 "--priors", rule, "--threads", str(threads), "--force")
    return stem, labels


def score(work: Path, models: dict[str, str], rules: list[str], threads: int) -> dict:
    """Weak classifier (on every tomogram) and networks (on the held-out ones) under each
    class-prior rule, applied to both alike."""
    from formats import read_volume

    rows = []
    for seed in (PAINTED_SEED, *HELD_OUT_SEEDS):
        truth = np.asarray(read_volume(work / f"truth_{seed}.mrc").data)
        tomo = str(work / f"tomo_{seed}.mrc")
        for rule in rules:
            outputs = {"weak classifier": weak_outputs(work, seed, rule, threads)}
            for name, model in models.items() if seed != PAINTED_SEED else ():
                stem = work / f"net_{name}_{seed}_{rule}.mrc"
                labels = work / f"net_{name}_{seed}_{rule}_labels.mrc"
                weights = Path(model).with_suffix(".pt")
                if not labels.exists() or labels.stat().st_mtime < weights.stat().st_mtime:
                    _cryovis("segment", tomo, "--model", model, "--out", str(stem),
                             "--labels-out", str(labels), "--priors", rule, "--precision",
                             "fp32", "--threads", str(threads), "--force")
                outputs[f"network ({name})"] = (stem, labels)
            for method, (stem, labels) in outputs.items():
                membrane = np.asarray(read_volume(stem.with_name(
                    f"{stem.stem}_membrane.mrc")).data)
                row = {"tomogram": seed, "held_out": seed != PAINTED_SEED, "priors": rule,
                       "method": method,
                       **_scores(truth, membrane, np.asarray(read_volume(labels).data))}
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = {}
    for rule in rules:
        held = [r for r in rows if r["held_out"] and r["priors"] == rule]
        summary[rule] = {m: {k: round(float(np.mean([r[k] for r in held if r["method"] == m])),
                                      4)
                             for k in ("membrane_F1_at_0.5", "argmax_F1_background",
                                       "argmax_F1_membrane", "argmax_F1_particle")}
                         for m in dict.fromkeys(r["method"] for r in held)}
    return {"painted_seed": PAINTED_SEED, "held_out_seeds": list(HELD_OUT_SEEDS),
            "size_xyz": list(SIZE_XYZ), "classes": NAMES, "models": models,
            "rows": rows, "held_out_means": summary}


def _soft_rgb(stem: Path, z: int) -> np.ndarray:
    """Membrane (orange) and particle (blue) probabilities of slice ``z`` as an RGB image."""
    from formats import read_volume

    rgb = np.zeros(read_volume(stem.with_name(f"{stem.stem}_membrane.mrc")).data.shape[1:] + (3,))
    for name, colour in (("membrane", (0.9, 0.6, 0.0)), ("particle", (0.35, 0.7, 0.9))):
        p = np.asarray(read_volume(stem.with_name(f"{stem.stem}_{name}.mrc")).data[z])
        rgb += p[..., None] * np.array(colour)
    return np.clip(rgb, 0, 1)


def figure(work: Path, model_name: str, out: Path, seed: int = HELD_OUT_SEEDS[0]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from formats import read_volume

    net = work / f"net_{model_name}_{seed}_auto.mrc"
    render = work / f"render_{model_name}_{seed}.png"
    if not render.exists():
        _cryovis("render", str(work / f"tomo_{seed}.mrc"), "--classes", str(net), "--out",
                 str(render), "--size", "480x360", "--elevation", "35", "--threads", "1",
                 "--colors", "#e69900,#59b3e6",
                 "--force")

    def gray(s):
        tomo = np.asarray(read_volume(work / f"tomo_{s}.mrc").data)
        z = tomo.shape[0] // 2
        return tomo[z], z

    fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
    img, z = gray(PAINTED_SEED)
    strokes = np.asarray(read_volume(work / f"strokes_{PAINTED_SEED}.mrc").data)
    band = strokes[max(0, z - 3):z + 4].max(0)  # strokes within 3 slices, to be visible
    overlay = np.zeros(band.shape + (4,))
    for v, colour in ((1, (0.6, 0.6, 0.6)), (2, (0.9, 0.6, 0.0)), (3, (0.35, 0.7, 0.9))):
        overlay[band == v] = (*colour, 1.0)
    truth = np.asarray(read_volume(work / f"truth_{PAINTED_SEED}.mrc").data[z])
    panels = [
        (axes[0, 0], img, f"painted tomogram {PAINTED_SEED}, z = {z}", "gray"),
        (axes[0, 1], img, "strokes (z ± 3): background, membrane, particle", "gray"),
        (axes[0, 2], _soft_rgb(work / f"weak_{PAINTED_SEED}.mrc", z),
         "pseudo-labels (weak classifier)", None),
        (axes[0, 3], _soft_rgb_truth(truth), "ground truth", None),
    ]
    img2, z2 = gray(seed)
    panels += [
        (axes[1, 0], img2, f"held-out tomogram {seed}, z = {z2}", "gray"),
        (axes[1, 1], _soft_rgb(work / f"weak_{seed}.mrc", z2), "weak classifier", None),
        (axes[1, 2], _soft_rgb(net, z2), f"network ({model_name})", None),
        (axes[1, 3], plt.imread(render), "render of the network's soft output", None),
    ]
    for ax, data, title, cmap in panels:
        ax.imshow(data, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    axes[0, 1].imshow(overlay, interpolation="nearest")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)


def _soft_rgb_truth(truth: np.ndarray) -> np.ndarray:
    rgb = np.zeros(truth.shape + (3,))
    rgb[truth == 2] = (0.9, 0.6, 0.0)
    rgb[truth == 3] = (0.35, 0.7, 0.9)
    return rgb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("prepare", "truth", "score", "figure"))
    parser.add_argument("--work", default="strong_validation", help="working folder")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="score: a trained network (repeatable)")
    parser.add_argument("--priors", nargs="+", default=["auto", "estimate"],
                        help="score: class-prior rules, applied to both classifiers alike")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="score: write the results here")
    parser.add_argument("--figure", default="docs/images/pseudolabel_strong.png",
                        help="figure: output PNG")
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.stage == "prepare":
        prepare(work)
    elif args.stage == "figure":
        figure(work, next(iter(dict(m.split("=", 1) for m in args.model))), Path(args.figure))
    elif args.stage == "truth":
        print(write_truth_family(work))
    else:
        models = dict(m.split("=", 1) for m in args.model)
        result = score(work, models, args.priors, args.threads)
        text = json.dumps(result, indent=2) + "\n"
        if args.json:
            Path(args.json).write_text(text)
        print(json.dumps(result["held_out_means"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
