"""``cryovis train segmenter``: train a segmentation model on tomograms and label maps, or
reproduce the shipped membrane model with ``--recipe default-membrane``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import CryovisError, require_engine
from ..segmentation.checkpoint import read_card
from ..segmentation.classmaps import ClassMaps
from ..segmentation.device import resolve_device
from .options import (
    CREATES_DIRS,
    add_device,
    add_force,
    add_json,
    add_threads,
    add_training_budget,
    check_output,
    check_output_folder,
    check_training_budget,
    training_config,
    use_threads,
    write_json_result,
)
from .progress import Report
from .simulate import SIZE_XYZ

DEFAULT_CACHE = Path.home() / ".cache" / "cryovis" / "recipes"


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train models (segmenter, picker, classifier)",
                                   description="Train models.")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    seg = kinds.add_parser(
        "segmenter", help="train a 3D U-Net segmenter",
        description="Train a segmenter on tomograms with label maps (0 background, 1..K "
        "classes, -1 ignore) or soft pseudo-labels, or reproduce the shipped model with "
        "--recipe default-membrane. Writes MODEL.pt + MODEL.json (best validation Dice), "
        "MODEL.state.pt (for --resume) and MODEL_loss.png.")
    seg.add_argument("--recipe", help="named recipe (default-membrane) that simulates its own "
                     "training data")
    seg.add_argument("--tomograms", nargs="+", metavar="MRC", help="training tomograms")
    labels = seg.add_mutually_exclusive_group()
    labels.add_argument("--labels", nargs="+", metavar="MRC", help="label maps, one per tomogram")
    labels.add_argument("--pseudolabels", nargs="+", metavar="MRC",
                        help="soft labels, one per tomogram: the K maps S_<class>.mrc that "
                        "'cryovis pseudolabel --out S.mrc' writes (give S.mrc), learnt by "
                        "regression (2 classes) or cross-entropy (3+); or one soft map in "
                        "[0,1] whose voxels between 0.3 and 0.7 are ignored")
    seg.add_argument("--soft-target", choices=("auto", "regression", "ce"), default="auto",
                     help="K soft maps: MSE regression on the raw output (2 classes; auto's "
                     "choice for 2, the paper's best) or cross-entropy on the argmax (auto's "
                     "choice for 3+)")
    seg.add_argument("--val-tomograms", nargs="+", metavar="MRC", default=[],
                     help="validation tomograms (early stopping, best-model selection)")
    seg.add_argument("--val-labels", nargs="+", metavar="MRC", default=[],
                     help="validation label maps")
    seg.add_argument("--classes", nargs="+", default=None,
                     help="class names for labels 1..K (default: membrane)")
    seg.add_argument("--voxel-size", type=float, default=None, metavar="A",
                     help="model voxel size in Å (data are rescaled to it; default 10)")
    seg.add_argument("--out", required=True,
                     help=f"model path MODEL (writes MODEL.pt, .json; {CREATES_DIRS})")
    add_training_budget(seg, '{"patch_size": [48, 48, 48], "network": {"base_channels": 8}}')
    seg.add_argument("--from", dest="init_from", default=None, metavar="MODEL",
                     help="start from this model's weights (fine-tuning); a model with "
                     "another number of classes (e.g. 2-class -> K-class) keeps all but its "
                     "last layer, which starts fresh. Same network and voxel size required")
    seg.add_argument("--n-train", type=int, default=None,
                     help="recipe: use only the first N simulated training tomograms")
    seg.add_argument("--n-val", type=int, default=None,
                     help="recipe: use only the first N simulated validation tomograms")
    seg.add_argument("--sim-size", metavar="XxYxZ", type=SIZE_XYZ, default=None,
                     help="recipe: simulate tomograms of this size (voxels) instead of the "
                     "recipe's, for a quick run")
    seg.add_argument("--cache", default=str(DEFAULT_CACHE),
                     help="recipe: folder for the simulated training tomograms (default "
                     "~/.cache/cryovis/recipes)")
    add_device(seg)
    seg.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                     help="bfloat16 autocast or float32 (default: the config's, auto = bf16 "
                     "where the CPU/GPU has native bf16)")
    add_threads(seg)
    seg.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(seg, "the training summary")
    add_force(seg)
    seg.set_defaults(func=run)
    from .train_classifier import register as register_classifier
    from .train_picker import register as register_picker

    register_picker(kinds)
    register_classifier(kinds)


def _pairs(tomos: list[str], labels: list[str], what: str) -> list[tuple[str, str]]:
    if len(tomos) != len(labels):
        raise CryovisError(f"{what}: {len(tomos)} tomograms but {len(labels)} label maps")
    return list(zip(tomos, labels))


def _soft_families(paths: list[str]) -> list[ClassMaps | None]:
    """The K-class family of each --pseudolabels path (None for a single soft map); all must
    be of one kind with the same classes in the same order."""
    from ..segmentation.classmaps import find_class_maps

    families = [find_class_maps(p) for p in paths]
    first = families[0]
    for path, fam in zip(paths[1:], families[1:]):
        if (fam is None) != (first is None) or (
                fam is not None and (fam.names, fam.values) != (first.names, first.values)):
            def show(f):
                return "one soft map" if f is None else ", ".join(
                    f"{n}={v}" for n, v in zip(f.names, f.values))
            raise CryovisError(f"{path}: pseudo-label classes ({show(fam)}) differ from "
                               f"{paths[0]}'s ({show(first)})")
    return families


def run(args) -> int:
    check_training_budget(args)
    require_engine("torch", "scipy")
    with use_threads(args.threads):
        return _train(args)


def _train(args) -> int:
    import logging

    from ..segmentation.checkpoint import model_paths
    from ..segmentation.data import channel_labels, load_pair
    from ..segmentation.recipes import get_recipe, prepare_recipe_data
    from ..segmentation.train import resolve_config, train_segmenter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    device = resolve_device(args.device)
    weights, card = model_paths(args.out)
    check_output_folder(weights.parent)
    if not (args.resume or args.force):
        for path in (weights, card):
            check_output(path, False, what="model")
    weights.parent.mkdir(parents=True, exist_ok=True)
    out = weights
    config: dict = {}
    provenance: dict = {"command": "cryovis " + " ".join(sys.argv[1:])}
    pseudo = False
    soft: ClassMaps | None = None
    soft_maps: list = []
    if args.recipe:
        if args.tomograms or args.labels or args.pseudolabels:
            raise CryovisError("--recipe simulates its own data; do not pass --tomograms")
        try:
            config = get_recipe(args.recipe)
        except ValueError as exc:
            raise CryovisError(str(exc)) from None
        sim = config["simulation"]
        for split, n in (("train", args.n_train), ("val", args.n_val)):
            if n is not None:
                sim[f"{split}_seeds"] = sim[f"{split}_seeds"][: max(1, n)]
        if args.sim_size:
            if min(args.sim_size) < 32:
                # smaller boxes hold too little scene to sample training patches from
                raise CryovisError(f"--sim-size: each size must be at least 32 voxels, got "
                                   f"{'x'.join(map(str, args.sim_size))}")
            sim["size_xyz"] = list(args.sim_size)
        try:
            paths = prepare_recipe_data(config, args.cache)
        except ValueError as exc:
            raise CryovisError(str(exc)) from None
        train_pairs, val_pairs = paths["train"], paths["val"]
        provenance.update(recipe=args.recipe, data={
            "simulator": "cryoet_integration.simulate (SimulationConfig.randomised)",
            "simulation": config["simulation"]})
    else:
        if not args.tomograms or not (args.labels or args.pseudolabels):
            raise CryovisError("give --tomograms with --labels or --pseudolabels, or --recipe")
        pseudo = bool(args.pseudolabels)
        train_pairs = _pairs(args.tomograms, args.labels or args.pseudolabels, "--tomograms")
        if pseudo:
            soft_maps = _soft_families(args.pseudolabels)
            soft = soft_maps[0]
            if soft is not None:
                if args.classes:
                    raise CryovisError("--classes: the class names come from the pseudo-label "
                                       f"files ({', '.join(soft.names)})")
                target = args.soft_target
                if target == "auto":
                    target = "regression" if len(soft.names) == 2 else "ce"
                if target == "regression" and len(soft.names) != 2:
                    raise CryovisError(f"--soft-target regression needs 2 classes; "
                                       f"{args.pseudolabels[0]} has {len(soft.names)} "
                                       f"({', '.join(soft.names)})")
                config.update(classes=soft.names, label_values=soft.values,
                              soft_target=target,
                              loss={"regression": 1.0} if target == "regression"
                              else {"ce": 1.0})
                train_pairs = list(zip(args.tomograms, soft_maps))
        val_pairs = _pairs(args.val_tomograms, args.val_labels, "--val-tomograms")
        provenance.update(data={"tomograms": args.tomograms,
                                "labels": args.labels or args.pseudolabels,
                                "pseudolabels": pseudo, "val_tomograms": args.val_tomograms})
    config = training_config(args, config, classes=args.classes, voxel_size=args.voxel_size,
                             precision=args.precision)
    if args.init_from:
        base = read_card(args.init_from)
        mine = config.get("voxel_size")
        if mine is not None and abs(float(base["voxel_size"]) / float(mine) - 1) > 0.02:
            raise CryovisError(f"{args.init_from}: --from model works at {base['voxel_size']} "
                               f"Å per voxel, this training at {mine} Å")
        config.setdefault("voxel_size", float(base["voxel_size"]))
    try:
        cfg = resolve_config(config)
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    if args.init_from:
        from ..segmentation.networks import DEFAULTS

        mine = {**DEFAULTS, **cfg["network"]}
        theirs = {**DEFAULTS, **base["network"]}
        diff = sorted(k for k in mine if k != "out_channels" and mine[k] != theirs.get(k))
        if diff:
            raise CryovisError(f"{args.init_from}: --from model's network differs from this "
                               f"training's in {', '.join(diff)} (give the same 'network' in "
                               "--config)")
    patch = tuple(cfg["patch_size"])
    norm = cfg["normalisation"]
    train = [load_pair(t, lab, cfg["voxel_size"], patch, pseudo, cfg["soft_target"], norm)
             for t, lab in train_pairs]
    val = [load_pair(t, lab, cfg["voxel_size"], patch, False, normalisation=norm)
           for t, lab in val_pairs]
    if cfg["label_values"] is not None:
        for v in val:
            v.label = channel_labels(v.label, cfg["label_values"])
        n_max = 0
    else:
        n_max = max(int(v.label.max()) for v in train)
    if n_max > len(cfg["classes"]):
        raise CryovisError(f"labels go up to {n_max} but {len(cfg['classes'])} class name(s) "
                           "were given (--classes)")
    try:
        summary = train_segmenter(train, val, args.out, config, minutes=args.minutes,
                                  resume=args.resume, init_from=args.init_from,
                                  provenance=provenance, overwrite=args.force,
                                  progress=not args.no_progress and sys.stderr.isatty(),
                                  threads=args.threads, device=device)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        raise CryovisError(str(exc)) from None
    write_json_result(args, summary)
    report = Report("train segmenter")
    if summary["stop"] == "time limit":
        report.say(f"stopped after {args.minutes} min at step {summary['steps']}; rerun with "
                   "--resume to continue")
    best = summary.get("best_val_dice")
    report.summary(f"wrote {out} after {summary['steps']} steps ({summary['stop']}"
                   f"{f', best validation Dice {best:.3f}' if best is not None else ''})")
    return 0
