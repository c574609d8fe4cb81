"""Command-line options that place RELION 4/5 centred coordinates: the tomogram geometry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import CryovisError


def add_geometry_options(parser: argparse.ArgumentParser) -> None:
    """``--tomograms``, ``--tomo-size``, ``--tilt-series-pixel-size``, ``--tomo-name-map``."""
    parser.add_argument("--tomograms", type=Path, metavar="STAR",
                        help="RELION 5 tomograms.star: tomogram sizes and tilt-series pixel "
                             "sizes (needed to read or write RELION 5 centred coordinates)")
    parser.add_argument("--tomo-size", metavar="XxYxZ",
                        help="tomogram size in unbinned tilt-series px (RELION 5, EMAN2 json) "
                             "when there is no tomograms.star")
    parser.add_argument("--tilt-series-pixel-size", type=float, metavar="A",
                        help="unbinned tilt-series pixel size (RELION 4/5)")
    parser.add_argument("--tomo-name-map", type=Path, metavar="FILE",
                        help="tomogram names of the particles -> names in tomograms.star, "
                             "one 'particle_name star_name' pair a line, for names that do "
                             "not match even without the suffixes .mrc, .tomostar, .st, _rec")


def geometry_options(args: argparse.Namespace) -> dict[str, Any]:
    """The given geometry options as keyword arguments of the particle readers/writers
    (a command may define only some of them, e.g. just ``--tomograms``)."""
    given = {"tomograms": getattr(args, "tomograms", None),
             "tomo_size_xyz": getattr(args, "tomo_size", None),
             "tilt_series_pixel_size": getattr(args, "tilt_series_pixel_size", None),
             "tomo_name_map": getattr(args, "tomo_name_map", None)}
    return {k: v for k, v in given.items() if v is not None}


def read_picks(path: str | Path, volume: Any, args: argparse.Namespace | None = None, *,
               binning: float | None = None, inside: bool = False) -> Any:
    """The picks of ``path`` with ``x, y, z`` in voxels of ``volume`` (a ``formats.Volume``).

    RELION 4/5 centred coordinates are placed with the command's geometry options, else the
    ``<stem>_tomograms.star`` beside the picks, else the tomogram itself (``binning`` times
    finer tilt series); picks at another voxel size are rescaled
    (``formats.read_particles_on``). An empty list is an error; so, with ``inside``, is any
    pick outside the tomogram.
    """
    from formats import FormatError, outside_tomogram, positions_voxels, read_particles_on

    shape = tuple(volume.data.shape)
    try:
        table = read_particles_on(path, shape, float(volume.voxel_size), binning=binning,
                                  **(geometry_options(args) if args is not None else {}))
    except FormatError as exc:
        raise CryovisError(str(exc)) from None
    if not len(table):
        raise CryovisError(f"{path}: lists no particles")
    if inside:
        xyz = positions_voxels(table)
        outside = outside_tomogram(xyz, shape)
        if outside.any():
            i = int(outside.argmax())
            raise CryovisError(
                f"{path}: {int(outside.sum())} of {len(table)} picks lie outside the tomogram "
                f"({'x'.join(map(str, shape[::-1]))} voxels), e.g. pick {i + 1} at "
                f"({', '.join(f'{v:.1f}' for v in xyz[i])}); wrong tomogram or voxel size?")
    return table.reset_index(drop=True)
