"""``cryovis membranes``: membrane instances, fitted surfaces, meshes and orientation priors.

Turns a membrane mask or probability map (``cryovis segment``'s output) into instances,
fits each with an ellipsoid, a closed Gaussian-process implicit surface or an open GP
height field (chosen by fit residual), and writes to ``--out DIR``: the refined mask of
uniform thickness (``<stem>_refined.mrc``), the instance labels (``<stem>_instances.mrc``),
the surface uncertainty (``<stem>_uncertainty.mrc``, voxels), one mesh per membrane
(``<stem>_meshes/``), a table per membrane (``<stem>_membranes.csv`` and ``.json``) and points
on the surfaces with their normals (``<stem>_surface_points.csv``). ``--picks`` with
``--picks-out`` gives the picks near a membrane its normal as orientation prior.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CryovisError, require_engine
from .geometry import read_picks
from .options import (
    CREATES_DIRS,
    add_force,
    add_json,
    add_threads,
    add_tilt_range,
    check_output_folder,
    check_outputs,
    json_file,
    read_input_volume,
    use_threads,
    write_json_result,
)
from .progress import Report


def add_fit_options(parser) -> None:
    """The fitting options ``membranes`` and ``segment --surfaces`` share."""
    from ..membranes.pipeline import MESH_FORMATS

    parser.add_argument("--thickness", type=float, default=None, metavar="VOXELS",
                        help="thickness of the refined membranes, voxels (default: measured "
                        "on the input mask)")
    parser.add_argument("--alpha", type=float, default=1.2,
                        help="exterior anchors of the GP surfaces at ALPHA x the distance "
                        "from the centroid (default 1.2, the paper's)")
    parser.add_argument("--merge-distance", type=float, default=2.0, metavar="VOXELS",
                        help="merge regions closer than this, voxels (default 2)")
    parser.add_argument("--min-voxels", type=int, default=None,
                        help="smallest instance, voxels (default: a patch 6x6 thicknesses)")
    parser.add_argument("--keep-observed", action="store_true",
                        help="keep the input's membrane voxels in the refined mask too (the "
                        "fit then only fills what the input misses)")
    parser.add_argument("--mesh-format", choices=MESH_FORMATS, default="obj",
                        help="mesh file format (default obj)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "membranes", help="membrane instances, fitted surfaces, meshes, orientation priors",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    parser.add_argument("mask", metavar="MASK_OR_PROB",
                        help="membrane mask or probability map (MRC, EM or TIFF)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help=f"output folder; {CREATES_DIRS}")
    parser.add_argument("--threshold", type=float, default=None,
                        help="membrane where the map is > T (default 0.5 for probability "
                        "maps; masks are taken as they are)")
    add_tilt_range(parser, "tilt range of the series, degrees: each membrane then reports "
                   "the fraction of its surface no tilt shows edge-on (completed by the fit)")
    add_fit_options(parser)
    parser.add_argument("--picks", default=None, metavar="PICKS",
                        help="particle positions (any particle format) on the same tomogram")
    parser.add_argument("--picks-out", default=None, metavar="ORIENTED",
                        help="the picks with membrane-normal orientation priors (format from "
                        "the extension: .star RELION with rlnAngleTilt/PsiPrior, .tbl Dynamo)")
    parser.add_argument("--tomogram", default=None, metavar="TOMO",
                        help="the picks' tomogram: its shape must match the mask's")
    parser.add_argument("--prior-distance", type=float, default=None, metavar="VOXELS",
                        help="picks within this distance of a membrane get its normal "
                        "(default: 3 membrane thicknesses)")
    parser.add_argument("--voxel-size", type=float, default=None, metavar="A",
                        help="override the mask's voxel size (Å)")
    add_threads(parser)
    add_json(parser, "the summary")
    add_force(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    require_engine("scipy", "skimage", "trimesh")
    if (args.picks is None) != (args.picks_out is None):
        raise CryovisError("--picks and --picks-out go together")
    with use_threads(args.threads):
        return _membranes(args)


def check_fit_options(args) -> None:
    """Refuse nonsensical fitting options before any work."""
    if args.thickness is not None and args.thickness <= 0:
        raise CryovisError(f"--thickness must be > 0 voxels, got {args.thickness:g}")
    if not 1.0 < args.alpha < 2.0:
        raise CryovisError(f"--alpha must lie between 1 and 2 (the paper: 1.2), got "
                           f"{args.alpha:g}")
    if args.merge_distance < 0:
        raise CryovisError(f"--merge-distance must be >= 0, got {args.merge_distance:g}")


def check_existing(out_dir: Path, stem: str, force: bool) -> None:
    """Refuse an output folder that already holds this step's files (without ``force``)."""
    from ..membranes.pipeline import output_paths

    for path in output_paths(out_dir, stem).values():
        if path.exists() and not force and (path.is_file() or any(path.iterdir())):
            raise CryovisError(f"{path}: exists (use --force to replace it)")


