"""``cryovis info FILE``: a readable (or ``--json``) summary of any cryo-ET file.

The facts come from ``formats.describe`` (built on the format readers); this module only
renders them: one fact per line, or one JSON object (numbers as numbers, null unknown).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any

_SHOWN = 10  # items of a long list or mapping shown in the text output


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
    from formats import describe

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = describe(args.file, voxel_size=args.voxel_size, tomograms=args.tomograms)
    summary["warnings"] = list(summary.get("warnings", [])) + [str(w.message) for w in caught]
    text = json.dumps(summary, indent=1, allow_nan=False) if args.json else render(summary)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `| head -2`) has all it wanted: stop quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        items = [f"{k}: {_fmt(v)}" for k, v in list(value.items())[:_SHOWN]]
        more = f", ... ({len(value) - _SHOWN} more)" if len(value) > _SHOWN else ""
        return ", ".join(items) + more if items else "none"
    if isinstance(value, (list, tuple)):
        items = [_fmt(v) for v in list(value)[:_SHOWN]]
        more = f", ... ({len(value) - _SHOWN} more)" if len(value) > _SHOWN else ""
        return ", ".join(items) + more if items else "none"
    return str(value)


def render(summary: dict[str, Any]) -> str:
    """The human-readable text of a ``formats.describe`` result (one fact per line)."""
    lines = []
    for key, value in summary.items():
        if key == "blocks":
            lines.append("blocks:")
            for block in value:
                detail = (f"{block['rows']} rows; columns: {_fmt(block['columns'])}"
                          if block["type"] == "loop" else f"key/value: {_fmt(block['keys'])}")
                lines.append(f"  {block['block']}: {detail}")
        elif key == "particles" and isinstance(value, dict):
            lines.append("as particles:")
            lines.extend(f"  {k.replace('_', ' ')}: {_fmt(v)}" for k, v in value.items()
                         if k != "warnings")
        elif key == "tilt_series":
            lines.append("tilt series:")
            lines.extend(f"  {_fmt(s)}" for s in value)
        elif key == "warnings":
            lines.extend(f"warning: {w}" for w in value)
        elif value is not None:
            lines.append(f"{key.replace('_', ' ')}: {_fmt(value)}")
    return "\n".join(lines)
