"""``cryovis evaluate picks|segmentation``: SHREC 2021 picking scores and segmentation scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CryovisError, require_engine
from .geometry import add_geometry_options, geometry_options
from .options import (
    CREATES_DIRS,
    add_force,
    add_json,
    add_threads,
    add_tilt_range,
    check_output,
    check_outputs,
    check_same_grid,
    json_file,
    json_to_stdout,
    make_folders,
    read_input_volume,
    use_threads,
    write_json_result,
)
from .progress import Report


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
    add_tilt_range(seg, "tilt range of the tomogram's series, degrees about y: also score "
                        "the true membrane no tilt views within 5 degrees of edge-on, and "
                        "the rest (binary mode)")
    _outputs(seg)
    seg.set_defaults(func=run_segmentation)


def _outputs(parser: argparse.ArgumentParser) -> None:
    add_json(parser)
    parser.add_argument("--png", type=Path, metavar="FIG",
                        help=f"write a PNG figure ({CREATES_DIRS})")
    add_threads(parser)
    add_force(parser)


def _check_outputs(args) -> list[Path]:
    if args.png is not None:
        check_output(args.png, args.force, (".png",), "--png")
    return check_outputs([json_file(args), args.png], args.force)


def _report(args, result: dict, kind: str, outputs: list[Path], report: Report) -> int:
    from ..evaluate.report import print_table, write_figure

    if not json_to_stdout(args):
        print_table(result, kind)
    make_folders(outputs)
    write_json_result(args, result)
    if args.png is not None:
        write_figure(args.png, result, kind, overwrite=args.force)
    written = [str(p) for p in outputs]
    report.summary(f"scored {kind}" + (f", wrote {', '.join(written)}" if written else ""))
    return 0


def run_picks(args) -> int:
    """Score ``--predictions`` against ``--truth`` on ``--instances``."""
    require_engine("scipy", "rich")
    with use_threads(args.threads):
        return _score_picks(args)


def _score_picks(args) -> int:
    from ..evaluate import evaluate_picks

    outputs = _check_outputs(args)
    report = Report("evaluate picks")
    mapping = {}
    for item in args.size_group:
        name, sep, group = item.partition("=")
        if not sep or not name.strip() or not group.strip():
            raise CryovisError(f"--size-group expects CLASS=GROUP, got '{item}'")
        mapping[name.strip()] = group.strip()
    instances = read_input_volume(args.instances, what="instance map")
    truth = _one_tomogram(_read_picks(args.truth, args), args.truth, args.tomo_name)
    predictions = _one_tomogram(_read_picks(args.predictions, args), args.predictions,
                                args.tomo_name)
    report.say(f"matching {len(predictions)} picks to {len(truth)} true particles on "
               f"{args.instances}")
    try:
        result = evaluate_picks(instances, truth, predictions, exclude=args.exclude,
                                size_groups=mapping or None)
    except ValueError as exc:
        raise CryovisError(f"{args.truth} on {args.instances}: {exc}") from None
    result["files"] = {"instances": str(args.instances), "truth": str(args.truth),
                       "predictions": str(args.predictions)}
    return _report(args, result, "picks", outputs, report)


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
    with use_threads(args.threads):
        return _score_segmentation(args)


def _score_segmentation(args) -> int:
    from ..evaluate import evaluate_segmentation
    from ..evaluate.segmentation import wedge_cap_scores, wedge_hidden_scores

    outputs = _check_outputs(args)
    report = Report("evaluate segmentation")
    if args.wedge_caps is not None and args.multiclass:
        raise CryovisError("--wedge-caps scores a binary membrane mask; drop --multiclass")
    if len(args.prediction) > 1 and not args.multiclass:
        raise CryovisError("several --prediction files need --multiclass "
                           "(one soft map per class)")
    truth = read_input_volume(args.truth, what="truth")
    preds = [read_input_volume(p, what="prediction") for p in args.prediction]
    region = None if args.region is None else read_input_volume(args.region, what="region")
    for path, vol in list(zip(args.prediction, preds)) + [(args.region, region)]:
        if vol is not None:
            check_same_grid(truth, args.truth, vol, path)
    prediction = preds[0].data if len(preds) == 1 else _labels_from_soft_maps(
        [v.data for v in preds], args.threshold)
    report.say(f"scoring {', '.join(map(str, args.prediction))} against {args.truth} "
               f"({'multi-class' if args.multiclass else f'threshold {args.threshold:g}'}"
               f"{', Surface-Dice' if not args.no_surface else ''})")
    result = evaluate_segmentation(truth.data, prediction, threshold=args.threshold,
                                   multiclass=args.multiclass,
                                   region=None if region is None else region.data,
                                   surface=not args.no_surface)
    if args.wedge_caps is not None:
        report.say(f"scoring the missing-wedge caps (normals within {args.wedge_caps:g}° of z)")
        result["missing_wedge_caps"] = wedge_cap_scores(
            truth.data, prediction, threshold=args.threshold, angle_deg=args.wedge_caps)
    if args.tilt_range is not None:
        report.say("scoring the membrane the tilt range {:g}..{:g}° hides".format(
            *args.tilt_range))
        result["wedge_hidden"] = wedge_hidden_scores(
            truth.data, prediction, tilt_range_deg=tuple(args.tilt_range),
            threshold=args.threshold)
    result["files"] = {"truth": str(args.truth),
                       "prediction": [str(p) for p in args.prediction],
                       "region": None if args.region is None else str(args.region)}
    return _report(args, result, "segmentation", outputs, report)


def _labels_from_soft_maps(maps, threshold: float):
    """Labels from one soft map per class: arg-max k+1, background where all < threshold."""
    import numpy as np

    stack = np.stack([np.asarray(m, dtype=np.float32) for m in maps])
    labels = np.argmax(stack, axis=0) + 1
    labels[stack.max(axis=0) < threshold] = 0
    return labels
