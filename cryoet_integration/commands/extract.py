"""``cryovis extract TOMO PICKS --box N --out DIR``: subtomograms around picks.

Whole-voxel crops centred on each pick's nearest voxel, the sub-voxel remainder written as
origin shifts (``subtomograms.extract`` / ``subtomograms.tables`` state the conventions).
Everything is checked before the first box is cut; the outputs are written into a hidden
staging folder beside DIR and moved in at the end (the particle table last), so an
interrupted run leaves no half-written set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CryovisError, require_engine
from .geometry import add_geometry_options, read_picks
from .options import (
    CREATES_DIRS,
    add_force,
    add_json,
    add_tilt_range,
    write_json_result,
)
from .progress import Report

TABLES = {"relion3": "particles.star", "dynamo": "crop.tbl"}
WEDGE_FILE = "wedge.mrc"


def register(subparsers) -> None:
    """Add the ``extract`` subcommand."""
    p = subparsers.add_parser(
        "extract", help="cut subtomograms around picks (RELION 3.1 STAR or Dynamo folder)",
        description="Cut a box^3 subtomogram around each pick of PICKS (any particle format "
                    "cryovis reads) from TOMO (memory-mapped, read box by box). Crops are "
                    "whole voxels centred on the pick's nearest voxel (voxel box//2 of the "
                    "box); the sub-voxel remainder goes into rlnOrigin*Angst (= -remainder x "
                    "voxel size: RELION's position is coordinate - origin) or Dynamo's dx/dy/dz. "
                    f"RELION: DIR/{TABLES['relion3']} + subtomo_NNNNNN.mrc; Dynamo: "
                    f"DIR/{TABLES['dynamo']} + particle_NNNNN.em. With a tilt range "
                    f"(--tilt-range, or TOMO's .json/.tlt sidecar) DIR/{WEDGE_FILE} is the "
                    f"missing-wedge weight every particle names as rlnCtfImage ({CREATES_DIRS}).")
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
                        "1.4826 x MAD of its voxels inside the tomogram, every 2nd per axis; "
                        "padding becomes their mean)")
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


@dataclasses.dataclass
class ExtractJob:
    """A checked extraction: the tomogram, the picks in its voxels and where things go."""

    volume: Any
    table: Any
    centres_xyz: np.ndarray
    kept: np.ndarray
    outside: np.ndarray
    n_edge: int
    tilt: tuple[float, float] | None
    names: list[str]
    out: Path

    @property
    def files(self) -> list[str]:
        """The files written into DIR, the particle table last."""
        return self.names + ([WEDGE_FILE] if self.tilt else [])


def plan(args: argparse.Namespace) -> ExtractJob:
    """Check every input and output before the first box (CryovisError: one line)."""
    from formats import FormatError, positions_voxels, read_volume

    from ..subtomograms.extract import check_finite_by_slabs, inside_mask
    from ..subtomograms.tables import particle_file_name

    box, out = int(args.box), Path(args.out)
    if box < 2:
        raise CryovisError(f"--box {box}: a subtomogram needs at least 2 voxels a side")
    if args.format == "relion3" and box % 2:
        raise CryovisError(f"--box {box}: RELION needs an even box size (try {box + 1})")
    try:
        volume = read_volume(args.tomogram, mmap=True, voxel_size=args.voxel_size)
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    shape = tuple(int(n) for n in volume.data.shape)
    if len(shape) != 3:
        raise CryovisError(f"{args.tomogram}: expected a 3D tomogram, got shape {shape}")
    if not volume.voxel_size > 0:
        raise CryovisError(f"{args.tomogram}: the header gives no voxel size (pass "
                           "--voxel-size A)")
    size = f"{shape[2]}x{shape[1]}x{shape[0]} voxels"
    if box > min(shape):
        raise CryovisError(f"--box {box}: larger than the tomogram {args.tomogram} ({size})")
    table = read_picks(args.picks, volume, args)
    centres = positions_voxels(table)
    kept = inside_mask(centres, shape, box, args.edge)
    outside = ~inside_mask(centres, shape, box, "pad")
    if not kept.any():
        what = "lie outside" if outside.all() else f"have boxes of {box} crossing the border of"
        raise CryovisError(f"{args.picks}: all {len(centres)} picks {what} the tomogram "
                           f"{args.tomogram} ({size}); are they from another tomogram or "
                           "voxel size?")
    tilt = tuple(args.tilt_range) if args.tilt_range else tilt_range_from_sidecar(args.tomogram)
    job = ExtractJob(volume, table, centres, kept, outside,
                     int((~outside & ~inside_mask(centres, shape, box, "drop")).sum()), tilt,
                     [particle_file_name(i, args.format) for i in range(int(kept.sum()))], out)
    if out.exists() and not out.is_dir():
        raise CryovisError(f"{out}: exists and is not a folder")
    existing = [out / n for n in job.files + [TABLES[args.format]] if (out / n).exists()]
    if existing and not args.force:
        raise CryovisError(f"{existing[0]}: file exists (use --force to replace it)")
    check_finite_by_slabs(volume)
    return job


def cut(job: ExtractJob, args: argparse.Namespace, stage: Path, report: Report
        ) -> tuple[np.ndarray, np.ndarray]:
    """Cut, adjust and write every kept box into ``stage``: (crop centres, remainders)."""
    from formats import Volume, write_volume

    from ..preprocess import robust_normalize
    from ..subtomograms.extract import box_starts, inside_slices, iter_subtomograms

    row = np.cumsum(job.kept) - 1
    starts, _ = box_starts(job.centres_xyz, int(args.box))
    n = len(job.names)
    crop_centres, shifts = np.empty((n, 3)), np.empty((n, 3))
    with report.bar("subtomograms", n) as update:
        for done, (i, sub, shift) in enumerate(iter_subtomograms(
                job.volume.data, job.centres_xyz, int(args.box), args.edge), start=1):
            if args.invert:
                sub = np.negative(sub)
            if args.normalise:
                # statistics of the voxels inside the tomogram only: a padded constant would
                # collapse the MAD. Every 2nd voxel per axis is plenty for a median/MAD.
                inner = inside_slices(starts[i], int(args.box), job.volume.data.shape)
                part = robust_normalize(sub[inner], axis_step=2)
                sub = np.full_like(sub, part.mean())
                sub[inner] = part
            r = row[i]
            crop_centres[r], shifts[r] = np.rint(job.centres_xyz[i] - shift), shift
            write_volume(stage / job.names[r], Volume(sub, voxel_size=job.volume.voxel_size))
            update(done, n)
    return crop_centres, shifts


def write_tables(job: ExtractJob, args: argparse.Namespace, stage: Path,
                 crop_centres: np.ndarray, shifts: np.ndarray) -> None:
    """The wedge weight and the particle table (RELION 3.1 STAR or Dynamo) into ``stage``."""
    from formats import Volume, orientations, write_volume

    from ..subtomograms.average import wedge_weight
    from ..subtomograms.tables import (
        class_numbers,
        microscope_values,
        write_dynamo_crop_table,
        write_relion_subtomograms,
    )

    keep = np.flatnonzero(job.kept)
    matrices = orientations(job.table)[keep]
    classes = class_numbers(job.table["class"].iloc[keep])
    vs, box = float(job.volume.voxel_size), int(args.box)
    if job.tilt:
        write_volume(stage / WEDGE_FILE, Volume(wedge_weight(box, job.tilt), voxel_size=vs))
    if args.format == "relion3":
        microscope = microscope_values(job.table, {
            "rlnVoltage": args.voltage, "rlnSphericalAberration": args.cs,
            "rlnAmplitudeContrast": args.amplitude_contrast})
        write_relion_subtomograms(
            stage / TABLES["relion3"], job.names, crop_centres, shifts, matrices, classes,
            args.tomogram.name, vs, box, microscope,
            ctf_images=[WEDGE_FILE] * len(job.names) if job.tilt else None)
    else:
        write_dynamo_crop_table(stage / TABLES["dynamo"], np.arange(1, len(keep) + 1),
                                crop_centres, shifts, matrices, classes, vs, job.tilt)


def run(args: argparse.Namespace) -> int:
    """Check everything, then cut, write and move the subtomogram set into DIR."""
    require_engine("scipy")
    from formats import orientations

    report = Report("extract")
    job = plan(args)
    shape = job.volume.data.shape
    rotated = not np.allclose(orientations(job.table), np.eye(3), atol=1e-9)
    report.say(f"{args.tomogram}: {shape[2]}x{shape[1]}x{shape[0]} voxels at "
               f"{job.volume.voxel_size:g} Å; {len(job.centres_xyz)} picks, "
               f"{int(job.outside.sum())} outside, {job.n_edge} near the edge "
               f"({'padded' if args.edge == 'pad' else 'dropped'})")
    if not rotated:
        report.say(f"{args.picks}: no orientations (all identity): subtomograms are "
                   "averaged without rotation")
    job.out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{job.out.name}.partial-", dir=job.out.parent))
    try:
        crop_centres, shifts = cut(job, args, stage, report)
        write_tables(job, args, stage, crop_centres, shifts)
        job.out.mkdir(parents=True, exist_ok=True)
        for name in job.files + [TABLES[args.format]]:
            os.replace(stage / name, job.out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    n = len(job.names)
    result = {"command": "extract", "tomogram": str(args.tomogram), "picks": str(args.picks),
              "table": str(job.out / TABLES[args.format]), "format": args.format,
              "box": int(args.box), "voxel_size_angst": float(job.volume.voxel_size),
              "n_picks": len(job.centres_xyz), "n_extracted": n,
              "n_outside": int(job.outside.sum()), "n_edge": job.n_edge, "edge": args.edge,
              "n_dropped": len(job.centres_xyz) - n,
              "tilt_range_deg": list(job.tilt) if job.tilt else None,
              "orientations": bool(rotated), "inverted": bool(args.invert),
              "normalised": bool(args.normalise),
              "max_subvoxel_shift_voxels": float(np.abs(shifts).max()) if n else 0.0}
    write_json_result(args, result)
    report.summary(f"wrote {n} subtomograms and {result['table']} "
                   f"({result['n_dropped']} picks dropped)")
    return 0
