"""``cryovis pick``: find and classify particles in a tomogram.

``--method unet`` (default) runs a learned picker (``--model``, default the shipped one):
the U-Net's class probabilities, then local maxima of the smoothed "any particle" map with
the thresholds tuned when the model was trained. ``--method blob`` is the
difference-of-Gaussians baseline. ``--method template`` matches a template map over a uniform
grid of orientations (``--template MAP.mrc --angular-step DEG``) and gives every pick an
orientation; with ``--positions PICKS`` it orients another picker's picks instead (progress
and ETA on stderr; an interrupted search resumes when the same command is rerun). The picks
file's format comes from its extension (``.star``
is RELION 5, with a companion ``<stem>_tomograms.star``, or joined to an existing RELION 5
project with ``--tomograms THEIR_tomograms.star --tomo-name NAME``) or from ``--format``.
Positions are written in the target format's convention from voxels of TOMO.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import CryovisError, require_engine

BLOB_DIAMETER_ANGST = 120.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pick", help="pick and classify particles (learned picker or blob baseline)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("tomogram", help="tomogram (MRC, EM or TIFF)")
    parser.add_argument("--out", required=True, help="picks file (.star, .csv, .tbl, ...)")
    parser.add_argument("--format", default=None,
                        help="particle format (relion5, relion4, dynamo, csv, ...; default "
                        "from the extension)")
    parser.add_argument("--model", default=None,
                        help="picker model MODEL(.pt) with MODEL.json (default: the shipped "
                        "picker)")
    parser.add_argument("--method", choices=("unet", "blob", "template"), default="unet",
                        help="learned picker, difference-of-Gaussians baseline or template "
                        "matching")
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
                        help="drop picks scoring below this (unet: probability 0-1; blob: "
                        "robust z-score, default 4)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="unet: peak threshold instead of the model's tuned one (0-1)")
    parser.add_argument("--diameter", type=float, default=BLOB_DIAMETER_ANGST,
                        help="blob: particle diameter (Å)")
    parser.add_argument("--tile", type=int, default=None, help="unet: largest tile edge")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="unet: bfloat16 autocast where the hardware has it")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write the run summary as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_template_options(parser)
    parser.set_defaults(func=run)


def add_template_options(parser: argparse.ArgumentParser) -> None:
    """``--method template`` options (``--threshold`` is then a fixed NCC cut-off and
    ``--max-particles``, ``--polarity``, ``--device`` apply as for the other methods)."""
    tm = parser.add_argument_group("template matching (--method template)")
    tm.add_argument("--template", default=None, metavar="MAP",
                    help="template map (MRC), cubic, dense matter positive")
    tm.add_argument("--angular-step", type=float, default=None, metavar="DEG",
                    help="spacing of the orientation grid in degrees (12: 8,580 orientations)")
    tm.add_argument("--symmetry", default="C1", help="template point group about z: Cn or Dn")
    tm.add_argument("--mask", default=None, metavar="MRC",
                    help="mask on the template's box (default: a ball around the density)")
    tm.add_argument("--tilt-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                    help="tilt range in degrees (about y): missing-wedge weighting")
    tm.add_argument("--low-pass", type=float, default=None, metavar="A",
                    help="resolution cut-off in Å (default: 4 voxel sizes)")
    tm.add_argument("--high-pass", type=float, default=None, metavar="A",
                    help="low-frequency cut-off in Å")
    tm.add_argument("--defocus", type=float, default=None, metavar="UM",
                    help="underfocus in µm: modulate the template by the CTF")
    tm.add_argument("--voltage", type=float, default=300.0, metavar="KV", help="CTF: kV")
    tm.add_argument("--cs", type=float, default=2.7, metavar="MM", help="CTF: Cs in mm")
    tm.add_argument("--amplitude-contrast", type=float, default=0.07, help="CTF: amplitude "
                    "contrast")
    tm.add_argument("--phase-flipped", action="store_true",
                    help="CTF: the tomogram was phase-flipped (template gets |CTF|)")
    tm.add_argument("--positions", default=None, metavar="PICKS",
                    help="orient these picks (searched within 2 voxels) instead of searching "
                    "the whole tomogram")
    tm.add_argument("--n-false-positives", type=float, default=1.0, metavar="N",
                    help="score cut-off: expected number of false positives")
    tm.add_argument("--no-refine", action="store_true",
                    help="skip the local angular refinement around each pick")
    tm.add_argument("--rescale-template", action="store_true",
                    help="resample a template at another voxel size to TOMO's")
    tm.add_argument("--scores-out", default=None, metavar="MRC", help="write the score map")
    tm.add_argument("--angles-out", default=None, metavar="MRC",
                    help="write the best-orientation index map, and MRC.angles.csv whose row "
                    "i holds orientation i (RELION rot, tilt, psi)")
    tm.add_argument("--checkpoint", default=None, metavar="NPZ",
                    help="resumable search state (default: OUT.tm-checkpoint.npz)")
    tm.add_argument("--batch", type=int, default=None, help="orientations per batch")


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


def run(args) -> int:
    require_engine("torch", "scipy")
    import numpy as np
    import torch

    from formats import read_volume

    from ..picking import pick_blobs
    from ..picking.export import plan_export, write_picks
    from ..picking.learned import load_picker, pick_tomogram, prepare_tomogram
    from ..segmentation.inference import default_device, use_bf16

    _check_numbers(args)
    polarity = "light" if args.invert else args.polarity
    torch.set_num_threads(max(1, args.threads))
    device = args.device or default_device()
    net = card = None
    if args.method == "template" and (args.template is None or args.angular_step is None):
        raise CryovisError("--method template needs --template MAP.mrc and --angular-step DEG")
    if args.method == "unet":
        net, card = load_picker(args.model, device=device)
    elif args.model:
        raise CryovisError("--model is for --method unet")
    volume = read_volume(args.tomogram, voxel_size=args.voxel_size)
    tomo_name = args.tomo_name or Path(args.tomogram).stem
    plan = plan_export(args.out, args.format, tuple(volume.data.shape),
                       float(volume.voxel_size or 0.0), tomo_name, args.tomograms,
                       args.binning, args.force)
    if args.json:
        from formats.atomic import check_writable

        check_writable(Path(args.json), args.force)
    roi = None
    if args.roi:
        mask = read_volume(args.roi)
        if mask.data.shape != volume.data.shape:
            raise CryovisError(f"{args.roi}: mask shape {tuple(mask.data.shape)} differs from "
                               f"the tomogram's {tuple(volume.data.shape)} (z, y, x)")
        roi = np.asarray(mask.data) > 0
        if not roi.any():
            raise CryovisError(f"{args.roi}: the region-of-interest mask is empty")

    if args.method == "template":
        if polarity == "auto":
            from ..picking.masks import detect_polarity

            polarity = detect_polarity(np.asarray(volume.data))
        table, info = pick_template(args, volume, polarity, device, plan.path)
        numbers = {str(c): i + 1 for i, c in enumerate(dict.fromkeys(table["class"]))} \
            if len(table) else {Path(args.template).stem: 1}
    elif args.method == "unet":
        result = pick_tomogram(volume, net, card, polarity=polarity, threshold=args.threshold,
                               min_score=args.min_score, max_particles=args.max_particles,
                               exclude_gold=not args.no_gold_mask,
                               exclude_outside_slab=args.exclude_outside_slab, roi=roi,
                               tile=args.tile, bf16=use_bf16(args.precision, device),
                               device=device, tomo_name=tomo_name)
        table, info = result.table, result.info
        numbers = {c: i + 1 for i, c in enumerate(card["picker"]["particle_classes"])}
    else:
        if not (volume.voxel_size or 0) > 0:
            raise CryovisError(f"{args.tomogram}: no voxel size; give --voxel-size (the blob "
                               "picker needs the particle size in voxels)")
        if polarity == "auto":
            polarity = prepare_tomogram(volume, float(volume.voxel_size), "auto").polarity
        table = pick_blobs(volume, args.diameter, polarity=polarity,
                           threshold_z=4.0 if args.min_score is None else args.min_score,
                           max_picks=args.max_particles)
        if roi is not None and len(table):
            ijk = np.clip(np.rint(table[["x", "y", "z"]].to_numpy()).astype(int), 0,
                          np.array(roi.shape[::-1]) - 1)
            table = table[roi[ijk[:, 2], ijk[:, 1], ijk[:, 0]]].reset_index(drop=True)
        info = {"n_picks": len(table), "per_class": {"blob": len(table)} if len(table) else {},
                "polarity": polarity, "diameter_angst": args.diameter}
        numbers = {"blob": 1}
    written = write_picks(plan, table, numbers, overwrite=args.force)
    summary = {"method": args.method, "tomogram": args.tomogram, "format": plan.fmt,
               "outputs": [str(p) for p in written], "class_numbers": numbers, **info}
    for note in info.get("notes", []):
        print(f"cryovis pick: note: {note}", file=sys.stderr)
    if len(table) == 0:
        print(f"cryovis pick: no particles found in {args.tomogram}"
              + (f"; wrote an empty {plan.fmt} file" if written else
                 f"; {plan.fmt} files cannot be empty, nothing written"), file=sys.stderr)
    if args.json:
        from ..evaluate.report import write_json

        write_json(args.json, summary, overwrite=args.force)
    print(json.dumps(summary))
    return 0


class _Progress:
    """One stderr line every ``every_s`` seconds: orientations done, time each, ETA."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s, self.last = every_s, 0.0

    def __call__(self, done: int, total: int, seconds: float) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        per = seconds / max(done, 1)
        eta = per * (total - done)
        print(f"cryovis pick: {done}/{total} orientations, {per * 1000:.1f} ms each, "
              f"ETA {int(eta // 60)} min {int(eta % 60):02d} s", file=sys.stderr, flush=True)


