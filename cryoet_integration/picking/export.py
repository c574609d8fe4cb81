"""Writing picks for subtomogram averaging: RELION 5 (with a companion tomograms.star, or
joined to the user's RELION 5 project), RELION 4, Dynamo and every other ``formats`` writer.

RELION and Dynamo store class numbers, not names: picks are written with the number of
their class in the model (1-based, stable across tomograms; RELION files also carry the
name in ``rlnClassName``). Positions follow each format's conventions through the
``formats`` writers: the table is in voxels of the picked tomogram at its voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from formats import FORMATS, FormatError, check_writable, detect_format, write_particles

from ..errors import CryovisError

RELION = ("relion5", "relion4", "relion31", "relion30")
NUMBERED = RELION + ("dynamo", "motl", "stopgap")
# Formats that cannot hold zero particles (their readers reject an empty file).
NO_EMPTY = ("dynamo", "motl")


def output_format(path: str | Path, given: str | None) -> str:
    """The particle format for ``path``: ``given``, else from the extension (``.star`` is
    RELION 5)."""
    if given:
        if given not in FORMATS or FORMATS[given].writer is None:
            detect_format(path)  # fills FORMATS
        if given not in FORMATS or FORMATS[given].writer is None:
            writable = ", ".join(sorted(k for k, f in FORMATS.items() if f.writer))
            raise CryovisError(f"--format {given!r}: not a writable particle format "
                               f"(writable: {writable})")
        return given
    if Path(path).suffix.lower() == ".star":
        return "relion5"
    try:
        return detect_format(path)
    except FormatError as exc:
        raise CryovisError(f"{exc} (give --format)") from None


@dataclass
class ExportPlan:
    """Everything checked before picking: where each file goes and with which options."""

    path: Path
    fmt: str
    tomo_name: str
    options: dict
    companion: Path | None = None
    companion_table: pd.DataFrame | None = None


def plan_export(path: str | Path, fmt: str | None, tomo_shape_zyx: tuple[int, int, int],
                voxel_size: float, tomo_name: str, tomograms_star: str | Path | None = None,
                binning: float | None = None, overwrite: bool = False) -> ExportPlan:
    """Check the outputs of ``cryovis pick`` and resolve the RELION geometry.

    Args:
        path: the picks file; fmt: its format (None: from the extension).
        tomo_shape_zyx, voxel_size: the picked tomogram (Å per voxel).
        tomo_name: rlnTomoName of the picks.
        tomograms_star: the user's RELION 5 tomograms.star to join (then ``tomo_name`` must
            be listed there); without it RELION 5 output gets ``<stem>_tomograms.star``.
        binning: picked tomogram voxel size / tilt-series pixel size (default from the
            tomograms.star's pixel size and the tomogram's voxel size).
    """
    from formats import read_tomograms

    p = Path(path)
    name = output_format(p, fmt)
    check_writable(p, overwrite)
    if name == "dynamo":
        check_writable(p.with_suffix(".doc"), overwrite)
    if not tomo_name:
        raise CryovisError("the picks need a tomogram name (--tomo-name)")
    plan = ExportPlan(p, name, tomo_name, {})
    if name not in RELION:
        if tomograms_star is not None:
            raise CryovisError(f"--tomograms joins a RELION project; {name} output has no use "
                               "for it")
        if binning:
            plan.options["binning"] = float(binning)
        return plan
    if not voxel_size > 0:
        raise CryovisError("RELION output needs the tomogram's voxel size (--voxel-size)")
    size_xyz = np.array(tomo_shape_zyx[::-1], float)
    if tomograms_star is not None:
        try:
            tomos = read_tomograms(tomograms_star)
        except FormatError as exc:
            raise CryovisError(str(exc)) from None
        row = tomos[tomos["tomo_name"] == tomo_name]
        if row.empty:
            raise CryovisError(f"{tomograms_star}: no tomogram {tomo_name!r} (it lists "
                               f"{list(tomos['tomo_name'])[:8]}); give --tomo-name")
        ts = float(row["tilt_series_pixel_size"].iloc[0])
        b = float(binning) if binning else voxel_size / ts
        their = row[["size_x", "size_y", "size_z"]].to_numpy(float)[0]
        if np.any(np.abs(size_xyz * b - their) > max(2.0, 0.02 * their.max())):
            raise CryovisError(
                f"{tomograms_star}: {tomo_name!r} is {'x'.join(f'{v:g}' for v in their)} "
                f"tilt-series px, but this tomogram is {'x'.join(f'{v:g}' for v in size_xyz)} "
                f"voxels at binning {b:g} ({voxel_size:g} / {ts:g} Å); give --binning or the "
                "matching tomogram")
        plan.options.update(tomograms=tomos, binning=b)
        return plan
    b = float(binning) if binning else 1.0
    table = pd.DataFrame({"tomo_name": [tomo_name], "size_x": [size_xyz[0] * b],
                          "size_y": [size_xyz[1] * b], "size_z": [size_xyz[2] * b],
                          "tilt_series_pixel_size": [voxel_size / b], "binning": [b]})
    plan.options.update(tomograms=table, binning=b)
    if name == "relion5":
        plan.companion = p.with_name(p.stem + "_tomograms.star")
        plan.companion_table = table
        if plan.companion.exists() and not overwrite:
            raise CryovisError(f"{plan.companion}: exists; the RELION 5 picks need their own "
                               "tomograms.star here (another --out name, or --force, or join "
                               "your project with --tomograms THEIR_tomograms.star)")
    return plan


def write_picks(plan: ExportPlan, table: pd.DataFrame, class_numbers: dict[str, int],
                overwrite: bool = False) -> list[Path]:
    """Write the picks as planned; returns the files written (none for an empty table in a
    format that cannot be empty)."""
    from formats import write_tomograms

    out = table.copy()
    out["tomo_name"] = pd.Series([plan.tomo_name] * len(out), dtype=object)
    options = dict(plan.options)
    if plan.fmt in NUMBERED:
        options["class_numbers"] = class_numbers
    if len(out) == 0 and plan.fmt in NO_EMPTY:
        return []
    written = []
    write_particles(plan.path, out, format=plan.fmt, overwrite=overwrite, **options)
    written.append(plan.path)
    if plan.companion is not None:
        write_tomograms(plan.companion, plan.companion_table, overwrite=overwrite)
        written.append(plan.companion)
    return written
