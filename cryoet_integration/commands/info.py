"""``cryovis info FILE``: a readable (or ``--json``) summary of any cryo-ET file."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info", help="summarise a volume, particle, STAR, mdoc, box or table-map file",
        description="Print what a file holds: volumes (shape x,y,z, voxel size, mode, origin,"
                    " min/max/mean), particle files (count, tomograms, classes, voxel sizes,"
                    " detected format), STAR blocks and columns, SerialEM mdoc tilts and dose,"
                    " crYOLO/EMAN boxes, Dynamo table maps, CSV.")
    parser.add_argument("file", help="the file to describe")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object")
    parser.add_argument("--voxel-size", type=float, default=None, metavar="A",
                        help="voxel size in Å overriding the file's header")
    parser.add_argument("--tomograms", default=None, metavar="STAR",
                        help="RELION 5 tomograms.star (tomogram sizes) for particle files in"
                             " centred Å")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.file``; bad files raise FormatError (exit 2)."""
    from formats.info import jsonable, render, summarize

    summary = summarize(args.file, voxel_size=args.voxel_size, tomograms=args.tomograms)
    if args.json:
        print(json.dumps(jsonable(summary), indent=1))
    else:
        print(render(summary))
    return 0
