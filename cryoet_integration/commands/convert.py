"""``cryovis convert IN OUT --to FORMAT``: particle files between tools, or volumes.

Particles go through the canonical table (``formats.particles``): the reader applies
origin shifts and the file's conventions, the writer applies the target's. Volumes
(MRC/EM/TIFF) are rewritten in another container, optionally contrast-inverted.
Only base dependencies are imported (no torch/scipy).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from .geometry import add_geometry_options, geometry_options
from .options import (
    add_force,
    add_json,
    check_outputs,
    json_file,
    json_to_stdout,
    write_json_result,
)

VOLUME_FORMATS = {"mrc": ".mrc", "em": ".em", "tiff": ".tif", "zarr": ".zarr"}
_VOLUME_SUFFIX_FAMILY = {".mrc": "mrc", ".mrcs": "mrc", ".map": "mrc", ".rec": "mrc",
                         ".st": "mrc", ".ali": "mrc", ".preali": "mrc", ".ccp4": "mrc",
                         ".em": "em", ".tif": "tiff", ".tiff": "tiff", ".zarr": "zarr"}


def register(subparsers) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert", help="convert particle files between tools, or volumes between formats",
        description="Convert a particle file (RELION 3.0/3.1/4/5, Dynamo, IMOD, EMAN2, "
                    "crYOLO, copick, PyTom, TOM/AV3 motl, STOPGAP, CSV) into another, or a "
                    "volume (MRC/EM/TIFF/OME-Zarr) into another volume format. Positions "
                    "keep their physical place (origin shifts applied); orientations are converted "
                    "between Euler conventions exactly.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  cryovis convert run_data.star picks.tbl --to dynamo "
               "--tomograms tomograms.star --binning 4\n"
               "  cryovis convert picks.tbl particles.star --to relion5 "
               "--tomograms tomograms.star --voxel-size 5.4\n"
               "  cryovis convert tomo.rec tomo.mrc --invert\n"
               "  cryovis convert copick/ExperimentRuns/TS_1/VoxelSpacing10.000/wbp.zarr "
               "TS_1.mrc")
    parser.add_argument("input", type=Path, metavar="IN", help="particle file or volume")
    parser.add_argument("output", type=Path, metavar="OUT", help="file to write")
    parser.add_argument("--to", metavar="FORMAT",
                        help="output format: relion5, relion4, relion31, relion30, dynamo, "
                             "imod, eman2, eman2box, cryolo, copick, pytom, motl, stopgap, "
                             "csv; volumes: mrc, em, tiff, zarr (OME-Zarr, 3 levels) (default: "
                             "from OUT's extension when unambiguous)")
    parser.add_argument("--from", dest="from_format", metavar="FORMAT",
                        help="input particle format (default: detected)")
    parser.add_argument("--voxel-size", type=float, metavar="A",
                        help="Å per pixel of the input's pixel coordinates, overriding the "
                             "file (for Å-based inputs: the voxel size to express them in)")
    add_geometry_options(parser)
    parser.add_argument("--binning", type=float, metavar="B",
                        help="express positions in voxels B times larger than the input "
                             "file's pixels (e.g. 4: RELION 4/5 unbinned -> bin-4 tomogram)")
    parser.add_argument("--out-binning", type=float, metavar="B",
                        help="the output file's pixels are B times smaller than the "
                             "particles' voxels (e.g. 4: bin-4 picks -> RELION 4 unbinned "
                             "px when no tilt-series pixel size is given)")
    parser.add_argument("--tomo-name", metavar="NAME",
                        help="keep only particles of this tomogram (exact string match); "
                             "names inputs that carry none")
    parser.add_argument("--object-name", metavar="NAME",
                        help="copick: pickable object name (default: the particles' class)")
    parser.add_argument("--slicer-angles", action="store_true",
                        help="IMOD models: oriented particles are the slicer-angle (SLAN) "
                             "records (PEET style), read and written")
    parser.add_argument("--box-size", type=float, metavar="PX",
                        help="box size for formats that store one (cbox, box, EMAN2, RELION "
                             "optics)")
    parser.add_argument("--invert", action="store_true",
                        help="volumes: invert the contrast")
    add_force(parser)
    add_json(parser, "the summary")
    parser.set_defaults(func=run)


def _is_volume(path: Path) -> bool:
    from formats import is_motive_list

    family = _VOLUME_SUFFIX_FAMILY.get(path.suffix.lower())
    if family is None:
        return False
    return not (family == "em" and path.exists() and is_motive_list(path))


def run(args: argparse.Namespace) -> int:
    """Convert IN to OUT; prints a one-line summary (or JSON)."""
    from formats import FormatError

    src: Path = args.input
    if not src.exists():
        raise FormatError(src, "no such file")
    check_outputs([json_file(args)], args.force)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.to in VOLUME_FORMATS or (args.to is None and _is_volume(src)):
            summary = _convert_volume(args)
        elif _is_volume(src):
            raise FormatError(src, f"is a volume; volumes convert to "
                                   f"{', '.join(VOLUME_FORMATS)} (got --to {args.to})")
        else:
            summary = _convert_particles(args)
    # what the readers/writers decided (names matched, pixel size chosen, ...), on stderr
    summary["warnings"] = [str(w.message) for w in caught]
    for text in summary["warnings"]:
        print(f"cryovis convert: warning: {text}", file=sys.stderr)
    write_json_result(args, summary)
    if not json_to_stdout(args):
        print(summary["message"])
    return 0


def _convert_volume(args: argparse.Namespace) -> dict[str, Any]:
    from formats import FormatError, read_volume, write_volume

    out: Path = args.output
    family = _VOLUME_SUFFIX_FAMILY.get(out.suffix.lower())
    target = args.to or family
    if target not in VOLUME_FORMATS:
        raise FormatError(out, "cannot tell the volume format: give --to mrc|em|tiff|zarr or "
                               "an .mrc/.em/.tif/.zarr (OME-Zarr) extension")
    if family != target:
        raise FormatError(out, f"extension '{out.suffix}' does not match --to {target} "
                               f"(use {VOLUME_FORMATS[target]})")
    if not _is_volume(args.input):
        raise FormatError(args.input, f"is not a volume (--to {target} converts volumes)")
    vol = read_volume(args.input, voxel_size=args.voxel_size, invert=args.invert)
    write_volume(out, vol, overwrite=args.force)
    shape = "x".join(str(s) for s in vol.shape_xyz)
    return {"kind": "volume", "input": str(args.input), "output": str(out), "to": target,
            "shape_xyz": list(vol.shape_xyz), "voxel_size": vol.voxel_size,
            "inverted": bool(args.invert),
            "message": f"wrote {out} ({target}, {shape} voxels at {vol.voxel_size:g} Å"
                       f"{', inverted' if args.invert else ''})"}


def _target_format(args: argparse.Namespace) -> str:
    from formats import FORMATS, FormatError

    if args.to:
        if args.to not in FORMATS or FORMATS[args.to].writer is None:
            writable = sorted(k for k, f in FORMATS.items() if f.writer)
            raise FormatError(args.output, f"unknown output format '{args.to}' "
                                           f"(particles: {', '.join(writable)}; volumes: "
                                           f"{', '.join(VOLUME_FORMATS)})")
        return args.to
    suffix = args.output.suffix.lower()
    matches = [k for k, f in FORMATS.items() if suffix in f.suffixes and f.writer]
    if len(matches) != 1:
        fits = f"fits {', '.join(matches)}" if matches else "is unknown"
        raise FormatError(args.output, f"give --to: extension '{suffix or '(none)'}' {fits}")
    return matches[0]


def _route_options(args: argparse.Namespace, source: str, target: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reader and writer keyword options from the flags, each given to the side whose format
    declares it; a flag neither side can honour is a one-line error (not silently dropped)."""
    from formats import FORMATS, FormatError

    if source not in FORMATS or FORMATS[source].reader is None:
        readable = ", ".join(sorted(k for k, f in FORMATS.items() if f.reader))
        raise FormatError(args.input, f"unknown input format '{source}' (--from: {readable})")
    reader, writer = FORMATS[source].read_options, FORMATS[target].write_options
    read_only = {"voxel_size": ("--voxel-size", args.voxel_size),
                 "binning": ("--binning", args.binning)}
    write_only = {"binning": ("--out-binning", args.out_binning),
                  "box_size": ("--box-size", args.box_size),
                  "object_name": ("--object-name", args.object_name)}
    either = {key: (f"--{key.replace('_xyz', '').replace('_', '-')}", value)
              for key, value in geometry_options(args).items()}
    if args.slicer_angles:
        either["slicer_angles"] = ("--slicer-angles", True)
    read_opts: dict[str, Any] = {}
    write_opts: dict[str, Any] = {}
    for given, accepted, side, path, opts in (
            (read_only, reader, f"{source} reader", args.input, read_opts),
            (write_only, writer, f"{target} writer", args.output, write_opts)):
        for key, (flag, value) in given.items():
            if value is None:
                continue
            if key not in accepted:
                raise FormatError(path, f"{flag}: the {side} cannot honour it "
                                        f"(it takes: {_flags(accepted)})")
            opts[key] = value
    for key, (flag, value) in either.items():
        if key not in reader and key not in writer:
            raise FormatError(args.input, f"{flag}: neither the {source} reader nor the "
                                          f"{target} writer takes it")
        if key in reader:
            read_opts[key] = value
        if key in writer:
            write_opts[key] = value
    if args.tomo_name is not None and "tomo_name" in reader:
        read_opts["tomo_name"] = args.tomo_name
    return read_opts, write_opts


