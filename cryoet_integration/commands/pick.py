"""``cryovis pick``: find and classify particles in a tomogram.

``--method unet`` (default) runs a learned picker (``--model``, default the shipped one):
the U-Net's class probabilities, then local maxima of the smoothed "any particle" map with
the thresholds tuned when the model was trained. ``--method template`` matches a template map
over a uniform grid of orientations (``--template MAP.mrc --angular-step DEG``) and gives
every pick an orientation and its match score; with ``--positions PICKS`` it orients another
picker's picks instead. ``--method blob`` is the difference-of-Gaussians baseline. The picks
file's format comes from its extension (``.star`` is RELION 5, with a companion
``<stem>_tomograms.star``, or joined to an existing RELION 5 project with ``--tomograms
THEIR_tomograms.star --tomo-name NAME``) or from ``--format``. Positions and orientations are
written in the target format's conventions from voxels of TOMO.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CryovisError, require_engine
from ..segmentation.device import resolve_device
from .options import (
    add_device,
    add_force,
    add_json,
    add_threads,
    add_tilt_range,
    check_outputs,
    json_file,
    read_input_volume,
    use_threads,
    write_json_result,
)
from .progress import Report

BLOB_DIAMETER_ANGST = 120.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pick", help="pick and classify particles (learned picker, template matching with "
        "orientations, or blob baseline)",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    parser.add_argument("tomogram", help="tomogram (MRC, EM, TIFF, or OME-Zarr: the level "
                        "nearest the picker's voxel size)")
    parser.add_argument("--out", required=True, help="picks file (.star, .csv, .tbl, ...)")
    parser.add_argument("--format", default=None,
                        help="particle format (relion5, relion4, dynamo, csv, ...; default "
                        "from the extension)")
    parser.add_argument("--model", default=None,
                        help="picker model MODEL(.pt) with MODEL.json (default: the shipped "
                        "picker)")
    parser.add_argument("--method", choices=("unet", "template", "blob"), default="unet",
                        help="learned picker (default), template matching (orientations) or "
                        "difference-of-Gaussians baseline")
    parser.add_argument("--tomograms", default=None, metavar="STAR",
                        help="join this RELION 5 tomograms.star (RELION output)")
    parser.add_argument("--tomo-name", default=None,
                        help="rlnTomoName / tomo_name of the picks (default: TOMO's stem)")
    parser.add_argument("--binning", type=float, default=None,
                        help="TOMO's voxel size / tilt-series pixel size (RELION output; "
                        "default from --tomograms, else 1)")
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="override TOMO's voxel size (Å)")
    polarity = parser.add_mutually_exclusive_group()
    polarity.add_argument("--invert", action="store_true",
                          help="TOMO is inverted (dense matter bright)")
    polarity.add_argument("--polarity", choices=("auto", "dark", "light"), default="auto",
                          help="contrast of dense matter (auto: detected)")
    parser.add_argument("--roi", default=None, metavar="MRC",
                        help="region-of-interest mask on TOMO's grid; picks outside it dropped")
    parser.add_argument("--no-gold-mask", action="store_true",
                        help="do not exclude the surroundings of gold beads")
    parser.add_argument("--exclude-outside-slab", action="store_true",
                        help="drop picks outside the ice slab (found along z)")
    parser.add_argument("--max-particles", type=int, default=None,
                        help="keep at most N picks (highest scores)")
    parser.add_argument("--min-score", type=float, default=None,
                        help="drop picks scoring below this (unet: probability 0-1; template: "
                        "NCC; blob: robust z-score, default 4)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="unet: peak threshold instead of the model's tuned one (0-1); "
                        "template: NCC cut-off instead of the false-positive estimate")
    parser.add_argument("--diameter", type=float, default=BLOB_DIAMETER_ANGST,
                        help=f"blob: particle diameter in Å (default {BLOB_DIAMETER_ANGST:g})")
    parser.add_argument("--tile", type=int, default=None,
                        help="unet: largest tile edge (model voxels; default the engine's)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="unet: bfloat16 autocast or float32 (default auto: bf16 where "
                        "the hardware computes it natively)")
    add_device(parser)
    add_threads(parser)
    add_json(parser, "the run summary")
    add_force(parser)
    _add_template_options(parser)
    parser.set_defaults(func=run)


def _add_template_options(parser) -> None:
    """The ``--method template`` options; their defaults go into ``args.template_only`` so that
    giving one with another method is refused."""
    group = parser.add_argument_group("template matching (--method template)")
    defaults: dict[str, object] = {}

    class _Recording:
        def add_argument(self, *names, **kwargs):
            action = group.add_argument(*names, **kwargs)
            defaults[action.dest] = action.default
            return action

    tm = _Recording()
    tm.add_argument("--template", default=None, metavar="MAP",
                    help="template map (MRC, EM or TIFF), cubic, dense matter positive, at "
                    "TOMO's voxel size")
    tm.add_argument("--angular-step", type=float, default=None, metavar="DEG",
                    help="spacing of the orientation grid in degrees (12: 8,580 orientations)")
    tm.add_argument("--symmetry", default="C1",
                    help="point group of the template about its z axis: Cn or Dn (default C1)")
    tm.add_argument("--mask", default=None, metavar="MAP",
                    help="mask on the template's box (default: a ball around the density)")
    add_tilt_range(tm, "tilt range in degrees (about y): missing-wedge weighting of the "
                   "template")
    tm.add_argument("--low-pass", type=float, default=None, metavar="ANGST",
                    help="resolution cut-off in Å (default: 4 voxel sizes)")
    tm.add_argument("--high-pass", type=float, default=None, metavar="ANGST",
                    help="low-frequency cut-off in Å (default: none)")
    tm.add_argument("--defocus", type=float, default=None, metavar="UM",
                    help="underfocus in µm: modulate the template by the CTF (default: no CTF)")
    tm.add_argument("--voltage", type=float, default=300.0, metavar="KV",
                    help="CTF: acceleration voltage in kV (default 300)")
    tm.add_argument("--cs", type=float, default=2.7, metavar="MM",
                    help="CTF: spherical aberration in mm (default 2.7)")
    tm.add_argument("--amplitude-contrast", type=float, default=0.07, metavar="A",
                    help="CTF: amplitude contrast (default 0.07)")
    tm.add_argument("--phase-flipped", action="store_true",
                    help="CTF: TOMO was phase-flipped (the template gets |CTF|)")
    tm.add_argument("--positions", default=None, metavar="PICKS",
                    help="orient these picks (each searched within 2 voxels) instead of "
                    "searching the whole tomogram; their classes are kept")
    tm.add_argument("--n-false-positives", type=float, default=1.0, metavar="N",
                    help="score cut-off: expected number of false positives (default 1)")
    tm.add_argument("--no-refine", action="store_true",
                    help="skip the local angular refinement around each pick")
    tm.add_argument("--rescale-template", action="store_true",
                    help="resample a template at another voxel size to TOMO's")
    tm.add_argument("--scores-out", default=None, metavar="MRC",
                    help="write the best score per voxel")
    tm.add_argument("--angles-out", default=None, metavar="MRC",
                    help="write the best orientation's index per voxel, and MRC.angles.csv "
                    "whose row i holds orientation i (RELION rot, tilt, psi)")
    tm.add_argument("--checkpoint", default=None, metavar="NPZ",
                    help="resumable search state (default: OUT.tm-checkpoint.npz; deleted "
                    "when the picks are written)")
    tm.add_argument("--batch", type=int, default=None, metavar="N",
                    help="orientations per batch (default: 1 on the CPU, more on a GPU)")
    parser.set_defaults(template_only=defaults)


def _check_numbers(args) -> None:
    if args.max_particles is not None and args.max_particles < 1:
        raise CryovisError(f"--max-particles must be >= 1, got {args.max_particles}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise CryovisError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.voxel_size is not None and not args.voxel_size > 0:
        raise CryovisError(f"--voxel-size must be > 0 Å, got {args.voxel_size}")
    if args.binning is not None and not args.binning > 0:
        raise CryovisError(f"--binning must be > 0, got {args.binning}")
    if not args.diameter > 0:
        raise CryovisError(f"--diameter must be > 0 Å, got {args.diameter}")
    if args.method == "template":
        if args.template is None or args.angular_step is None:
            raise CryovisError("--method template needs --template MAP.mrc and "
                               "--angular-step DEG")
        if args.batch is not None and args.batch < 1:
            raise CryovisError(f"--batch must be >= 1, got {args.batch}")
        if not args.n_false_positives > 0:
            raise CryovisError(f"--n-false-positives must be > 0, got {args.n_false_positives}")
    else:
        given = [k for k, default in args.template_only.items() if getattr(args, k) != default]
        if given:
            raise CryovisError(f"--{given[0].replace('_', '-')} is for --method template")


def _inside(table, roi):
    """The picks of ``table`` inside the boolean region-of-interest ``roi`` [z, y, x]."""
    import numpy as np

    if roi is None or not len(table):
        return table
    ijk = np.clip(np.rint(table[["x", "y", "z"]].to_numpy()).astype(int), 0,
                  np.array(roi.shape[::-1]) - 1)
    return table[roi[ijk[:, 2], ijk[:, 1], ijk[:, 0]]].reset_index(drop=True)


def run(args) -> int:
    require_engine("torch", "scipy")
    import numpy as np

    from ..picking import pick_blobs
    from ..picking.export import plan_export, write_picks
    from ..picking.learned import check_pickable, load_picker, pick_tomogram, prepare_tomogram
    from ..segmentation.device import use_bf16

    _check_numbers(args)
    report = Report("pick")
    polarity = "light" if args.invert else args.polarity
    device = resolve_device(args.device)
    net = card = None
    if args.method == "unet":
        net, card = load_picker(args.model, device=device)
    elif args.model:
        raise CryovisError("--model is for --method unet")
    volume = read_input_volume(args.tomogram, voxel_size=args.voxel_size, what="tomogram",
                               target_voxel_size=float(card["voxel_size"]) if card else None)
    tomo_name = args.tomo_name or Path(args.tomogram).stem
    plan = plan_export(args.out, args.format, tuple(volume.data.shape),
                       float(volume.voxel_size or 0.0), tomo_name, args.tomograms,
                       args.binning, args.force)
    if args.method != "unet" and not (volume.voxel_size or 0) > 0:
        raise CryovisError(f"{args.tomogram}: no voxel size; give --voxel-size (the "
                           f"{args.method} picker needs the particle size in voxels)")
    job = None
    if args.method == "template":
        from .pick_template import plan_template

        job = plan_template(args, volume, device, plan)
    check_outputs([json_file(args), *(job.outputs if job else [])], args.force)
    roi = None
    if args.roi:
        mask = read_input_volume(args.roi, what="region-of-interest mask")
        if mask.data.shape != volume.data.shape:
            raise CryovisError(f"{args.roi}: mask shape {tuple(mask.data.shape)} differs from "
                               f"the tomogram's {tuple(volume.data.shape)} (z, y, x)")
        roi = np.asarray(mask.data) > 0
        if not roi.any():
            raise CryovisError(f"{args.roi}: the region-of-interest mask is empty")
    if card is not None:
        check_pickable(volume, float(card["voxel_size"]))

    shape = "x".join(str(n) for n in volume.data.shape[::-1])
    with use_threads(args.threads):
        if args.method == "unet":
            bf16 = use_bf16(args.precision, device)
            report.say(f"{args.tomogram}: {shape} voxels; picker "
                       f"{card.get('name', args.model or 'default')} "
                       f"({', '.join(card['picker']['particle_classes'])}) on {device}, "
                       f"{'bf16' if bf16 else 'fp32'}, {args.threads} thread(s)")
            result = pick_tomogram(volume, net, card, polarity=polarity,
                                   threshold=args.threshold, min_score=args.min_score,
                                   max_particles=args.max_particles,
                                   exclude_gold=not args.no_gold_mask,
                                   exclude_outside_slab=args.exclude_outside_slab, roi=roi,
                                   tile=args.tile, bf16=bf16, device=device,
                                   tomo_name=tomo_name)
            table, info = result.table, result.info
            numbers = {c: i + 1 for i, c in enumerate(card["picker"]["particle_classes"])}
        elif args.method == "template":
            from .pick_template import run_template

            table, info = run_template(job, report)
            table = _inside(table, roi)
            if args.min_score is not None:
                table = table[table["score"] >= args.min_score].reset_index(drop=True)
            info["n_picks"] = len(table)
            info["per_class"] = {str(k): int(v) for k, v in
                                 table["class"].value_counts(sort=False).items()}
            numbers = {c: i + 1 for i, c in enumerate(job.classes)}
        else:
            if polarity == "auto":
                polarity = prepare_tomogram(volume, float(volume.voxel_size), "auto").polarity
            report.say(f"{args.tomogram}: {shape} voxels; difference-of-Gaussians blobs of "
                       f"{args.diameter:g} Å, dense matter {polarity}")
            table = pick_blobs(volume, args.diameter, polarity=polarity,
                               threshold_z=4.0 if args.min_score is None else args.min_score,
                               max_picks=args.max_particles)
            table = _inside(table, roi)
            info = {"n_picks": len(table),
                    "per_class": {"blob": len(table)} if len(table) else {},
                    "polarity": polarity, "diameter_angst": args.diameter}
            numbers = {"blob": 1}
    written = write_picks(plan, table, numbers, overwrite=args.force)
    summary = {"method": args.method, "tomogram": args.tomogram, "format": plan.fmt,
               "outputs": [str(p) for p in written], "class_numbers": numbers, **info}
    for note in info.get("notes", []):
        report.say(f"note: {note}")
    write_json_result(args, summary)
    if len(table) == 0:
        report.summary(f"no particles found in {args.tomogram}"
                       + (f"; wrote an empty {plan.fmt} file" if written else
                          f"; {plan.fmt} files cannot be empty, nothing written"))
    else:
        per_class = ", ".join(f"{n} {c}" for c, n in info.get("per_class", {}).items())
        report.summary(f"{len(table)} picks ({per_class}); wrote {', '.join(map(str, written))}")
    return 0