def _check_free(path: Path | None, force: bool) -> None:
    if path is not None and path.exists() and not force:
        raise CryovisError(f"{path}: file exists (pass --force to replace it)")
    if path is not None and not path.parent.exists():
        raise CryovisError(f"{path}: output directory {path.parent} does not exist")


def pick_template(args, volume, polarity: str, device: str | None, out: Path):
    """``--method template``: every input checked before the search; returns (table, info)."""
    import numpy as np

    from formats import (
        Volume,
        make_table,
        positions_voxels,
        read_particles,
        read_volume,
        write_particles,
        write_volume,
    )

    from ..picking.template import TemplateMatchOptions, check_sizes, match_template
    from ..picking.template import prepare_template as prepare

    if not (volume.voxel_size or 0) > 0:
        raise CryovisError(f"{args.tomogram}: no voxel size; give --voxel-size")
    if volume.data.ndim != 3:
        raise CryovisError(f"{args.tomogram}: not a 3D tomogram (shape {volume.data.shape})")
    scores_out = Path(args.scores_out) if args.scores_out else None
    angles_out = Path(args.angles_out) if args.angles_out else None
    for path in (scores_out, angles_out,
                 Path(str(angles_out) + ".angles.csv") if angles_out else None):
        _check_free(path, args.force)
    options = TemplateMatchOptions(
        angular_step_deg=args.angular_step, symmetry=args.symmetry,
        low_pass_angst=args.low_pass, high_pass_angst=args.high_pass,
        tilt_range_deg=tuple(args.tilt_range) if args.tilt_range else None,
        defocus_um=args.defocus, voltage_kv=args.voltage, cs_mm=args.cs,
        amplitude_contrast=args.amplitude_contrast, phase_flipped=args.phase_flipped,
        polarity=polarity, n_false_positives=args.n_false_positives,
        threshold=args.threshold, max_picks=args.max_particles, refine=not args.no_refine,
        rescale_template=args.rescale_template, device=device, batch=args.batch)
    template = read_volume(args.template)
    mask = read_volume(args.mask) if args.mask else None
    try:
        prepared = prepare(template, float(volume.voxel_size), options, mask=mask,
                           name=str(args.template))
        check_sizes(volume.data.shape, prepared, name=str(args.template))
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    positions = source = None
    if args.positions is not None:
        source = read_particles(args.positions)
        vs = source["voxel_size"].to_numpy(dtype=float)
        scale = np.where(np.isfinite(vs) & (vs > 0), vs / float(volume.voxel_size), 1.0)
        positions = positions_voxels(source) * scale[:, None]
    if not np.isfinite(np.asarray(volume.data[::4, ::4, ::4], dtype=np.float32)).all():
        raise CryovisError(f"{args.tomogram}: the tomogram has non-finite voxels")
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(str(out) +
                                                                     ".tm-checkpoint.npz")
    if positions is None and checkpoint.exists():
        print(f"cryovis pick: resuming from {checkpoint}", file=sys.stderr)

    def write_maps(search, grid) -> None:
        if scores_out is not None:
            write_volume(scores_out, Volume(search.scores, voxel_size=volume.voxel_size),
                         overwrite=args.force)
        if angles_out is not None:
            write_volume(angles_out, Volume(search.index.astype(np.float32),
                                            voxel_size=volume.voxel_size), overwrite=args.force)
            # row i is orientation i; the CSV writer gives the RELION angles
            write_particles(Path(str(angles_out) + ".angles.csv"),
                            make_table(np.zeros((len(grid), 3)), matrices=grid),
                            format="csv", overwrite=args.force)

    result = match_template(volume, prepared, options, positions_xyz=positions,
                            checkpoint=checkpoint if positions is None else None,
                            progress=_Progress(), class_name=Path(args.template).stem,
                            on_search=write_maps)
    table = result.table
    if source is not None and "class" in source.columns and len(table) == len(source):
        table["class"] = source["class"].astype(str).to_numpy()
    if checkpoint.exists():
        checkpoint.unlink()
    info = {"n_picks": len(table), "polarity": polarity,
            "angular_step_deg": args.angular_step, "orientations": len(result.grid),
            "score_cutoff": None if not np.isfinite(result.threshold) else result.threshold,
            "score_sigma": result.sigma, "refined": not args.no_refine}
    return table, info
