"""``cryovis classify TOMO PICKS --model MODEL --out PICKS2``: classify picked subtomograms.

The DSM-Net-style classifier (``cryovis train classifier``) gives each pick a class and
its probability (written in the picks' format, class numbers of the model's classes),
and on request its particle mask and recovered density (one MRC per pick at the model's
voxel size) and its feature vector (CSV, with a PCA / t-SNE figure coloured by class).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CryovisError, require_engine
from .geometry import read_picks
from .options import (
    add_device,
    add_force,
    add_json,
    add_threads,
    check_output,
    check_output_folder,
    check_outputs,
    json_file,
    read_input_volume,
    use_threads,
    write_json_result,
)
from .progress import Report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify", help="classify picks with the subtomogram classifier (DSM-Net)",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    parser.add_argument("tomogram", help="tomogram (MRC, EM or TIFF)")
    parser.add_argument("picks", help="particle list in any format cryovis reads")
    parser.add_argument("--model", default=None,
                        help="classifier MODEL(.pt) with MODEL.json (default: the shipped one)")
    parser.add_argument("--out", required=True, help="classified picks (.star, .csv, .tbl, ...)")
    parser.add_argument("--format", default=None,
                        help="output particle format (default: from --out's extension; the "
                        "picks' own format when the extensions agree)")
    parser.add_argument("--masks-out", default=None, metavar="DIR",
                        help="write each pick's particle mask (MRC, model voxel size)")
    parser.add_argument("--density-out", default=None, metavar="DIR",
                        help="write each pick's recovered density (MRC, model voxel size)")
    parser.add_argument("--features-out", default=None, metavar="CSV",
                        help="write the feature vectors (CSV) and CSV's stem + _features.png")
    parser.add_argument("--tomograms", default=None, metavar="STAR",
                        help="join this RELION 5 tomograms.star (RELION output)")
    parser.add_argument("--tomo-name", default=None,
                        help="rlnTomoName / tomo_name of the picks (default: the picks' own, "
                        "else TOMO's stem)")
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="override TOMO's voxel size (Å)")
    parser.add_argument("--polarity", choices=("auto", "dark", "light"), default="auto",
                        help="contrast of dense matter (auto: from the boxes)")
    add_device(parser)
    add_threads(parser)
    add_json(parser, "the run summary")
    add_force(parser)
    parser.set_defaults(func=run)


def _output_format(out: str, given: str | None, picks: str) -> str | None:
    if given:
        return given
    if Path(out).suffix.lower() == Path(picks).suffix.lower():
        from formats import FormatError, detect_format

        try:
            return detect_format(picks)
        except FormatError:
            return None
    return None


def run(args) -> int:
    require_engine("torch", "scipy")
    from ..picking.export import RELION, plan_export, write_picks
    from ..segmentation.device import resolve_device
    from ..subtomograms.classifier.prediction import load_classifier

    report = Report("classify")
    if args.voxel_size is not None and not args.voxel_size > 0:
        raise CryovisError(f"--voxel-size must be > 0 Å, got {args.voxel_size}")
    device = resolve_device(args.device)
    net, card = load_classifier(args.model, device=device)
    volume = read_input_volume(args.tomogram, voxel_size=args.voxel_size, what="tomogram")
    voxel_size = float(volume.voxel_size or 0.0)
    if not voxel_size > 0:
        raise CryovisError(f"{args.tomogram}: no voxel size in the header; give --voxel-size")
    from formats import positions_voxels

    table = read_picks(args.picks, volume, args, inside=True)
    xyz = positions_voxels(table)
    names = table["tomo_name"].astype(str) if "tomo_name" in table else None
    tomo_name = args.tomo_name or (names.iloc[0] if names is not None and names.iloc[0]
                                   else Path(args.tomogram).stem)
    plan = plan_export(args.out, _output_format(args.out, args.format, args.picks),
                       tuple(volume.data.shape), voxel_size, tomo_name, args.tomograms,
                       None, args.force)
    figure = None
    if args.features_out:
        features = check_output(args.features_out, args.force)
        figure = features.with_name(features.stem + "_features.png")
        check_output(figure, args.force)
    check_outputs([json_file(args)], args.force)
    folders = [check_output_folder(p) for p in (args.masks_out, args.density_out) if p]
    stem = Path(args.tomogram).stem
    per_pick = {key: [Path(folder) / f"{stem}_{i + 1:05d}_{key}.mrc" for i in range(len(table))]
                for key, folder in (("mask", args.masks_out), ("density", args.density_out))
                if folder}
    for paths in per_pick.values():
        if paths[0].parent.is_dir():
            check_outputs(paths, args.force)

    from ..subtomograms.classifier.prediction import (
        classified_table,
        classify_picks,
        feature_table,
        plot_features,
    )

    shape = "x".join(str(n) for n in volume.data.shape[::-1])
    report.say(f"{args.tomogram}: {shape} voxels at {voxel_size:g} Å, {len(table)} picks; "
               f"classifier of {', '.join(card['classes'])} at {card['voxel_size']:g} Å "
               f"on {device}")
    with use_threads(args.threads):
        result = classify_picks(volume.data, voxel_size, xyz, net, card, args.polarity, device)
    out = classified_table(table, result)
    if plan.fmt in RELION:
        # RELION's own name for the probability of a particle's assigned class
        out = out.rename(columns={"class_probability": "rlnMaxValueProbDistribution"})
    numbers = {c: i + 1 for i, c in enumerate(card["classes"])}
    written = write_picks(plan, out, numbers, overwrite=args.force)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    from formats import Volume, atomic_path, write_volume

    for key, paths in per_pick.items():
        stack = result.masks.astype("int8") if key == "mask" else result.densities
        for path, data in zip(paths, stack):
            write_volume(path, Volume(data, voxel_size=result.voxel_size), overwrite=args.force)
        written.append(paths[0].parent)
    if args.features_out:
        with atomic_path(features, overwrite=args.force) as tmp:
            feature_table(out, result).to_csv(tmp, index=False)
        plot_features(result.features, result.called, figure, title=stem)
        written += [features, figure]
    counts = out["class"].value_counts().to_dict()
    summary = {"tomogram": args.tomogram, "picks": args.picks, "n_picks": len(out),
               "format": plan.fmt, "per_class": {str(k): int(v) for k, v in counts.items()},
               "class_numbers": numbers, "polarity": result.polarity,
               "outputs": [str(p) for p in written], "notes": result.notes}
    for note in result.notes:
        report.say(f"note: {note}")
    write_json_result(args, summary)
    per_class = ", ".join(f"{n} {c}" for c, n in counts.items())
    report.summary(f"{len(out)} picks classified ({per_class}); wrote "
                   f"{', '.join(map(str, written))}")
    return 0
