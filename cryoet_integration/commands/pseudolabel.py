"""``cryovis pseudolabel``: dense soft labels of a tomogram from a few painted strokes.

With ``--labels STROKES.mrc`` (0 = unlabelled, 1..K = classes, on the tomogram's grid) a
random forest learns the classes from the ilastik feature bank at the strokes; with
``--classifier FILE`` a saved one is applied to another tomogram. Class priors are
re-estimated on the painted tomogram itself (EM), since strokes do not sample the classes
in their true proportions. Writes ``<stem>_<class>.mrc`` per class next to ``--out`` (probabilities
summing to 1, as ``cryovis segment`` writes a K-class model's output) and, with
``--labels-out``, the argmax numbered as the strokes were.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CryovisError, require_engine
from ..segmentation.classmaps import class_map_paths, manifest_path, write_manifest
from .options import (
    CREATES_DIRS,
    VOLUME_SUFFIXES,
    add_force,
    add_json,
    add_priors,
    add_threads,
    check_output,
    check_outputs,
    check_same_grid,
    json_file,
    make_folders,
    read_input_volume,
    use_threads,
    write_json_result,
)
from .progress import Report

CLASSIFIER_SUFFIX = ".npz"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pseudolabel", help="soft multi-class labels from a few strokes (weak classifier)",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    parser.add_argument("tomogram", help="tomogram (MRC, EM or TIFF)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", metavar="STROKES",
                        help="stroke label map on the tomogram's grid (0 = unlabelled), or "
                        "a coordinate file (CSV/STAR/... with x, y, z in voxels and a class "
                        "column) whose points are painted as balls of --point-radius")
    source.add_argument("--classifier", metavar="FILE",
                        help="apply a classifier saved with --save-classifier")
    parser.add_argument("--out", required=True,
                        help=f"soft labels: writes <stem>_<class>.mrc per class ({CREATES_DIRS})")
    parser.add_argument("--labels-out", default=None, metavar="MRC",
                        help="also write the argmax labels (stroke values 1..K)")
    parser.add_argument("--save-classifier", default=None, metavar="FILE",
                        help=f"save the trained classifier ({CLASSIFIER_SUFFIX}, no pickle)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                        help="names of the painted classes in increasing label order "
                        "(default class1, class2, ...)")
    parser.add_argument("--point-radius", type=float, default=2.0, metavar="VOXELS",
                        help="radius of the ball painted at each point of a coordinate file "
                        "(default 2 voxels)")
    parser.add_argument("--trees", type=int, default=32,
                        help="random-forest trees (default 32)")
    add_priors(parser)
    parser.add_argument("--voxel-size", type=float, default=None, metavar="A",
                        help="override the tomogram's voxel size (Å)")
    add_threads(parser)
    add_json(parser, "the summary")
    add_force(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    require_engine("scipy", "sklearn")
    with use_threads(args.threads):
        return _pseudolabel(args)


def _pseudolabel(args) -> int:
    import numpy as np

    from formats import Volume, read_volume, write_volume

    from ..pseudolabel.forest import load_forest, save_forest
    from ..pseudolabel.strokes import rasterise_points
    from ..pseudolabel.weak import classify_volume, stroke_classes, train_weak_classifier

    if args.trees < 1:
        raise CryovisError(f"--trees must be >= 1, got {args.trees}")
    if args.classifier and (args.save_classifier or args.classes):
        raise CryovisError("--save-classifier and --classes are for training (--labels)")
    report = Report("pseudolabel")
    forest = load_forest(args.classifier) if args.classifier else None
    volume = read_input_volume(args.tomogram, voxel_size=args.voxel_size, what="tomogram")
    strokes = None
    if args.labels and Path(args.labels).suffix.lower() not in VOLUME_SUFFIXES:
        strokes, names = rasterise_points(args.labels, volume.data.shape,
                                          float(volume.voxel_size or 0.0), args.point_radius,
                                          args.classes)
        stroke_classes(strokes, args.labels)
    elif args.labels:
        stroke_vol = read_volume(args.labels)
        check_same_grid(volume, args.tomogram, stroke_vol, args.labels)
        strokes = np.asarray(stroke_vol.data)
        values = stroke_classes(strokes, args.labels)
        if args.classes and len(args.classes) != len(values):
            raise CryovisError(f"--classes: {len(args.classes)} names for the {len(values)} "
                               f"painted classes of {args.labels} "
                               f"({', '.join(map(str, values))})")
        names = args.classes or [f"class{v}" for v in values]
    else:
        names = forest.names
    targets = class_map_paths(args.out, names)
    labels_out = Path(args.labels_out) if args.labels_out else None
    for path in targets.values():
        check_output(path, args.force, VOLUME_SUFFIXES, "--out")
    if labels_out is not None:
        check_output(labels_out, args.force, VOLUME_SUFFIXES, "--labels-out")
    if args.save_classifier:
        check_output(args.save_classifier, args.force, (CLASSIFIER_SUFFIX,),
                     "--save-classifier")
    manifest = manifest_path(args.out)
    check_output(manifest, args.force, (".json",), "--out")
    outputs = check_outputs([*targets.values(), manifest, labels_out, args.save_classifier,
                             json_file(args)], args.force)

    shape = "x".join(str(n) for n in volume.data.shape[::-1])
    if strokes is not None:
        painted = int(np.count_nonzero(strokes))
        report.say(f"{args.tomogram}: {shape} voxels; {painted} painted voxels "
                   f"({100 * painted / strokes.size:.3f} %) in {len(names)} classes; "
                   f"training a {args.trees}-tree random forest on the ilastik features")
        with report.bar("feature slabs (training)") as update:
            forest = train_weak_classifier(volume, strokes, names, n_trees=args.trees,
                                           threads=args.threads, progress=update)
    else:
        report.say(f"{args.tomogram}: {shape} voxels; classifier {args.classifier} "
                   f"({', '.join(forest.names)})")
    with report.bar("feature slabs (classifying)") as update:
        estimate = args.priors == "estimate" or (args.priors == "auto" and strokes is not None)
        soft = classify_volume(volume, forest, correct_priors=estimate,
                               threads=args.threads, progress=update)
    if soft.priors is not None:
        mix = ", ".join(f"{n} {100 * p:.1f} %" for n, p in zip(names, soft.priors))
        report.say(f"class priors re-estimated on the tomogram: {mix}")

    make_folders(outputs)
    if args.save_classifier:
        save_forest(args.save_classifier, forest, overwrite=args.force)

    def save(path: Path, data) -> None:
        write_volume(path, Volume(data, voxel_size=volume.voxel_size, origin=volume.origin),
                     overwrite=args.force)

    for k, path in enumerate(targets.values()):
        save(path, soft.probabilities[k])
    write_manifest(args.out, names, soft.labels.tolist(), overwrite=args.force)
    hard = soft.hard_labels()
    if labels_out is not None:
        save(labels_out, hard.astype(np.int8 if soft.labels.max() < 128 else np.int16))
    summary = {"outputs": {n: str(p) for n, p in targets.items()},
               "labels": args.labels_out, "classes": names,
               "stroke_values": soft.labels.tolist(),
               "classifier": args.save_classifier or args.classifier,
               "fractions": {n: round(float(np.mean(hard == v)), 5)
                             for n, v in zip(names, soft.labels)}, **soft.info}
    write_json_result(args, summary)
    written = [str(p) for p in targets.values()] + ([str(labels_out)] if labels_out else [])
    report.summary(f"wrote soft labels {', '.join(written)}")
    return 0
