"""``cryovis pick``: find particles in a tomogram (``--method template``: template matching).

Template matching correlates a template map over a uniform grid of orientations and writes
every pick with its orientation (in the output format's angle convention) and its score;
``--positions`` gives orientations to another picker's positions instead. Progress and an
estimated time to finish go to stderr; an interrupted search resumes from its checkpoint
when the same command is run again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import CryovisError, require_engine
from .geometry import add_geometry_options, geometry_options

# Particle writers that place centred coordinates and need the tomogram's size.
SIZED_FORMATS = ("relion5", "relion4")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pick", help="pick particles (template matching with orientations)",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("tomogram", type=Path, help="tomogram (MRC, EM or TIFF)")
    parser.add_argument("--out", type=Path, required=True, help="output particle file")
    parser.add_argument("--format", default=None,
                        help="particle format (default: from the extension of --out)")
    parser.add_argument("--method", choices=("template",), default="template",
                        help="picking method")
    tm = parser.add_argument_group("template matching")
    tm.add_argument("--template", type=Path, help="template map (MRC), cubic, dense = positive")
    tm.add_argument("--angular-step", type=float, metavar="DEG",
                    help="spacing of the orientation grid in degrees (12 -> 8,600 orientations)")
    tm.add_argument("--symmetry", default="C1", help="template point group, Cn or Dn (z axis)")
    tm.add_argument("--mask", type=Path, help="mask (MRC, same box as the template)")
    tm.add_argument("--tilt-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                    help="tilt range (degrees, about y): missing-wedge weighting")
    tm.add_argument("--low-pass", type=float, metavar="A",
                    help="resolution cut-off in Å (default: 4 voxel sizes)")
    tm.add_argument("--high-pass", type=float, metavar="A", help="low-frequency cut-off in Å")
    tm.add_argument("--defocus", type=float, metavar="UM",
                    help="underfocus in µm: modulate the template by the CTF")
    tm.add_argument("--voltage", type=float, default=300.0, metavar="KV", help="kV (CTF)")
    tm.add_argument("--cs", type=float, default=2.7, metavar="MM", help="Cs in mm (CTF)")
    tm.add_argument("--amplitude-contrast", type=float, default=0.07, help="(CTF)")
    tm.add_argument("--phase-flipped", action="store_true",
                    help="the tomogram was phase-flipped (template gets |CTF|)")
    tm.add_argument("--polarity", choices=("dark", "light"), default="dark",
                    help="particles darker (raw cryo-ET) or lighter than the background")
    tm.add_argument("--positions", type=Path, metavar="PICKS",
                    help="orient these picks (search within 2 voxels of each) instead of "
                         "searching the whole tomogram")
    tm.add_argument("--n-false-positives", type=float, default=1.0, metavar="N",
                    help="score cut-off: expected number of false positives")
    tm.add_argument("--threshold", type=float, help="fixed score cut-off instead")
    tm.add_argument("--max-picks", type=int, help="keep at most this many picks")
    tm.add_argument("--no-refine", action="store_true",
                    help="skip the local angular refinement around each pick")
    tm.add_argument("--rescale-template", action="store_true",
                    help="resample a template at another voxel size to the tomogram's")
    tm.add_argument("--scores-out", type=Path, metavar="MRC", help="write the score map")
    tm.add_argument("--angles-out", type=Path, metavar="MRC",
                    help="write the best-orientation index map and MRC.angles.csv listing "
                         "each index's RELION rot, tilt, psi (row i = index i)")
    tm.add_argument("--checkpoint", type=Path,
                    help="resumable search state (default: OUT.tm-checkpoint.npz)")
    tm.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    tm.add_argument("--batch", type=int, help="orientations per batch")
    parser.add_argument("--tomo-name", help="tomogram name written with the picks "
                                            "(default: the tomogram file's stem)")
    add_geometry_options(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


def _check_output(path: Path | None, force: bool) -> None:
    if path is None:
        return
    if path.exists() and not force:
        raise CryovisError(f"{path}: file exists (pass --force to replace it)")
    if not path.parent.exists():
        raise CryovisError(f"{path}: output directory {path.parent} does not exist")


class _Progress:
    """One stderr line every few seconds: orientations done, time per orientation, ETA."""

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


def run(args: argparse.Namespace) -> int:
    require_engine("torch", "scipy")
    return run_template(args)


def run_template(args: argparse.Namespace) -> int:
    """``--method template``: everything checked before the search starts."""
    import numpy as np

    from formats import (
        FORMATS,
        FormatError,
        Volume,
        detect_format,
        make_table,
        positions_voxels,
        read_particles,
        read_volume,
        write_particles,
        write_volume,
    )

    from ..picking.template import TemplateMatchOptions, check_sizes, match_template
    from ..picking.template import prepare_template as prepare

    if args.template is None or args.angular_step is None:
        raise CryovisError("--method template needs --template MAP.mrc and --angular-step DEG")
    try:
        fmt = detect_format(args.out)  # also loads the writers into FORMATS
    except FormatError:
        fmt = None
    fmt = args.format or fmt
    if fmt is None:
        raise CryovisError(f"{args.out}: unknown particle format; give --format")
    if fmt not in FORMATS or FORMATS[fmt].writer is None:
        raise CryovisError(f"{args.out}: cannot write particle format '{fmt}'")
    for path in (args.out, args.scores_out, args.angles_out):
        _check_output(path, args.force)
    if args.angles_out is not None:
        _check_output(Path(str(args.angles_out) + ".angles.csv"), args.force)
    options = TemplateMatchOptions(
        angular_step_deg=args.angular_step, symmetry=args.symmetry,
        low_pass_angst=args.low_pass, high_pass_angst=args.high_pass,
        tilt_range_deg=tuple(args.tilt_range) if args.tilt_range else None,
        defocus_um=args.defocus, voltage_kv=args.voltage, cs_mm=args.cs,
        amplitude_contrast=args.amplitude_contrast, phase_flipped=args.phase_flipped,
        polarity=args.polarity, n_false_positives=args.n_false_positives,
        threshold=args.threshold, max_picks=args.max_picks, refine=not args.no_refine,
        rescale_template=args.rescale_template, device=args.device, batch=args.batch)

    tomo = read_volume(args.tomogram)
    if tomo.data.ndim != 3:
        raise CryovisError(f"{args.tomogram}: not a 3D tomogram (shape {tomo.data.shape})")
    if not tomo.voxel_size > 0:
        raise CryovisError(f"{args.tomogram}: voxel size not set in the header")
    template = read_volume(args.template)
    mask = read_volume(args.mask) if args.mask else None
    try:
        prepared = prepare(template, tomo.voxel_size, options, mask=mask,
                           name=str(args.template))
        check_sizes(tomo.data.shape, prepared, name=str(args.template))
    except ValueError as exc:
        raise CryovisError(str(exc)) from None
    positions = None
    source = None
    if args.positions is not None:
        source = read_particles(args.positions, **geometry_options(args))
        pos = positions_voxels(source)
        vs = source["voxel_size"].to_numpy(dtype=float)
        scale = np.where(np.isfinite(vs) & (vs > 0), vs / tomo.voxel_size, 1.0)
        positions = pos * scale[:, None]
    if not np.isfinite(np.asarray(tomo.data[::4, ::4, ::4], dtype=np.float32)).all():
        raise CryovisError(f"{args.tomogram}: tomogram has non-finite voxels")

    checkpoint = args.checkpoint or Path(str(args.out) + ".tm-checkpoint.npz")
    if checkpoint.exists() and positions is None:
        print(f"cryovis pick: resuming from {checkpoint}", file=sys.stderr)

    def write_maps(search, grid) -> None:
        if args.scores_out is not None:
            write_volume(args.scores_out, Volume(search.scores, voxel_size=tomo.voxel_size),
                         overwrite=args.force)
        if args.angles_out is not None:
            write_volume(args.angles_out,
                         Volume(search.index.astype(np.float32), voxel_size=tomo.voxel_size),
                         overwrite=args.force)
            # row i of the list is orientation index i (the CSV writer gives RELION angles)
            listing = make_table(np.zeros((len(grid), 3)), matrices=grid)
            write_particles(Path(str(args.angles_out) + ".angles.csv"), listing, format="csv",
                            overwrite=args.force)

    name = Path(args.template).stem
    result = match_template(tomo, prepared, options, positions_xyz=positions,
                            checkpoint=checkpoint if positions is None else None,
                            progress=_Progress(), class_name=name, on_search=write_maps)
    table = result.table
    table["tomo_name"] = args.tomo_name or Path(args.tomogram).stem
    if source is not None and "class" in source.columns and len(table) == len(source):
        table["class"] = source["class"].to_numpy()
    write_opts = geometry_options(args)
    if fmt in SIZED_FORMATS and "tomograms" not in write_opts:
        write_opts.setdefault("tomo_size_xyz", "x".join(str(s) for s in tomo.shape_xyz))
        write_opts.setdefault("tilt_series_pixel_size", tomo.voxel_size)
    write_particles(args.out, table, format=fmt, overwrite=args.force, **write_opts)
    if checkpoint.exists():
        checkpoint.unlink()
    cut = f"score cut-off {result.threshold:.4f}" if np.isfinite(result.threshold) else ""
    sigma = f" (sigma {result.sigma:.4f})" if result.sigma else ""
    print(f"cryovis pick: {len(table)} picks written to {args.out} ({fmt}); {cut}{sigma}",
          file=sys.stderr)
    return 0
