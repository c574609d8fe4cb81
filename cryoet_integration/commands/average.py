"""``cryovis average PARTICLES --out avg.mrc``: subtomogram average, half maps and FSC.

PARTICLES is a RELION 3.1 subtomogram STAR (``cryovis extract``'s or RELION's) or a Dynamo
particle folder's table (``cryovis extract --format dynamo``'s). Writes
``avg.mrc``, ``avg_half1.mrc``, ``avg_half2.mrc`` and ``avg_fsc.png``; the 0.143 and 0.5
resolutions go to stderr and ``--json``. The library is ``subtomograms.average``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CryovisError, require_engine
from .options import (
    CREATES_DIRS,
    add_force,
    add_json,
    add_threads,
    check_outputs,
    make_folders,
    use_threads,
    write_json_result,
)
from .progress import Report


def register(subparsers) -> None:
    """Add the ``average`` subcommand."""
    p = subparsers.add_parser(
        "average", help="average subtomograms under their orientations, with half-map FSC",
        description="Average the subtomograms a RELION 3.1 subtomogram STAR (or a Dynamo "
                    "particle folder's .tbl) lists under their orientations "
                    "(rlnAngleRot/Tilt/Psi; none: unrotated, said so) and origin shifts, "
                    "weighting by the summed missing wedges (rlnCtfImage, or Dynamo's tilt "
                    "range columns) when given. Writes OUT, OUT's _half1/_half2 maps "
                    "(rlnRandomSubset, else alternate particles) and _fsc.png; reports the "
                    f"FSC 0.143 and 0.5 resolutions in Å ({CREATES_DIRS}).")
    p.add_argument("particles", type=Path, metavar="PARTICLES",
                   help="RELION 3.1 subtomogram STAR (rlnImageName), or a Dynamo particle "
                        "folder's table (.tbl beside particle_NNNNN.em)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="average (.mrc)")
    add_threads(p)
    add_force(p)
    add_json(p, "the resolutions and counts")
    p.set_defaults(func=run)


def _outputs(out: Path) -> dict[str, Path]:
    stem = out.with_suffix("")
    return {"average": out, "half1": Path(f"{stem}_half1.mrc"),
            "half2": Path(f"{stem}_half2.mrc"), "fsc_png": Path(f"{stem}_fsc.png")}


def plan(args: argparse.Namespace) -> tuple[Any, int, dict[str, Path]]:
    """Check PARTICLES and the outputs before any work: (the set, box, outputs)."""
    from formats import FormatError, read_volume

    from ..subtomograms.tables import read_dynamo_set, read_subtomogram_set

    if args.out.suffix.lower() != ".mrc":
        raise CryovisError(f"{args.out}: the average must be an .mrc file")
    outputs = _outputs(args.out)
    check_outputs(outputs.values(), args.force)
    if not args.particles.is_file():
        raise CryovisError(f"{args.particles}: no such file")
    dynamo = args.particles.suffix.lower() == ".tbl"
    subset = (read_dynamo_set if dynamo else read_subtomogram_set)(args.particles)
    missing = [p for p in subset.images + (subset.ctf_images or []) if not p.is_file()]
    if missing:
        raise CryovisError(f"{missing[0]}: no such file (named by {args.particles}; "
                           f"{len(missing)} missing)")
    if len(subset.images) < 2:
        raise CryovisError(f"{args.particles}: one particle; half sets need at least two")
    try:
        shape = tuple(read_volume(subset.images[0], mmap=True).data.shape)
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    if len(shape) != 3 or len(set(shape)) != 1:
        raise CryovisError(f"{subset.images[0]}: expected a cubic 3D subtomogram, got shape "
                           f"{shape}")
    return subset, shape[0], outputs


def particles(subset: Any, box: int) -> Iterator[tuple]:
    """``(subtomogram, matrix, shift, weight, half)`` per particle, read one at a time (each
    distinct weight file once)."""
    from formats import FormatError, read_volume

    from ..subtomograms.average import centred_weight, wedge_weight

    weights: dict[Any, np.ndarray] = {}
    for i, path in enumerate(subset.images):
        try:
            data = np.asarray(read_volume(path).data, dtype=np.float32)
        except FormatError as exc:
            raise CryovisError(str(exc)) from None
        if data.shape != (box,) * 3:
            raise CryovisError(f"{path}: shape {data.shape}, expected {(box,) * 3} like "
                               f"{subset.images[0]}")
        weight = None
        if subset.ctf_images is not None:
            name = subset.ctf_images[i]
            if name not in weights:
                try:
                    weights[name] = centred_weight(read_volume(name).data, box)
                except (FormatError, ValueError) as exc:
                    raise CryovisError(f"{name}: {exc}") from None
            weight = weights[name]
        elif subset.tilt_ranges is not None:
            key = tuple(float(t) for t in subset.tilt_ranges[i])
            if key not in weights:
                weights[key] = wedge_weight(box, key)
            weight = weights[key]
        yield data, subset.matrices[i], subset.shifts_xyz[i], weight, int(subset.subsets[i])


def run(args: argparse.Namespace) -> int:
    """Check the set, average it, write the maps, the FSC plot and the summary."""
    require_engine("scipy", "matplotlib")
    from formats import Volume, write_volume

    from ..subtomograms.average import average_subtomograms, plot_fsc

    report = Report("average")
    subset, box, outputs = plan(args)
    n = len(subset.images)
    weighted = subset.ctf_images is not None or subset.tilt_ranges is not None
    if not subset.has_angles:
        report.say(f"{args.particles}: no rlnAngleRot/Tilt/Psi: averaging without rotation")
    report.say(f"{args.particles}: {n} subtomograms of {box}^3 at {subset.pixel_size:g} Å, "
               f"{'missing-wedge weighted' if weighted else 'no wedge weights'}")
    with use_threads(args.threads), report.bar("particles", n) as update:
        result = average_subtomograms(particles(subset, box), box, subset.pixel_size,
                                      progress=lambda done: update(done, n))
    make_folders(outputs.values())
    for key, data in (("average", result.average), ("half1", result.half1),
                      ("half2", result.half2)):
        write_volume(outputs[key], Volume(data, voxel_size=subset.pixel_size),
                     overwrite=args.force)
    plot_fsc(outputs["fsc_png"], result, box, subset.pixel_size, overwrite=args.force)
    res = result.resolution_angst
    summary = {"command": "average", "particles": str(args.particles), "n_particles": n,
               "half_counts": list(result.counts), "box": box,
               "pixel_size_angst": subset.pixel_size, "rotated": subset.has_angles,
               "wedge_weighted": weighted,
               "resolution_fsc0143_angst": res["0.143"], "resolution_fsc05_angst": res["0.5"],
               "fsc": [[float(s), float(v)] for s, v in zip(result.shells, result.fsc)],
               "outputs": {k: str(v) for k, v in outputs.items()}}
    write_json_result(args, summary)
    report.summary(f"wrote {args.out} (FSC 0.143: {res['0.143']:.1f} Å, 0.5: "
                   f"{res['0.5']:.1f} Å)")
    return 0
