"""``cryovis evaluate picks|segmentation``: SHREC 2021 picking scores and segmentation scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CryovisError, require_engine
from .geometry import add_geometry_options, geometry_options


def register(subparsers) -> None:
    """Add ``evaluate`` with its ``picks`` and ``segmentation`` subcommands."""
    parser = subparsers.add_parser(
        "evaluate", help="score particle picks or a segmentation against ground truth",
        description="Score particle picks (SHREC 2021 rules) or a segmentation (Dice, "
                    "Surface-Dice, per-slice Dice) against ground truth.")
    sub = parser.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True

    picks = sub.add_parser(
        "picks", help="localisation and classification scores of particle picks",
        description="SHREC 2021 localisation/classification scores. Positions in voxels of "
                    "the instance map (rescaled from tables whose voxel size differs).")
    picks.add_argument("--instances", required=True, type=Path,
                       help="particle-instance map (MRC; 0 background, k particle k)")
    picks.add_argument("--truth", required=True, type=Path,
                       help="true particles: any particle file, or CSV id,class,x,y,z (voxels)")
    picks.add_argument("--predictions", required=True, type=Path,
                       help="picks: CSV class,x,y,z[,score] (voxels) or any particle file")
    picks.add_argument("--exclude", nargs="*", default=["fiducial"], metavar="CLASS",
                       help="classes left out of the truth (default: fiducial; "
                            "give --exclude alone to exclude nothing)")
    picks.add_argument("--tomo-name", metavar="NAME",
                       help="use only the rows of this tomogram (files listing several)")
    add_geometry_options(picks)
    picks.add_argument("--size-group", action="append", default=[], metavar="CLASS=GROUP",
                       help="assign a class to a size group (default: classes split in thirds "
                            "by median instance-region volume)")
    _outputs(picks)
    picks.set_defaults(func=run_picks)

    seg = sub.add_parser(
        "segmentation", help="Dice, Surface-Dice, IoU and per-slice Dice of a segmentation",
        description="Score a mask, soft map or label map against a true mask/label map.")
    seg.add_argument("--truth", required=True, type=Path, help="true mask or label map (MRC)")
    seg.add_argument("--prediction", required=True, type=Path, nargs="+",
                     help="prediction (mask, soft map or label map); in --multiclass mode "
                          "also one soft map per class (class k = k-th file)")
    seg.add_argument("--threshold", type=float, default=0.5,
                     help="threshold for soft maps (default 0.5)")
    seg.add_argument("--multiclass", action="store_true",
                     help="score every label value > 0 separately (label maps)")
    seg.add_argument("--region", type=Path, help="score only inside this mask (MRC)")
    seg.add_argument("--no-surface", action="store_true", help="skip Surface-Dice")
    seg.add_argument("--wedge-caps", type=float, nargs="?", const=30.0, metavar="DEG",
                     help="also score inside/outside the missing-wedge caps of the true "
                          "membranes (normal within DEG of z; default 30; binary mode)")
    seg.add_argument("--tilt-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                     help="tilt range (degrees, about y) of the tomogram's series: also score "
                          "the true membrane no tilt views within 5 degrees of edge-on, "
                          "and the rest (binary mode)")
    _outputs(seg)
    seg.set_defaults(func=run_segmentation)


def _outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT",
                        help="write the results as JSON to OUT (no OUT or '-': stdout)")
    parser.add_argument("--png", type=Path, metavar="FIG", help="write a PNG figure")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _check_outputs(args) -> None:
    from formats import check_writable

    for out in (args.json, args.png):
        if out is not None and str(out) != "-":
            check_writable(out, args.force)


def _report(args, result: dict, kind: str) -> int:
    from ..evaluate.report import print_table, write_figure, write_json

    if args.json != "-":
        print_table(result, kind)
    if args.json is not None:
        write_json(args.json, result, overwrite=args.force)
    if args.png is not None:
        write_figure(args.png, result, kind, overwrite=args.force)
    return 0


def run_picks(args) -> int:
    """Score ``--predictions`` against ``--truth`` on ``--instances``."""
    require_engine("scipy", "rich")
    from formats import read_volume

    from ..evaluate import evaluate_picks

    _check_outputs(args)
    mapping = {}
    for item in args.size_group:
        name, sep, group = item.partition("=")
        if not sep or not name.strip() or not group.strip():
            raise CryovisError(f"--size-group expects CLASS=GROUP, got '{item}'")
        mapping[name.strip()] = group.strip()
    instances = read_volume(args.instances)
    if instances.data.ndim != 3:
        raise CryovisError(f"{args.instances}: instance map must be 3D, "
                           f"got shape {instances.data.shape}")
    truth = _one_tomogram(_read_picks(args.truth, args), args.truth, args.tomo_name)
    predictions = _one_tomogram(_read_picks(args.predictions, args), args.predictions,
                                args.tomo_name)
    try:
        result = evaluate_picks(instances, truth, predictions, exclude=args.exclude,
                                size_groups=mapping or None)
    except ValueError as exc:
        raise CryovisError(f"{args.truth} on {args.instances}: {exc}") from None
    result["files"] = {"instances": str(args.instances), "truth": str(args.truth),
                       "predictions": str(args.predictions)}
    return _report(args, result, "picks")


def _read_picks(path: Path, args):
    """A particle table; RELION files get the tomogram geometry options."""
    from formats import detect_format, read_particles

    relion = detect_format(path).startswith("relion")
    return read_particles(path, **(geometry_options(args) if relion else {}))


def _one_tomogram(table, path: Path, name: str | None):
    """The rows of tomogram ``name``; a file listing several tomograms needs a name."""
    names = sorted({str(t) for t in table["tomo_name"] if str(t)})
    if name is not None:
        if names and name not in names:
            raise CryovisError(f"{path}: no particles of tomogram '{name}' "
                               f"(it lists {', '.join(names[:5])})")
        return table[table["tomo_name"].astype(str).isin([name, ""])].reset_index(drop=True)
    if len(names) > 1:
        raise CryovisError(f"{path}: lists {len(names)} tomograms ({', '.join(names[:5])}); "
                           "choose one with --tomo-name")
    return table


def run_segmentation(args) -> int:
    """Score ``--prediction`` against ``--truth``."""
    require_engine("scipy", "rich")
    from formats import read_volume

    from ..evaluate import evaluate_segmentation

    _check_outputs(args)
    if args.wedge_caps is not None and args.multiclass:
        raise CryovisError("--wedge-caps scores a binary membrane mask; drop --multiclass")
    if len(args.prediction) > 1 and not args.multiclass:
        raise CryovisError("several --prediction files need --multiclass "
                           "(one soft map per class)")
    truth = read_volume(args.truth)
    preds = [read_volume(p) for p in args.prediction]
    others = list(zip(args.prediction, preds))
    if args.region is not None:
        others.append((args.region, read_volume(args.region)))
    for path, vol in others:
        if vol.data.shape != truth.data.shape:
            raise CryovisError(f"{args.truth} and {path} differ in shape: "
                               f"{truth.data.shape} vs {vol.data.shape} (z, y, x)")
        if truth.voxel_size > 0 and vol.voxel_size > 0 and \
                abs(vol.voxel_size - truth.voxel_size) > 1e-3 * truth.voxel_size:
            raise CryovisError(f"{args.truth} and {path} differ in voxel size: "
                               f"{truth.voxel_size:g} vs {vol.voxel_size:g} Å")
    prediction = preds[0].data if len(preds) == 1 else _labels_from_soft_maps(
        [v.data for v in preds], args.threshold)
    region = None if args.region is None else others[-1][1].data
    result = evaluate_segmentation(truth.data, prediction, threshold=args.threshold,
                                   multiclass=args.multiclass, region=region,
                                   surface=not args.no_surface)
    if args.wedge_caps is not None:
        from ..evaluate.segmentation import wedge_cap_scores

        result["missing_wedge_caps"] = wedge_cap_scores(truth.data, prediction, args.threshold,
                                                        args.wedge_caps)
    if args.tilt_range is not None:
        from ..evaluate.segmentation import wedge_hidden_scores

        result["wedge_hidden"] = wedge_hidden_scores(truth.data, prediction,
                                                     tuple(args.tilt_range), args.threshold)
    result["files"] = {"truth": str(args.truth),
                       "prediction": [str(p) for p in args.prediction],
                       "region": None if args.region is None else str(args.region)}
    return _report(args, result, "segmentation")


def _labels_from_soft_maps(maps, threshold: float):
    """Labels from one soft map per class: arg-max k+1, background where all < threshold."""
    import numpy as np

    stack = np.stack([np.asarray(m, dtype=np.float32) for m in maps])
    labels = np.argmax(stack, axis=0) + 1
    labels[stack.max(axis=0) < threshold] = 0
    return labels
