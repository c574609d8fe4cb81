"""Score pickers on held-out simulated tomograms with SHREC 2021 rules (docs/picking.md).

Simulates (once, cached) tomograms with seeds and imaging conditions the picker recipes
never use, picks each with every ``--model`` (``cryovis pick``) and with the blob baseline
(``cryovis pick --method blob``), scores the picks with ``cryovis evaluate picks`` and
prints markdown tables: localisation over all particles, over the large classes
(>= 400 kDa, from the simulated shapes' volumes at 0.81 Da/Å^3), per-class F1 by size
group, and the set of particle types the default picker never saw.

    .venv/bin/python validation/score_picker.py --model cryoet_integration/models/picker_default \
        --json picker_scores.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from cryoet_integration.picking.recipes import HELD_OUT_CLASSES, simulate_cached
from cryoet_integration.simulate.shapes import RANDOM_SHAPE

SIZE = [256, 256, 128]
# name -> (seed, options of picking.recipes.simulation_config)
SETS = {
    "seen-randomised": [(41000 + i, {"exclude_classes": list(HELD_OUT_CLASSES)}) for i in range(2)],
    "seen-fixed": [(41100, {"exclude_classes": list(HELD_OUT_CLASSES), "randomised": False})],
    "unseen-types": [(42000 + i, {"only_classes": list(HELD_OUT_CLASSES)}) for i in range(2)],
    # random shapes only, of seeds the recipe never draws: new shapes, sizes and conditions
    "unseen-shapes": [(43000, {"only_classes": [], "random_shape_fraction": 1.0})],
}
LARGE_KDA = 400.0
DALTON_PER_A3 = 0.81  # protein at 1.35 g/cm^3


def class_masses_kda() -> dict[str, float]:
    """Mass (kDa) of each simulated particle type from its solid volume on a 3 Å grid."""
    from cryoet_integration.simulate.shapes import CLASSES

    out = {}
    for name, cls in CLASSES.items():
        ext = cls.extent()
        axis = np.arange(-ext, ext + 1e-6, 3.0)
        out[name] = float(cls.rasterise(axis, axis, axis).sum() * 27.0 * DALTON_PER_A3 / 1000)
    return out


def cli(*args: str) -> None:
    exe = str(Path(sys.executable).with_name("cryovis"))
    res = subprocess.run([exe, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"cryovis {' '.join(args)} failed: {res.stderr.strip()}")


def score(paths: dict[str, Path], picks: Path, exclude: list[str], out: Path) -> dict:
    if not out.exists():
        cli("evaluate", "picks", "--instances", str(paths["instances"]), "--truth",
            str(paths["particles"]), "--predictions", str(picks), "--exclude", *exclude,
            "--json", str(out), "--force")
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[],
                        help="picker model(s) to score (default: the shipped one)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache/cryovis/eval/picker"))
    parser.add_argument("--work", default="picker_eval", help="folder for picks and scores")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--no-blob", action="store_true")
    parser.add_argument("--only-blob", action="store_true", help="score only the blob picker")
    parser.add_argument("--json", default=None,
                        help="write the rows and the mean held-out scores (the card's "
                        "held_out section) as JSON; scripts never edit a model card")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    masses = class_masses_kda()
    large = sorted(c for c, m in masses.items() if m >= LARGE_KDA)
    # random shapes have no one mass: never "large"
    small = sorted(c for c, m in masses.items() if m < LARGE_KDA) + [RANDOM_SHAPE]
    methods = {Path(m).stem: ["--model", m] for m in args.model} or {"picker_default": []}
    if args.only_blob:
        methods = {}
    if not args.no_blob:
        methods["blob"] = ["--method", "blob"]
    results: dict = {"masses_kda": masses, "large_classes": large, "rows": []}
    for set_name in args.sets:
        for seed, opts in SETS[set_name]:
            name = f"eval_{set_name}_{seed}"
            paths = simulate_cached(args.cache, name, seed, SIZE, **opts)
            for method, extra in methods.items():
                picks = work / f"{name}_{method}.csv"
                if not picks.exists():
                    cli("pick", str(paths["tomogram"]), "--out", str(picks), *extra)
                full = score(paths, picks, ["fiducial"], work / f"{name}_{method}.json")
                big = score(paths, picks, ["fiducial", *small],
                            work / f"{name}_{method}_large.json")
                # Picks on small particles are right, just not large: not false positives.
                rr = big["RR"] - big["picks_on_excluded"]
                p_large = big["TP"] / rr if rr else 0.0
                r_large = big["recall"] if big["n_true"] else None
                f1_large = (2 * p_large * r_large / (p_large + r_large) if big["TP"] else 0.0
                            ) if big["n_true"] else None
                row = {"set": set_name, "seed": seed, "method": method, "n_true": full["n_true"],
                       "RR": full["RR"], "TP": full["TP"], "FP": full["FP"],
                       "precision": full["precision"], "recall": full["recall"],
                       "F1": full["F1"], "AD": full["average_distance"],
                       "large_n": big["n_true"], "large_recall": r_large,
                       "large_precision": p_large, "large_F1": f1_large,
                       "class_F1_macro": full["classification_F1_macro"],
                       # per_class also lists predicted-only names (e.g. "blob")
                       "per_class_F1": {c: v["F1"] for c, v in full["per_class"].items()
                                        if "localisation_recall" in v},
                       "per_class_recall": {c: v["localisation_recall"]
                                            for c, v in full["per_class"].items()
                                            if "localisation_recall" in v}}
                results["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if "per_class" not in k}),
                      flush=True)
    print_tables(results)
    results["held_out"] = {
        "command": "python -m validation.score_picker " + " ".join(sys.argv[1:]),
        "rules": "SHREC 2021 localisation (cryovis evaluate picks), fiducials excluded; "
                 f"large = classes >= {LARGE_KDA:g} kDa ({', '.join(large)})",
        "sets": {name: [seed for seed, _ in SETS[name]] for name in args.sets},
        "mean": set_means(rows=results["rows"])}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def set_means(rows: list[dict]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Mean F1, recall, large-class F1 and recall per set and method (None: no such
    particles in the set)."""
    out: dict = {}
    for s in dict.fromkeys(r["set"] for r in rows):
        for m in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["set"] == s and r["method"] == m]
            if sel:
                out.setdefault(s, {})[m] = {
                    k: (round(float(np.mean([r[k] for r in sel if r[k] is not None])), 4)
                        if any(r[k] is not None for r in sel) else None)
                    for k in ("F1", "recall", "large_F1", "large_recall")}
    return out


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def print_tables(results: dict) -> None:
    rows = results["rows"]
    print("\n| set | seed | method | particles | RR | TP | FP | precision | recall | F1 | AD vox "
          "| large n | large recall | large F1 | class macro F1 |")
    print("|" + "---|" * 15)
    for r in rows:
        print(f"| {r['set']} | {r['seed']} | {r['method']} | {r['n_true']} | {r['RR']} | "
              f"{r['TP']} | {r['FP']} | {_f(r['precision'])} | {_f(r['recall'])} | "
              f"{_f(r['F1'])} | {_f(r['AD'])} | {r['large_n']} | {_f(r['large_recall'])} | "
              f"{_f(r['large_F1'])} | {_f(r['class_F1_macro'])} |")
    print("\n| set | method | mean F1 | mean recall | mean large F1 | mean large recall |")
    print("|---|---|---|---|---|---|")
    for s, by_method in set_means(rows).items():
        for m, mean in by_method.items():
            print(f"| {s} | {m} | {_f(mean['F1'])} | {_f(mean['recall'])} | "
                  f"{_f(mean['large_F1'])} | {_f(mean['large_recall'])} |")
    masses = results["masses_kda"]
    classes = sorted({c for r in rows for c in r["per_class_F1"]}, key=lambda c: masses.get(c, 0))
    print("\n| method | " + " | ".join(f"{c} ({masses.get(c, 0):.0f} kDa) F1 / loc. recall"
                                      for c in classes) + " |")
    print("|---|" + "---|" * len(classes))
    for m in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == m]
        cells = []
        for c in classes:
            f1 = [r["per_class_F1"][c] for r in sel if r["per_class_F1"].get(c) is not None]
            rec = [r["per_class_recall"][c] for r in sel if c in r["per_class_recall"]]
            cells.append(f"{np.mean(f1):.3f} / {np.mean(rec):.3f}" if f1 else "-")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
