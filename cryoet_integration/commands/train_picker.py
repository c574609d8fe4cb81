"""``cryovis train picker``: train a particle picker (multi-class U-Net + peak extraction) on
tomograms with particle lists, or reproduce the shipped default with ``--recipe
default-picker``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import CryovisError, require_engine
from .options import (
    add_force,
    add_json,
    add_threads,
    add_training_budget,
    check_output,
    check_outputs,
    check_training_budget,
    json_file,
    training_config,
    use_threads,
    write_json_result,
)
from .progress import Report

DEFAULT_CACHE = Path.home() / ".cache" / "cryovis" / "recipes" / "picker"


def register(kinds) -> None:
    """Add the ``picker`` kind to ``cryovis train``'s subparsers."""
    p = kinds.add_parser(
        "picker", help="train a particle picker",
        description="Train a picker: a multi-class 3D U-Net (one class per particle type, "
        "gold beads, optional membrane, background) on class-ball targets built from the "
        "particle lists, with the peak-extraction thresholds tuned on a held-out validation "
        "part and stored in the model card. Writes MODEL.pt + MODEL.json, MODEL.state.pt "
        "(--resume) and MODEL_loss.png.")
    p.add_argument("--tomograms", nargs="+", metavar="TOMO", help="training tomograms")
    p.add_argument("--particles", nargs="+", metavar="PICKS",
                   help="particle lists in any format cryovis reads, one per tomogram (or one "
                   "with a tomo_name column); class from rlnClassName/rlnClassNumber/class, "
                   "one class when absent")
    p.add_argument("--membranes", nargs="+", metavar="MRC", default=None,
                   help="optional membrane masks, one per tomogram (adds a membrane class)")
    p.add_argument("--val-tomograms", nargs="+", metavar="TOMO", default=None,
                   help="validation tomograms (default: the last quarter along y of each "
                   "training tomogram is held out)")
    p.add_argument("--val-particles", nargs="+", metavar="PICKS", default=None)
    p.add_argument("--val-membranes", nargs="+", metavar="MRC", default=None)
    p.add_argument("--radius", action="append", metavar="CLASS=A", default=None,
                   help="ball radius of a class in Å (repeatable); others are estimated")
    p.add_argument("--recipe", default=None,
                   help="named recipe (default-picker) that simulates its own training data")
    p.add_argument("--cache", default=str(DEFAULT_CACHE),
                   help="recipe: folder for the simulated tomograms (default "
                   "~/.cache/cryovis/recipes/picker)")
    p.add_argument("--voxel-size", type=float, default=None,
                   help="model voxel size in Å (default 10)")
    p.add_argument("--polarity", choices=("auto", "dark", "light"), default="auto",
                   help="contrast of the training tomograms (auto: detected)")
    p.add_argument("--out", required=True, help="model path MODEL (writes MODEL.pt, .json)")
    add_training_budget(p, '{"patch_size": [48, 48, 48], "validate_every": 50}')
    add_threads(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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

    from ..picking.dataset import load_picker_data
    from ..picking.learned import PICKER_TRAIN_DEFAULTS, train_picker
    from ..picking.recipes import get_recipe, prepare_recipe_data
    from ..picking.targets import parse_radius_options
    from ..segmentation.checkpoint import model_paths

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    weights, card = model_paths(args.out)
    if not weights.parent.is_dir():
        raise CryovisError(f"{weights.parent}: output directory does not exist")
    if not args.resume:
        for target in (weights, card):
            check_output(target, args.force, what="model")
    check_outputs([json_file(args)], args.force)
    report = Report("train picker")
    radii = parse_radius_options(args.radius)
    config: dict = {}
    provenance: dict = {"command": "cryovis " + " ".join(sys.argv[1:])}
    if args.recipe:
        if args.tomograms or args.particles:
            raise CryovisError("--recipe simulates its own data; do not pass --tomograms")
        try:
            recipe = get_recipe(args.recipe)
        except ValueError as exc:
            raise CryovisError(str(exc)) from None
        paths = prepare_recipe_data(recipe, args.cache)
        files = {split: {k: [str(p[k]) for p in paths[split]]
                         for k in ("tomogram", "particles", "membranes")} for split in paths}
        tomograms, particles = files["train"]["tomogram"], files["train"]["particles"]
        membranes = files["train"]["membranes"]
        val = files["val"]
        radii = {**recipe["radii_angst"], **radii}
        config.update(recipe["train"])
        provenance.update(recipe=args.recipe, data={
            "simulator": "cryoet_integration.simulate (SimulationConfig.randomised, "
                         "held-out classes removed, random shapes added)",
            "simulation": recipe["simulation"]})
        val_args = (val["tomogram"] or None, val["particles"] or None,
                    val["membranes"] or None)
    else:
        if not args.tomograms or not args.particles:
            raise CryovisError("give --tomograms and --particles, or --recipe")
        tomograms, particles, membranes = args.tomograms, args.particles, args.membranes
        val_args = (args.val_tomograms, args.val_particles, args.val_membranes)
        if args.val_tomograms and not args.val_particles:
            raise CryovisError("--val-tomograms needs --val-particles")
        provenance["data"] = {"tomograms": tomograms, "particles": particles,
                              "membranes": membranes, "val_tomograms": args.val_tomograms}
    config = training_config(args, config)
    voxel_size = args.voxel_size or config.get("voxel_size") or PICKER_TRAIN_DEFAULTS["voxel_size"]
    config["voxel_size"] = voxel_size
    patch = int(min(config.get("patch_size", PICKER_TRAIN_DEFAULTS["patch_size"])))
    data = load_picker_data(tomograms, particles, voxel_size, radii, membranes,
                            *val_args, patch=patch, polarity=args.polarity)
    for note in data.notes:
        report.say(note)
    provenance["radii_angst"] = data.radii_angst
    try:
        summary = train_picker(data.train, data.val, args.out, data.classes, data.particle,
                               data.excluded, data.radii_angst, config, minutes=args.minutes,
                               resume=args.resume, provenance=provenance, overwrite=args.force,
                               progress=not args.no_progress and sys.stderr.isatty(),
                               threads=args.threads)
    except (FileExistsError, FileNotFoundError) as exc:
        raise CryovisError(str(exc)) from None
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    write_json_result(args, summary)
    if summary["stop"] == "time limit":
        report.say(f"stopped after {args.minutes} min at step {summary['steps']}; rerun with "
                   "--resume to continue")
    report.summary(f"wrote {weights} ({summary['steps']} steps, stop: {summary['stop']})")
    return 0