def _flags(options: frozenset[str]) -> str:
    return ", ".join(sorted(options)) or "no options"


def _convert_particles(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from formats import FormatError, detect_format, read_particles, write_particles

    target = _target_format(args)
    source = args.from_format or detect_format(args.input)
    read_opts, write_opts = _route_options(args, source, target)
    table = read_particles(args.input, format=source, **read_opts)
    if args.tomo_name is not None:
        names = table["tomo_name"].fillna("").astype(str)
        if (names == "").all():
            table["tomo_name"] = args.tomo_name
        else:
            keep = names == args.tomo_name
            if not keep.any():
                known = sorted(set(names))[:8]
                raise FormatError(args.input, f"no particles in tomogram '{args.tomo_name}' "
                                              f"(names are matched exactly; file has {known})")
            table = table[keep.to_numpy()].reset_index(drop=True)
    write_particles(args.output, table, format=target, overwrite=args.force, **write_opts)
    tomos = pd.unique(table["tomo_name"])
    sizes = [float(v) for v in np.unique(np.round(table["voxel_size"].dropna(), 6))]
    size_text = ", ".join(f"{v:g}" for v in sizes[:3]) + (" Å" if sizes else "unknown")
    return {"kind": "particles", "input": str(args.input), "output": str(args.output),
            "from": source, "to": target, "particles": len(table), "tomograms": len(tomos),
            "voxel_size": sizes,
            "message": f"converted {len(table)} particles ({len(tomos)} tomogram"
                       f"{'s' if len(tomos) != 1 else ''}, voxel size {size_text}) "
                       f"{source} -> {target}: {args.output}"}