def _membranes(args) -> int:
    import numpy as np

    from ..membranes.pipeline import MembraneInputError, membrane_mask

    report = Report("membranes")
    check_fit_options(args)
    out_dir = check_output_folder(args.out)
    stem = Path(args.mask).name.split(".")[0]
    check_existing(out_dir, stem, args.force)
    picks_out = Path(args.picks_out) if args.picks_out else None
    check_outputs([picks_out, json_file(args)], args.force)
    volume = read_input_volume(args.mask, voxel_size=args.voxel_size, what="membrane map")
    picks = None
    if args.picks is not None:
        check_tomogram_shape(volume, args.mask, args.tomogram)
        picks = read_picks(args.picks, volume, args, inside=True)
    try:
        mask, threshold = membrane_mask(np.asarray(volume.data), args.threshold)
    except MembraneInputError as exc:
        raise CryovisError(f"{args.mask}: {exc}") from None
    summary = run_fit(args, report, mask, volume.voxel_size, volume.origin, args.mask, out_dir,
                      stem, picks, picks_out)
    summary["threshold"] = threshold
    write_json_result(args, summary)
    return 0


def check_tomogram_shape(volume, mask_path, tomogram) -> None:
    """Refuse a ``--tomogram`` (the picks' tomogram) of another shape than the mask."""
    from formats import read_volume

    shape = tuple(volume.data.shape)
    if tomogram is not None:
        tomo_shape = tuple(read_volume(tomogram).data.shape)
        if tomo_shape != shape:
            raise CryovisError(f"{mask_path}: shape {shape} (z, y, x) does not match the "
                               f"picks' tomogram {tomogram} {tomo_shape}")


def run_fit(args, report: Report, mask, voxel_size: float, origin, source: str,
            out_dir: Path, stem: str, picks=None, picks_out: Path | None = None) -> dict:
    """Fit the membranes of ``mask`` (``[z, y, x]``, from ``source``, ``voxel_size`` Å, with
    ``origin``), write them into ``out_dir`` and summarise (shared by ``membranes`` and
    ``segment --surfaces``)."""
    from ..membranes.pipeline import fit_membranes, write_result

    vs = float(voxel_size or 0.0)
    tilt = tuple(args.tilt_range) if getattr(args, "tilt_range", None) else None
    if not mask.any():
        report.say(f"{source}: no membrane voxels; writing an empty result")
    with report.bar("membranes") as update:
        result = fit_membranes(mask, vs or 1.0, thickness=args.thickness, tilt_range_deg=tilt,
                               alpha=args.alpha, min_voxels=args.min_voxels,
                               merge_distance=args.merge_distance,
                               keep_observed=args.keep_observed, progress=update)
    files = write_result(result, out_dir, stem, voxel_size=vs, origin=origin,
                         mesh_format=args.mesh_format, overwrite=args.force)
    summary = {"outputs": files, "info": result.info, "membranes": result.table}
    if picks is not None:
        summary["picks"] = write_oriented_picks(
            picks, picks_out, result, vs, mask.shape, args.prior_distance, args.force)
    info = result.info
    report.summary(f"{info['instances']} membrane(s) ({info['closed']} closed, "
                   f"{info['sheets']} sheet(s)) from {info['components']} component(s); "
                   f"thickness {info['thickness_voxels']:.2f} voxels; wrote {out_dir}")
    return summary


def write_oriented_picks(picks, path: Path, result, voxel_size: float, shape_zyx,
                         prior_distance: float | None, force: bool) -> dict:
    """Give picks near a membrane its normal as orientation (and RELION priors); write them
    to ``path`` in the format its extension names (RELION 5 centred coordinates use the
    mask's size ``shape_zyx`` and voxel size, Å, as the tomogram's)."""
    import numpy as np

    from formats import (
        detect_format,
        orientations,
        positions_voxels,
        set_orientations,
        write_particles,
    )

    from ..membranes.orientation import nearest_normals, normal_matrices

    xyz = positions_voxels(picks)
    t = float(result.info.get("thickness_voxels") or 1.0)
    limit = 3 * t if prior_distance is None else float(prior_distance)
    surf_xyz, surf_n, surf_ids = result.surface_points
    normals, ids, dist = nearest_normals(xyz, surf_xyz, surf_n, surf_ids, limit)
    near = ids > 0
    oriented = picks.copy()
    matrices = np.array(orientations(oriented))
    if near.any():
        matrices[near] = normal_matrices(normals[near])
    set_orientations(oriented, matrices)
    oriented["membrane_id"] = ids
    oriented["membrane_distance_voxels"] = np.where(np.isfinite(dist), dist, np.nan)
    fmt = detect_format(path)
    options: dict = {"angle_priors": True} if fmt.startswith("relion") else {}
    if fmt == "relion5":
        options.update(tomo_size_xyz="x".join(str(n) for n in shape_zyx[::-1]),
                       tilt_series_pixel_size=float(voxel_size or 1.0))
    write_particles(path, oriented, format=fmt, overwrite=force, **options)
    return {"path": str(path), "format": fmt, "n": int(len(picks)),
            "oriented": int(near.sum()), "max_distance_voxels": limit}

