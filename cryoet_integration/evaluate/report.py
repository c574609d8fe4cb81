"""Reports of evaluation results: a terminal table and a PNG figure (JSON: ``json_output``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from formats.atomic import atomic_path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


PICK_ROWS = [("RR", "RR (results reported)"), ("TP", "TP (particles found)"),
             ("FP", "FP (picks on background)"), ("FN", "FN (particles missed)"),
             ("multiple_hits", "MH (particles hit more than once)"),
             ("average_distance", "AD (average distance, voxels)"), ("recall", "recall"),
             ("precision", "precision (TP / RR)"), ("miss_rate", "miss rate"), ("F1", "F1"),
             ("picks_on_excluded", "picks on excluded classes"),
             ("picks_clipped", "picks clipped into the volume"),
             ("classification_F1_macro", "classification F1 (mean over classes)")]
SEG_ROWS = [("dice", "Dice / F1"), ("surface_dice", "Surface-Dice"),
            ("surface_precision", "surface precision"), ("surface_recall", "surface recall"),
            ("iou", "IoU"), ("miou", "mIoU (incl. background)"),
            ("pixel_accuracy", "pixel accuracy"), ("precision", "precision"),
            ("recall", "recall"), ("per_slice_dice_mean", "mean per-slice Dice")]


def print_table(result: dict[str, Any], kind: str) -> None:
    """Print ``result`` of ``evaluate_picks`` (kind "picks") or ``evaluate_segmentation``."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    main = Table(title="Localisation (SHREC 2021 rules)" if kind == "picks" else "Segmentation")
    main.add_column("metric")
    main.add_column("value", justify="right")
    for key, label in PICK_ROWS if kind == "picks" else SEG_ROWS:
        if key in result:
            main.add_row(label, _fmt(result[key]))
    console.print(main)
    per_class = result.get("per_class") or {}
    if per_class:
        table = Table(title="Per class")
        cols = (["n_true", "precision", "recall", "F1", "localisation_recall"] if kind == "picks"
                else ["dice", "surface_dice", "iou", "precision", "recall"])
        table.add_column("class")
        for c in cols:
            table.add_column(c, justify="right")
        for name, scores in per_class.items():
            table.add_row(name, *[_fmt(scores.get(c)) for c in cols])
        console.print(table)
    caps = result.get("missing_wedge_caps")
    if caps:
        _inside_outside_table(console, caps, "caps",
                              f"Missing-wedge caps (normal within {caps['angle_deg']:g}° of z)")
    hidden = result.get("wedge_hidden")
    if hidden:
        lo, hi = hidden["tilt_range_deg"]
        _inside_outside_table(console, hidden, "hidden membrane",
                              f"Membrane no tilt of {lo:g}..{hi:g}° shows within "
                              f"{hidden['tolerance_deg']:g}° of edge-on")
    if kind == "picks" and result.get("size_groups"):
        table = Table(title="F1 by size group")
        table.add_column("group")
        table.add_column("classes")
        table.add_column("mean F1", justify="right")
        for name, group in result["size_groups"].items():
            table.add_row(name, ", ".join(group["classes"]), _fmt(group["F1"]))
        console.print(table)


def _inside_outside_table(console, scores: dict[str, Any], what: str, title: str) -> None:
    from rich.table import Table

    cols = ("dice", "surface_dice", "precision", "recall")
    table = Table(title=title)
    table.add_column("region")
    for c in cols:
        table.add_column(c, justify="right")
    for name in ("inside", "outside"):
        table.add_row(f"{name} {what}", *[_fmt(scores[name].get(c)) for c in cols])
    console.print(table)


def write_figure(path: str | Path, result: dict[str, Any], kind: str,
                 overwrite: bool = False) -> None:
    """PNG: per-class F1 and the confusion matrix (picks) or per-class Dice and the
    per-slice Dice curve along z (segmentation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    per_class = result.get("per_class") or {}
    names = list(per_class)
    if kind == "picks":
        values = [per_class[n]["F1"] or 0.0 for n in names]
        left.bar(range(len(names)), values, color="tab:blue")
        left.set_ylabel("F1 (classification)")
        left.set_title(f"localisation F1 {result['F1']:.3f}, "
                       f"P {result['precision']:.3f}, R {result['recall']:.3f}")
        conf = result["confusion"]
        matrix = np.asarray(conf["matrix"], dtype=float)
        im = right.imshow(matrix, cmap="viridis", aspect="auto")
        if len(matrix) <= 20:
            for (i, j), count in np.ndenumerate(matrix):
                if count:
                    right.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=7,
                               color="white" if count < matrix.max() / 2 else "black")
        right.set_xticks(range(len(conf["labels"])), conf["labels"], rotation=60, fontsize=7)
        right.set_yticks(range(len(conf["labels"])), conf["labels"], fontsize=7)
        right.set_xlabel("predicted (first hit)")
        right.set_ylabel("true")
        right.set_title("confusion matrix")
        fig.colorbar(im, ax=right)
    else:
        if not names:
            names, per_class = ["foreground"], {"foreground": result}
        values = [per_class[n]["dice"] for n in names]
        surf = [per_class[n].get("surface_dice") or 0.0 for n in names]
        x = np.arange(len(names))
        left.bar(x - 0.2, values, 0.4, label="Dice")
        left.bar(x + 0.2, surf, 0.4, label="Surface-Dice")
        left.legend()
        left.set_title("per class")
        curve = np.array([np.nan if v is None else v for v in result["per_slice_dice"]], float)
        right.plot(np.arange(len(curve)), curve, color="tab:red")
        right.set_xlabel("z slice")
        right.set_ylabel("Dice")
        right.set_title("per-slice Dice")
        right.set_ylim(0, 1.02)
    left.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    left.set_ylim(0, 1.02)
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
