"""Score the subtomogram classifier on held-out simulated tomograms (docs/classifier.md).

Uses the picker's held-out sets (``validation/score_picker.py``: seeds and imaging
conditions no recipe draws, simulated once into the same cache):

1. picks at the TRUE positions (fiducials left out): object accuracy over the particle
   classes (overall and the mean over classes, chance 1/K), and the paper's segmentation
   metrics against targets made as in training (particle mask from the instance map,
   density from the class average under the true orientations): pixel accuracy, mIoU,
   density correlation;
2. the learned picker's picks (``cryovis pick``, default model) re-classified with
   ``cryovis classify``: the class macro F1 of ``cryovis evaluate picks`` before and after;
3. the feature vectors of true picks of the types neither model saw (``unseen-types``):
   a PCA / t-SNE figure coloured by the true class (``--figures``).

    .venv/bin/python -m validation.score_classifier \
        --json classifier_scores.json --figures docs/images
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from cryoet_integration.picking.recipes import simulate_cached

from .score_picker import SETS, SIZE

SCORED_SETS = ("seen-randomised",)
EXCLUDE = ["fiducial"]


def cli(*args: str) -> None:
    exe = str(Path(sys.executable).with_name("cryovis"))
    res = subprocess.run([exe, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"cryovis {' '.join(args)} failed: {res.stderr.strip()}")


def true_pick_scores(paths: dict[str, Path], net, card: dict) -> tuple[dict, dict]:
    """Scores at the true positions and the boxes' predictions (for figures)."""
    import pandas as pd

    from cryoet_integration.subtomograms.classifier.data import load_classifier_data
    from cryoet_integration.subtomograms.classifier.training import (
        predict_boxes,
        score_predictions,
    )

    classes = list(card["classes"])
    truth = pd.read_csv(paths["particles"])
    keep = ~truth["class"].isin(EXCLUDE) & truth["class"].isin(classes)
    work = Path(paths["particles"]).with_name(Path(paths["particles"]).stem + "_scored.csv")
    truth[keep].to_csv(work, index=False)
    data = load_classifier_data([str(paths["tomogram"])], [str(work)],
                                int(card["classifier"]["box"]), 0, float(card["voxel_size"]),
                                [str(paths["instances"])])
    labels = np.array([classes.index(data.classes[k]) for k in data.train.labels])
    pred = predict_boxes(net, data.train.images)
    scores = score_predictions(pred, labels, data.train.masks, data.train.densities,
                               len(classes))
    scores["per_class_accuracy"] = {classes[k]: round(v, 4)
                                    for k, v in scores["per_class_accuracy"].items()}
    scores["n_classes_present"] = len(scores["per_class_accuracy"])
    return scores, {"features": pred["features"], "labels": [classes[k] for k in labels]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="classifier (default: the shipped one)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache/cryovis/eval/picker"))
    parser.add_argument("--work", default="classifier_eval", help="folder for picks, scores")
    parser.add_argument("--figures", default=None, help="folder for the feature figures")
    parser.add_argument("--json", default=None, help="write the scores as JSON (scripts never "
                        "edit a model card)")
    args = parser.parse_args()

    from cryoet_integration.subtomograms.classifier.prediction import (
        default_classifier_path,
        load_classifier,
        plot_features,
    )

    model = args.model or str(default_classifier_path().with_suffix(""))
    net, card = load_classifier(model)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    seen_features: dict = {}
    for set_name in SCORED_SETS:
        for seed, opts in SETS[set_name]:
            name = f"eval_{set_name}_{seed}"
            paths = simulate_cached(args.cache, name, seed, SIZE, **opts)
            scores, pred = true_pick_scores(paths, net, card)
            seen_features = seen_features or {"seed": seed, **pred}
            picks = work / f"{name}_picker_default.csv"
            if not picks.exists():
                cli("pick", str(paths["tomogram"]), "--out", str(picks))
            classified = work / f"{name}_classified.csv"
            cli("classify", str(paths["tomogram"]), str(picks), "--model", model, "--out",
                str(classified), "--force")
            f1 = {}
            for kind, file in (("picker", picks), ("classified", classified)):
                out = work / f"{name}_{kind}.json"
                cli("evaluate", "picks", "--instances", str(paths["instances"]), "--truth",
                    str(paths["particles"]), "--predictions", str(file), "--exclude",
                    *EXCLUDE, "--json", str(out), "--force")
                f1[kind] = json.loads(out.read_text())["classification_F1_macro"]
            row = {"set": set_name, "seed": seed, "true_picks": scores,
                   "picker_class_F1_macro": f1["picker"],
                   "classified_class_F1_macro": f1["classified"]}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "true_picks"}
                             | {k: scores[k] for k in ("object_accuracy",
                                                       "class_mean_accuracy", "mIoU",
                                                       "pixel_accuracy", "density_cc")}),
                  flush=True)
    keys = ("object_accuracy", "class_mean_accuracy", "pixel_accuracy", "mIoU",
            "particle_IoU", "density_cc")
    mean = {k: round(float(np.mean([r["true_picks"][k] for r in rows])), 4) for k in keys}
    before = [r["picker_class_F1_macro"] or 0.0 for r in rows]
    after = [r["classified_class_F1_macro"] or 0.0 for r in rows]
    mean.update(picker_class_F1_macro=round(float(np.mean(before)), 4),
                classified_class_F1_macro=round(float(np.mean(after)), 4))
    print("\n| set | seed | boxes | object acc. | class-mean acc. | pixel acc. | mIoU | "
          "density cc | picker class F1 | re-classified class F1 |")
    print("|" + "---|" * 10)
    for r in rows:
        t = r["true_picks"]
        print(f"| {r['set']} | {r['seed']} | {t['n']} | {t['object_accuracy']:.3f} | "
              f"{t['class_mean_accuracy']:.3f} | {t['pixel_accuracy']:.3f} | {t['mIoU']:.3f} | "
              f"{t['density_cc']:.3f} | {r['picker_class_F1_macro'] or 0:.3f} | "
              f"{r['classified_class_F1_macro'] or 0:.3f} |")
    print(f"\nmean: {json.dumps(mean)}")
    if args.figures:
        figures = Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
        plot_features(seen_features["features"], seen_features["labels"],
                      figures / "classifier_features_seen.png",
                      title=f"held-out {seen_features['seed']}, true classes")
        seed, opts = SETS["unseen-types"][0]
        paths = simulate_cached(args.cache, f"eval_unseen-types_{seed}", seed, SIZE, **opts)
        feats, labels = unseen_features(paths, net, card)
        plot_features(feats, labels, figures / "classifier_features_unseen.png",
                      title=f"unseen types {seed}, true classes")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": "python -m validation.score_classifier " + " ".join(sys.argv[1:]),
             "rows": rows, "mean": mean}, indent=2) + "\n")
    return 0


def unseen_features(paths: dict[str, Path], net, card: dict) -> tuple[np.ndarray, list[str]]:
    """Feature vectors of the true picks of a tomogram whose types the model never saw,
    labelled with their true classes."""
    import pandas as pd

    from cryoet_integration.subtomograms.classifier.prediction import classify_picks
    from formats import read_volume

    truth = pd.read_csv(paths["particles"])
    truth = truth[~truth["class"].isin(EXCLUDE)]
    vol = read_volume(paths["tomogram"])
    res = classify_picks(vol.data, float(vol.voxel_size), truth[["x", "y", "z"]].to_numpy(),
                         net, card)
    return res.features, list(truth["class"][res.kept])


if __name__ == "__main__":
    sys.exit(main())
