"""``cryovis segment``: tiled U-Net segmentation of a tomogram (default: membranes).

A one-class model writes one probability map to ``--out``; a K-class model writes
``<stem>_<class>.mrc`` per class next to ``--out`` (summing to 1, with the manifest
``<stem>_classes.json``). ``--labels-out`` adds the argmax labels (1..K as in training, or
as the strokes were painted for a model trained on ``cryovis pseudolabel`` output) and
``--threshold`` turns probability maps into 0/1 masks. Every output has the input's voxel
size and origin.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..errors import CryovisError, require_engine
from ..segmentation.device import resolve_device
from .membranes import add_fit_options, check_existing, check_fit_options, run_fit
from .options import (
    CREATES_DIRS,
    VOLUME_SUFFIXES,
    add_device,
    add_force,
    add_json,
    add_priors,
    add_threads,
    check_output,
    check_output_folder,
    check_outputs,
    json_file,
    make_folders,
    read_input_volume,
    use_threads,
    write_json_result,
)
from .progress import Report


def _memory_mib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a memory size in MiB > 0, got '{text}'")
    return value


def register(subparsers) -> None:
    from ..segmentation.inference import DEFAULT_OVERLAP, DEFAULT_TILE
    from ..segmentation.streaming import DEFAULT_BUDGET_MIB

    parser = subparsers.add_parser(
        "segment", help="segment a tomogram with a 3D U-Net (default: membranes)",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    parser.add_argument("tomogram", help="tomogram (MRC, EM, TIFF, or OME-Zarr: the level "
                        "nearest the model's voxel size)")
    parser.add_argument("--out", required=True,
                        help="output MRC (one-class) or stem for <stem>_<class>.mrc (K-class); "
                        f"{CREATES_DIRS}")
    parser.add_argument("--model", default=None,
                        help="model MODEL(.pt) with MODEL.json (default: the shipped membrane "
                        "model)")
    parser.add_argument("--labels-out", default=None, metavar="MRC",
                        help="also write argmax labels (0 background, 1..K)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="write 0/1 masks (probability > threshold) instead of maps")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"largest tile edge, voxels at the model's voxel size "
                        f"(default {DEFAULT_TILE})")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help=f"minimum tile overlap, voxels (default {DEFAULT_OVERLAP})")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the 8 axis flips (8x slower)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="bfloat16 autocast or float32; auto (the default) = bf16 where "
                        "the CPU/GPU has native bf16 (probabilities differ by < 0.01)")
    parser.add_argument("--surfaces", default=None, metavar="DIR",
                        help="then fit the membranes (as `cryovis membranes`, on probability "
                        "> --threshold or 0.5) into DIR; " + CREATES_DIRS)
    add_fit_options(parser)
    add_device(parser)
    parser.add_argument("--memory", type=_memory_mib, default=None, metavar="MIB",
                        help="peak resident memory to stay within, MiB: the tomogram streams "
                        "through it (tiles made smaller if needed); an error before any work if it "
                        f"cannot. Without it, tomograms whose arrays exceed {DEFAULT_BUDGET_MIB} "
                        "MiB stream within that")
    parser.add_argument("--memmap", action="store_true",
                        help="keep the probability arrays in memory-mapped files beside --out "
                        "(when not streamed: rescaling, --priors estimate, --surfaces, "
                        "non-MRC outputs)")
    parser.add_argument("--voxel-size", type=float, default=None, metavar="A",
                        help="override the tomogram's voxel size (Å)")
    add_priors(parser)
    add_threads(parser)
    add_json(parser, "the summary")
    add_force(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    require_engine("torch", "scipy")
    with use_threads(args.threads):
        return _segment(args)


def _segment(args) -> int:
    import dataclasses

    import numpy as np

    from ..segmentation.checkpoint import load_model
    from ..segmentation.classmaps import class_map_paths, manifest_path, write_manifest
    from ..segmentation.inference import RESCALE_TOLERANCE, check_input, use_bf16
    from ..segmentation.streaming import DEFAULT_BUDGET_MIB, plan_stream, warm_up

    if args.tile < 16 or args.overlap < 0 or args.overlap >= args.tile:
        raise CryovisError(f"--tile must be >= 16 and --overlap in [0, tile), got "
                           f"{args.tile}/{args.overlap}")
    report = Report("segment")
    device = resolve_device(args.device)
    net, card = load_model(args.model, device=device)
    targets = class_map_paths(args.out, card["classes"])
    labels_out = Path(args.labels_out) if args.labels_out else None
    for what, path in [("--out", p) for p in targets.values()] + [("--labels-out", labels_out)]:
        if path is not None:
            check_output(path, args.force, VOLUME_SUFFIXES, what)
    manifest = manifest_path(args.out) if len(targets) > 1 else None
    if manifest is not None:
        check_output(manifest, args.force, (".json",), "--out")
    if args.priors == "estimate" and "train_priors" not in card:
        raise CryovisError(f"--priors estimate: model {args.model or 'default'} records no "
                           "training class priors (only models trained on K-class "
                           "pseudo-labels or label maps do)")
    outputs = check_outputs([*targets.values(), manifest, labels_out, json_file(args)],
                            args.force)
    if args.surfaces is not None:
        check_fit_options(args)
        check_existing(check_output_folder(args.surfaces), Path(args.out).stem, args.force)
    # Mapped, not loaded: the memory budget decides whether the tomogram is ever whole.
    volume = read_input_volume(args.tomogram, voxel_size=args.voxel_size, what="tomogram",
                               target_voxel_size=float(card["voxel_size"]), mmap=True)
    bf16 = use_bf16(args.precision, device)
    model_vs, vs = float(card["voxel_size"]), float(volume.voxel_size or 0.0)
    shape = "x".join(str(n) for n in volume.data.shape[::-1])
    rescale = vs > 0 and abs(vs / model_vs - 1) > RESCALE_TOLERANCE
    whole = _needs_whole(args, card, rescale, [*targets.values(), labels_out])
    memory = DEFAULT_BUDGET_MIB if args.memory is None else args.memory
    output = card.get("output", "auto")
    # Without --memory only a tomogram whose arrays alone exceed the default budget streams:
    # the tile plan then depends on the shape and the budget, never on what this process
    # happens to hold, so an ordinary tomogram gives the same output alone or in a batch.
    fits = _arrays_mib(volume.data.shape, net, output) <= memory
    stream = whole is None and (args.memory is not None or not fits)
    if not stream and fits and isinstance(volume.data, np.memmap):
        # held whole anyway: loaded, as formats reads a file of this size, so segment_volume
        # keeps its probabilities in memory instead of in temporary memory-mapped files
        volume = dataclasses.replace(volume, data=np.array(volume.data))
    if stream:
        check_input(volume, finite=False)  # read_input_volume scanned the voxels
        warm_up(net, device=device, bf16=bf16, output=output)
        plan = plan_stream(tuple(volume.data.shape), net, memory, args.tile, args.overlap,
                           volume.data.dtype.itemsize, output, what=args.tomogram)
    elif whole is not None:
        need = _whole_estimate_mib(volume.data.shape, rescale, net, output)
        if need > memory:
            if args.memory is not None:
                raise CryovisError(f"{args.tomogram}: --memory {memory:g} MiB is too small: "
                                   f"{whole} holds the whole tomogram (about {need:.0f} MiB)")
            report.say(f"warning: {whole} holds the whole tomogram (about {need:.0f} MiB, "
                       f"over the {memory:g} MiB default of --memory)")
    if rescale:
        report.say(f"{args.tomogram}: {shape} voxels; rescaling {vs:.4g} -> {model_vs:.4g} Å "
                   "per voxel (the model's), normalising (median/MAD)")
    else:
        report.say(f"{args.tomogram}: {shape} voxels at {vs or model_vs:.4g} Å; normalising "
                   "(median/MAD)")
    report.say(f"model {card.get('name', args.model or 'default')} "
               f"({', '.join(card['classes'])}) on {device}, "
               f"{'bf16' if bf16 else 'fp32'}{', 8 flips (TTA)' if args.tta else ''}, "
               f"{args.threads} thread(s)")
    make_folders(outputs)
    if stream:
        summary = _segment_streamed(args, report, volume, net, card, plan, memory, targets,
                                    labels_out, bf16, device)
    else:
        summary = _segment_whole(args, report, volume, net, card, targets, labels_out, bf16,
                                 device)
    if manifest is not None:
        write_manifest(args.out, card["classes"],
                       card.get("label_values") or list(range(1, len(targets) + 1)),
                       overwrite=args.force)
    write_json_result(args, summary)
    kind = "masks" if args.threshold is not None else "probabilities"
    written = [str(p) for p in targets.values()] + ([str(labels_out)] if labels_out else [])
    report.summary(f"wrote {kind} {', '.join(written)}")
    return 0


def _segment_whole(args, report: Report, volume, net, card: dict, targets: dict,
                   labels_out: Path | None, bf16: bool, device: str) -> dict:
    """Segment holding the whole tomogram (``segment_volume``), write the outputs, fit the
    surfaces if asked; returns the JSON summary."""
    import numpy as np

    from formats import Volume, write_volume

    from ..pseudolabel.priors import correct_volume
    from ..segmentation.inference import segment_volume

    memmap_dir = Path(args.out).resolve().parent if args.memmap else None
    with report.bar("tiles") as update:
        seg = segment_volume(volume, net, card, tile=args.tile, overlap=args.overlap,
                             tta=args.tta, bf16=bf16, device=device, memmap_dir=memmap_dir,
                             progress=update)
    for w in seg.info["warnings"]:
        report.say(f"warning: {w}")
    # The weak classifier's rule (pseudolabel.priors): a network is never applied to "the
    # painted tomogram" as such, so auto keeps its training mix, as a saved forest does.
    if args.priors == "estimate":
        priors, iters = correct_volume(seg.probabilities, np.asarray(card["train_priors"]))
        seg.info.update(priors=priors.round(4).tolist(), prior_iterations=iters)
        mix = ", ".join(f"{n} {100 * p:.1f} %" for n, p in zip(card["classes"], priors))
        report.say(f"class priors re-estimated on the tomogram: {mix}")

    def save(path: Path, data) -> None:
        write_volume(path, Volume(data, voxel_size=seg.voxel_size, origin=seg.origin),
                     overwrite=args.force)

    for k, path in enumerate(targets.values(), start=1):
        prob = seg.class_map(k)
        # A memory-mapped map (a streamed large tomogram) is written slab by slab as it is.
        save(path, (prob > args.threshold).astype(np.int8) if args.threshold is not None
             else prob if prob.dtype == np.float32 else prob.astype(np.float32))
    if labels_out is not None:
        thr = 0.5 if args.threshold is None else args.threshold
        save(labels_out, seg.labels(thr).astype(np.int8 if len(card["classes"]) < 128
                                                else np.int16))
    summary = {"outputs": {n: str(p) for n, p in targets.items()}, "bf16": bf16,
               "device": device, "labels": args.labels_out, "classes": card["classes"],
               "voxel_size": seg.voxel_size,
               **{k: v for k, v in seg.info.items() if k != "warnings"}}
    if args.surfaces is not None:
        k = card["classes"].index("membrane") + 1 if "membrane" in card["classes"] else 1
        thr = 0.5 if args.threshold is None else args.threshold
        summary["surfaces"] = run_fit(
            args, report, np.asarray(seg.class_map(k)) > thr, seg.voxel_size, seg.origin,
            args.tomogram, Path(args.surfaces), Path(args.out).stem)
    return summary


def _needs_whole(args, card: dict, rescale: bool, outputs: list) -> str | None:
    """Why this run must hold the whole tomogram (None: it streams)."""
    from formats import MRC_SUFFIXES

    if rescale:
        return "rescaling to the model's voxel size (Fourier)"
    if card.get("normalise", "robust") != "robust":
        return f"the model's {card['normalise']} normalisation"
    if args.priors == "estimate":
        return "--priors estimate"
    if args.surfaces is not None:
        return "--surfaces"
    for path in outputs:
        if path is not None and Path(path).suffix.lower() not in MRC_SUFFIXES:
            return f"writing {Path(path).suffix} files"
    return None


def _arrays_mib(shape, net, output: str, rescale: bool = False) -> float:
    """MiB of the in-memory path's whole-tomogram arrays (shape ``[z, y, x]``): the
    tomogram as float32, its normalised copy and the probabilities (twice when rescaled: at
    the model's and at the input's voxel size)."""
    import numpy as np

    from ..segmentation.inference import output_channels
    from ..segmentation.streaming import MIB

    voxels = float(np.prod(shape))
    return voxels * 4 * (2 + output_channels(net, output)) * (2 if rescale else 1) / MIB


def _whole_estimate_mib(shape, rescale: bool, net, output: str) -> float:
    """Rough peak (MiB) of the in-memory path: what the process holds plus its arrays."""
    from ..segmentation.streaming import resident_mib

    return resident_mib() + _arrays_mib(shape, net, output, rescale)


def _segment_streamed(args, report: Report, volume, net, card: dict, plan, memory: float,
                      targets: dict, labels_out: Path | None, bf16: bool, device: str) -> dict:
    """Stream the tomogram through ``plan`` into pre-sized MRC outputs (each written
    atomically); returns the JSON summary."""
    import numpy as np

    from formats import MrcBlockWriter

    from ..preprocess import robust_stats
    from ..segmentation.inference import Segmentation, overlap_factor
    from ..segmentation.streaming import stream_probabilities

    model_vs = float(card["voxel_size"])
    vs = float(volume.voxel_size or 0.0)
    warnings = [] if vs > 0 else [f"{volume.path or 'volume'} has no voxel size; assuming "
                                  f"the model's {model_vs:g} Å"]
    shape = tuple(int(n) for n in volume.data.shape)
    report.say(f"streaming within --memory {memory:g} MiB: tiles <= {plan.tile}, estimated "
               f"peak {plan.estimate_mib:.0f} MiB ({plan.held_mib:.0f} held, "
               f"{plan.activations_mib:.0f} per tile, {plan.cells_mib:.0f} blended band, "
               f"{plan.rows_mib:.0f} input rows)")
    stats = robust_stats(volume.data)
    classes, label_values = list(card["classes"]), card.get("label_values")
    mask = args.threshold is not None
    thr = 0.5 if args.threshold is None else args.threshold
    label_dtype = np.int8 if len(classes) < 128 else np.int16
    with contextlib.ExitStack() as stack:
        maps = [stack.enter_context(MrcBlockWriter(
            path, shape, np.int8 if mask else np.float32, vs, tuple(volume.origin),
            overwrite=args.force)) for path in targets.values()]
        labels = None if labels_out is None else stack.enter_context(MrcBlockWriter(
            labels_out, shape, label_dtype, vs, tuple(volume.origin), overwrite=args.force))

        def sink(z0: int, y0: int, probs: np.ndarray) -> None:
            part = Segmentation(probs, classes, vs, tuple(volume.origin), {}, label_values)
            for k, writer in enumerate(maps, start=1):
                prob = part.class_map(k)
                writer.write(z0, y0, (prob > args.threshold).astype(np.int8) if mask else prob)
            if labels is not None:
                labels.write(z0, y0, part.labels(thr).astype(label_dtype))

        with report.bar("tiles") as update:
            counts = stream_probabilities(
                net, volume.data, stats, plan, args.overlap, sink, tta=args.tta, bf16=bf16,
                device=device, logit_bias=float(card.get("logit_bias", 0.0)),
                output=card.get("output", "auto"), progress=update)
    for w in warnings:
        report.say(f"warning: {w}")
    return {"outputs": {n: str(p) for n, p in targets.items()}, "bf16": bf16,
            "device": device, "labels": args.labels_out, "classes": classes,
            "voxel_size": vs, "model_voxel_size": model_vs, "rescaled": False,
            "streamed": True, "working_shape_zyx": list(shape),
            "overlap_factor": overlap_factor(shape, plan.tile, args.overlap,
                                             tuple(net.size_multiple)),
            "tile": plan.tile, "memory_budget_mib": memory,
            "memory_estimate_mib": round(plan.estimate_mib, 1),
            "memory_held_mib": round(plan.held_mib, 1), **counts}
