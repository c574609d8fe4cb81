"""``cryovis train classifier``: train the DSM-Net-style subtomogram classifier on
tomograms with particle lists, or reproduce the shipped default with ``--recipe
default-classifier``."""

from __future__ import annotations

import sys

from ..errors import CryovisError, require_engine
from .options import (
    add_device,
    add_force,
    add_json,
    add_threads,
    add_training_budget,
    check_outputs,
    check_training_budget,
    json_file,
    training_config,
    use_threads,
    write_json_result,
)
from .progress import Report
from .train_picker import DEFAULT_CACHE


def register(kinds) -> None:
    """Add the ``classifier`` kind to ``cryovis train``'s subparsers."""
    p = kinds.add_parser(
        "classifier", help="train a subtomogram classifier (DSM-Net)",
        description="Train a multi-task subtomogram network (DSM-Net: shared encoder, "
        "class, particle-mask and density heads, losses 1:10:1) on boxes cut around the "
        "particles of the lists. Class from the list; mask and density from the per-class "
        "subtomogram average (under the list's orientations), the mask from the "
        "simulator's instance maps when given. Writes MODEL.pt + MODEL.json (best "
        "validation class accuracy) and MODEL.state.pt (--resume).")
    p.add_argument("--tomograms", nargs="+", metavar="TOMO", help="training tomograms")
    p.add_argument("--particles", nargs="+", metavar="PICKS",
                   help="particle lists in any format cryovis reads, one per tomogram (or one "
                   "with a tomo_name column); class from rlnClassName/rlnClassNumber/class")
    p.add_argument("--instances", nargs="+", metavar="MRC", default=None,
                   help="simulator instance maps, one per tomogram (particle masks)")
    p.add_argument("--val-tomograms", nargs="+", metavar="TOMO", default=None,
                   help="validation tomograms (best-model selection, early stopping)")
    p.add_argument("--val-particles", nargs="+", metavar="PICKS", default=None)
    p.add_argument("--val-instances", nargs="+", metavar="MRC", default=None)
    p.add_argument("--recipe", default=None,
                   help="named recipe (default-classifier) that simulates its own data")
    p.add_argument("--cache", default=str(DEFAULT_CACHE),
                   help="recipe: folder of the simulated tomograms (shared with the picker's "
                   "recipe; default ~/.cache/cryovis/recipes/picker)")
    p.add_argument("--box", type=int, default=None,
                   help="box edge in voxels at the model voxel size (default 24, multiple of 4)")
    p.add_argument("--voxel-size", type=float, default=None, metavar="A",
                   help="model voxel size in Å (default 15)")
    p.add_argument("--polarity", choices=("auto", "dark", "light"), default="auto",
                   help="contrast of the tomograms (auto: from the boxes)")
    p.add_argument("--out", required=True, help="model path MODEL (writes MODEL.pt, .json)")
    add_training_budget(p, '{"batch_size": 16}')
    add_device(p)
    add_threads(p)
    add_json(p, "the training summary")
    add_force(p)
    p.set_defaults(func=run)


def run(args) -> int:
    check_training_budget(args)
    require_engine("torch", "scipy")
    with use_threads(args.threads):
        return _train(args)


def _train(args) -> int:
    import logging

    from ..picking.recipes import prepare_recipe_data
    from ..segmentation.checkpoint import model_paths
    from ..segmentation.device import resolve_device
    from ..subtomograms.classifier.data import load_classifier_data
    from ..subtomograms.classifier.recipes import get_recipe
    from ..subtomograms.classifier.training import (
        check_model_outputs,
        resolve_config,
        train_classifier,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    device = resolve_device(args.device)
    weights, _ = model_paths(args.out)
    if not weights.parent.is_dir():
        raise CryovisError(f"{weights.parent}: output directory does not exist")
    check_model_outputs(args.out, args.resume, args.force)
    check_outputs([json_file(args)], args.force)
    report = Report("train classifier")
    config: dict = {}
    provenance: dict = {"command": "cryovis " + " ".join(sys.argv[1:])}
    val_args: tuple = (args.val_tomograms, args.val_particles, args.val_instances)
    if args.recipe:
        if args.tomograms or args.particles:
            raise CryovisError("--recipe simulates its own data; do not pass --tomograms")
        try:
            recipe = get_recipe(args.recipe)
        except ValueError as exc:
            raise CryovisError(str(exc)) from None
        paths = prepare_recipe_data(recipe, args.cache)
        files = {split: {k: [str(p[k]) for p in paths[split]]
                         for k in ("tomogram", "particles", "instances")} for split in paths}
        tomograms, particles = files["train"]["tomogram"], files["train"]["particles"]
        instances = files["train"]["instances"]
        val_args = (files["val"]["tomogram"], files["val"]["particles"],
                    files["val"]["instances"])
        config.update(recipe["train"])
        provenance.update(recipe=args.recipe, data={
            "simulator": "cryoet_integration.simulate (the default picker's recipe data: "
                         "SimulationConfig.randomised, held-out classes removed, random "
                         "shapes added)", "simulation": recipe["simulation"]})
    else:
        if not args.tomograms or not args.particles:
            raise CryovisError("give --tomograms and --particles, or --recipe")
        tomograms, particles, instances = args.tomograms, args.particles, args.instances
        provenance["data"] = {"tomograms": tomograms, "particles": particles,
                              "instances": instances, "val_tomograms": args.val_tomograms}
    config = training_config(args, config, box=args.box, voxel_size=args.voxel_size)
    try:
        cfg = resolve_config(config)
    except ValueError as exc:
        raise CryovisError(f"--config: {exc}") from None
    if cfg["box"] < 8 or cfg["box"] % 4:
        raise CryovisError(f"--box {cfg['box']}: the network needs a multiple of 4, >= 8")
    data = load_classifier_data(tomograms, particles, int(cfg["box"]), int(cfg["margin"]),
                                float(cfg["voxel_size"]), instances, *val_args,
                                polarity=args.polarity)
    for note in data.notes:
        report.say(note)
    provenance["n_boxes"] = {"train": int(len(data.train.labels)),
                             "val": int(len(data.val.labels)) if data.val is not None else 0}
    try:
        summary = train_classifier(data.train, data.val, args.out, data.classes, cfg,
                                   minutes=args.minutes, resume=args.resume,
                                   provenance=provenance, overwrite=args.force, device=device)
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    write_json_result(args, summary)
    if summary["stop"] == "time limit":
        report.say(f"stopped after {args.minutes} min at step {summary['steps']}; rerun with "
                   "--resume to continue")
    report.summary(f"wrote {weights} ({summary['steps']} steps, stop: {summary['stop']})")
    return 0
