"""Command-line options that place RELION 4/5 centred coordinates: the tomogram geometry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    """The given geometry options as keyword arguments of the particle readers/writers."""
    return {k: v for k, v in {"tomograms": args.tomograms, "tomo_size_xyz": args.tomo_size,
                              "tilt_series_pixel_size": args.tilt_series_pixel_size,
                              "tomo_name_map": args.tomo_name_map}.items()
            if v is not None}
