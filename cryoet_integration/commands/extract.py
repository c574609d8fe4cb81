"""``cryovis extract TOMO PICKS --box N --out DIR``: subtomograms around picks.

Whole-voxel crops centred on each pick's nearest voxel, the sub-voxel remainder written as
origin shifts (``subtomograms.extract`` / ``subtomograms.tables`` state the conventions).
Everything is checked before the first box is cut; the outputs are written into a hidden
staging folder beside DIR and moved in at the end (the particle table last), so an
interrupted run leaves no half-written set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CryovisError, require_engine
from .geometry import add_geometry_options, geometry_options
from .options import CREATES_DIRS, add_force, add_json, add_tilt_range, write_json_result
from .progress import Report

TABLES = {"relion3": "particles.star", "dynamo": "crop.tbl"}
WEDGE_FILE = "wedge.mrc"


def register(subparsers) -> None:
    """Add the ``extract`` subcommand."""
    p = subparsers.add_parser(
        "extract", help="cut subtomograms around picks (RELION 3.1 STAR or Dynamo folder)",
        description="Cut a box^3 subtomogram around each pick of PICKS (any particle format "
                    "cryovis reads) from TOMO (memory-mapped, read slab by slab). Crops are "
                    "whole voxels centred on the pick's nearest voxel (voxel box//2 of the "
                    "box); the sub-voxel remainder goes into rlnOrigin*Angst (= -remainder x "
                    "voxel size: RELION's position is coordinate - origin) or Dynamo's dx/dy/dz. "
                    f"RELION: DIR/{TABLES['relion3']} + subtomo_NNNNNN.mrc; Dynamo: "
                    f"DIR/{TABLES['dynamo']} + particle_NNNNN.em. With a tilt range "
                    f"(--tilt-range, or TOMO's .json/.tlt sidecar) DIR/{WEDGE_FILE} is the "
                    f"missing-wedge weight every particle names as rlnCtfImage. {CREATES_DIRS}.")
    p.add_argument("tomogram", type=Path, metavar="TOMO", help="tomogram (MRC/EM/TIFF)")
    p.add_argument("picks", type=Path, metavar="PICKS", help="particle file")
    p.add_argument("--box", type=int, required=True, metavar="N", help="box edge in voxels")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=sorted(TABLES), default="relion3",
                   help="relion3: RELION 3.1 subtomogram STAR + MRC (default); dynamo: "
                        "Dynamo particle folder + table (EM files)")
    p.add_argument("--invert", action="store_true",
                   help="invert the contrast of the subtomograms (dark density -> bright)")
    p.add_argument("--normalise", action="store_true",
                   help="z-score each subtomogram (the project's robust z-score: median, "
                        "1.4826 x MAD, from every 2nd voxel per axis)")
    p.add_argument("--edge", choices=("pad", "drop"), default="pad",
                   help="picks whose box crosses the tomogram border: pad (missing voxels = "
                        "mean of the inside ones; default) or drop")
    add_tilt_range(p, "tilt range of the tomogram's series (degrees, about y): writes the "
                      "missing-wedge weight (default: TOMO's .json (cryovis simulate) or "
                      ".tlt (IMOD) sidecar, if any)")
    p.add_argument("--voxel-size", type=float, metavar="A",
                   help="Å per voxel of TOMO, overriding its header")
    p.add_argument("--voltage", type=float, metavar="KV", help="optics rlnVoltage (default: "
                   "the picks' optics, else 300)")
    p.add_argument("--cs", type=float, metavar="MM", help="optics rlnSphericalAberration "
                   "(default: the picks' optics, else 2.7)")
    p.add_argument("--amplitude-contrast", type=float, metavar="F",
                   help="optics rlnAmplitudeContrast (default: the picks' optics, else 0.07)")
    add_geometry_options(p)
    add_force(p)
    add_json(p, "the summary")
    p.set_defaults(func=run)


def tilt_range_from_sidecar(tomogram: Path) -> tuple[float, float] | None:
    """The tilt range (degrees) TOMO's metadata gives: ``<stem>.json`` of ``cryovis
    simulate`` (``imaging.tilt_angles_deg``) or an IMOD ``<stem>.tlt`` (one angle a line)."""
    sidecar = tomogram.with_suffix(".json")
    if sidecar.is_file():
        try:
            angles = json.loads(sidecar.read_text())["imaging"]["tilt_angles_deg"]
            return float(min(angles)), float(max(angles))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    tlt = tomogram.with_suffix(".tlt")
    if tlt.is_file():
        try:
            angles = np.loadtxt(tlt, ndmin=1)
        except ValueError:
            raise CryovisError(f"{tlt}: not a list of tilt angles") from None
        if len(angles):
            return float(angles.min()), float(angles.max())
    return None


def read_picks(path: Path, volume: Any, args: argparse.Namespace) -> Any:
    """PICKS as a canonical table with positions in voxels of ``volume``.

    RELION 5 centred coordinates need the tomogram geometry: the geometry options, else the
    ``<stem>_tomograms.star`` cryovis writes beside picks, else TOMO's own size and voxel
    size (an unbinned tilt series at the tomogram's voxel size).
    """
    from formats import FORMATS, FormatError, detect_format, positions_voxels, read_particles

    options = geometry_options(args)
    try:
        name = detect_format(path)
        accepted = FORMATS[name].read_options or frozenset()
        companion = path.with_name(f"{path.stem}_tomograms.star")
        if "tomograms" in accepted and not options and companion.exists():
            options["tomograms"] = companion
        elif "tomo_size_xyz" in accepted and not options:
            options["tomo_size_xyz"] = "x".join(str(n) for n in volume.data.shape[::-1])
            options["tilt_series_pixel_size"] = float(volume.voxel_size)
        options = {k: v for k, v in options.items() if k in accepted}
        table = read_particles(path, format=name, **options)
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    if not len(table):
        raise CryovisError(f"{path}: lists no particles")
    vs = table["voxel_size"].to_numpy(dtype=float)
    scale = np.where(np.isfinite(vs) & (vs > 0), vs / float(volume.voxel_size), 1.0)
    table[["x", "y", "z"]] = positions_voxels(table) * scale[:, None]
    return table


def _stage(out: Path) -> Path:
    """A hidden staging folder beside ``out`` (same file system, so moves are renames)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def run(args: argparse.Namespace) -> int:
    """Check everything, then cut, write and move the subtomogram set into DIR."""
    require_engine("scipy")
    from formats import (
        FormatError,
        Volume,
        orientations,
        positions_voxels,
        read_volume,
        write_volume,
    )

    from ..preprocess import robust_normalize
    from ..subtomograms.average import wedge_weight
    from ..subtomograms.extract import check_finite_by_slabs, inside_mask, iter_subtomograms
    from ..subtomograms.tables import (
        class_numbers,
        microscope_values,
        particle_file_name,
        write_dynamo_crop_table,
        write_relion_subtomograms,
    )

    report = Report("extract")
    box, fmt, out = int(args.box), args.format, Path(args.out)
    if box < 2:
        raise CryovisError(f"--box {box}: a subtomogram needs at least 2 voxels a side")
    if fmt == "relion3" and box % 2:
        raise CryovisError(f"--box {box}: RELION needs an even box size (try {box + 1})")
    try:
        volume = read_volume(args.tomogram, mmap=True, voxel_size=args.voxel_size)
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    if volume.data.ndim != 3:
        raise CryovisError(f"{args.tomogram}: expected a 3D tomogram, got shape "
                           f"{tuple(volume.data.shape)}")
    if not volume.voxel_size > 0:
        raise CryovisError(f"{args.tomogram}: the header gives no voxel size (pass "
                           "--voxel-size A)")
    shape = tuple(int(n) for n in volume.data.shape)
    if box > min(shape):
        raise CryovisError(f"--box {box}: larger than the tomogram {args.tomogram} "
                           f"({shape[2]}x{shape[1]}x{shape[0]} voxels x, y, z)")
    table = read_picks(args.picks, volume, args)
    centres = positions_voxels(table)
    kept = inside_mask(centres, shape, box, args.edge)
    outside = ~inside_mask(centres, shape, box, "pad")
    if not kept.any():
        what = "lie outside" if outside.all() else f"have boxes of {box} crossing the border of"
        raise CryovisError(f"{args.picks}: all {len(centres)} picks {what} the tomogram "
                           f"{args.tomogram} ({shape[2]}x{shape[1]}x{shape[0]} voxels); are "
                           "they from another tomogram or voxel size?")
    tilt = tuple(args.tilt_range) if args.tilt_range else tilt_range_from_sidecar(args.tomogram)
    table_path = out / TABLES[fmt]
    names = [particle_file_name(i, fmt) for i in range(int(kept.sum()))]
    outputs = [table_path] + [out / n for n in names] + ([out / WEDGE_FILE] if tilt else [])
    existing = [p for p in outputs if p.exists()]
    if existing and not args.force:
        raise CryovisError(f"{existing[0]}: file exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise CryovisError(f"{out}: exists and is not a folder")
    check_finite_by_slabs(volume)

    matrices = orientations(table)
    rotated = not np.allclose(matrices, np.eye(3), atol=1e-9)
    microscope = microscope_values(table, {"rlnVoltage": args.voltage,
                                           "rlnSphericalAberration": args.cs,
                                           "rlnAmplitudeContrast": args.amplitude_contrast})
    n_edge = int((~outside & ~inside_mask(centres, shape, box, "drop")).sum())
    report.say(f"{args.tomogram}: {shape[2]}x{shape[1]}x{shape[0]} voxels at "
               f"{volume.voxel_size:g} Å; {len(centres)} picks, {int(outside.sum())} outside, "
               f"{n_edge} near the edge ({'padded' if args.edge == 'pad' else 'dropped'})")
    if not rotated:
        report.say(f"{args.picks}: no orientations (all identity): subtomograms are "
                   "averaged without rotation")
    stage = _stage(out)
    try:
        row = np.cumsum(kept) - 1
        crop_centres = np.empty((len(names), 3))
        shifts = np.empty((len(names), 3))
        with report.bar("subtomograms", len(names)) as update:
            for done, (i, sub, shift) in enumerate(
                    iter_subtomograms(volume.data, centres, box, args.edge), start=1):
                if args.invert:
                    sub = np.negative(sub)
                if args.normalise:
                    # every 2nd voxel per axis: 1/8 of the box is plenty for a median/MAD
                    sub = robust_normalize(sub, axis_step=2)
                r = row[i]
                crop_centres[r], shifts[r] = centres[i] - shift, shift
                write_volume(stage / names[r], Volume(sub, voxel_size=volume.voxel_size))
                update(done, len(names))
        keep = np.flatnonzero(kept)
        classes = class_numbers(table["class"].iloc[keep])
        if tilt:
            write_volume(stage / WEDGE_FILE, Volume(wedge_weight(box, tilt),
                                                    voxel_size=volume.voxel_size))
        if fmt == "relion3":
            write_relion_subtomograms(
                stage / TABLES[fmt], names, np.rint(crop_centres), shifts, matrices[keep],
                classes, args.tomogram.name, float(volume.voxel_size), box, microscope,
                ctf_images=[WEDGE_FILE] * len(names) if tilt else None)
        else:
            write_dynamo_crop_table(stage / TABLES[fmt], np.arange(1, len(keep) + 1),
                                    np.rint(crop_centres), shifts, matrices[keep], classes,
                                    float(volume.voxel_size))
        out.mkdir(parents=True, exist_ok=True)
        for name in names + ([WEDGE_FILE] if tilt else []) + [TABLES[fmt]]:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result = {"command": "extract", "tomogram": str(args.tomogram), "picks": str(args.picks),
              "table": str(table_path), "format": fmt, "box": box,
              "voxel_size_angst": float(volume.voxel_size), "n_picks": int(len(centres)),
              "n_extracted": len(names), "n_outside": int(outside.sum()),
              "n_edge": n_edge, "edge": args.edge,
              "n_dropped": int(len(centres) - len(names)),
              "tilt_range_deg": list(tilt) if tilt else None,
              "orientations": bool(rotated), "inverted": bool(args.invert),
              "normalised": bool(args.normalise),
              "max_subvoxel_shift_voxels": float(np.abs(shifts).max()) if len(shifts) else 0.0}
    write_json_result(args, result)
    report.summary(f"wrote {len(names)} subtomograms and {table_path} "
                   f"({result['n_dropped']} picks dropped)")
    return 0
