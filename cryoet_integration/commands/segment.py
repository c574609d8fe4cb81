"""``cryovis segment``: tiled U-Net segmentation of a tomogram (default: membranes).

A one-class model writes one probability map to ``--out``; a K-class model writes
``<stem>_<class>.mrc`` per class next to ``--out``. ``--labels-out`` adds the argmax labels
(1..K as in training) and ``--threshold`` turns probability maps into 0/1 masks. Every
output has the input's voxel size and origin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import CryovisError, require_engine


def register(subparsers) -> None:
    from ..segmentation.inference import DEFAULT_OVERLAP, DEFAULT_TILE

    parser = subparsers.add_parser(
        "segment", help="segment a tomogram with a 3D U-Net (default: membranes)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("tomogram", help="tomogram (MRC, EM or TIFF)")
    parser.add_argument("--out", required=True,
                        help="output MRC (one-class) or stem for <stem>_<class>.mrc (K-class)")
    parser.add_argument("--model", default=None,
                        help="model MODEL(.pt) with MODEL.json (default: the shipped membrane "
                        "model)")
    parser.add_argument("--labels-out", default=None, metavar="MRC",
                        help="also write argmax labels (0 background, 1..K)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="write 0/1 masks (probability > threshold) instead of maps")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help="largest tile edge, voxels at the model's voxel size")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help="minimum tile overlap, voxels")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the 8 axis flips (8x slower)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="bfloat16 autocast or float32; auto = bf16 where the CPU/GPU "
                        "has native bf16 (probabilities differ by < 0.01)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--memmap", action="store_true",
                        help="keep the probability arrays in memory-mapped files beside --out")
    parser.add_argument("--voxel-size", type=float, default=None,
                        help="override the tomogram's voxel size (Å)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


def output_paths(out: str | Path, classes: list[str]) -> dict[str, Path]:
    """Where each class map goes: ``out`` for one class, ``<stem>_<class>.mrc`` for K."""
    out = Path(out)
    if len(classes) == 1:
        return {classes[0]: out}
    suffix = out.suffix or ".mrc"
    return {c: out.with_name(f"{out.stem}_{c}{suffix}") for c in classes}


def run(args) -> int:
    require_engine("torch", "scipy")
    import numpy as np
    import torch

    from formats import Volume, check_writable, read_volume, write_volume

    from ..segmentation.checkpoint import load_model
    from ..segmentation.inference import default_device, segment_volume, use_bf16

    if args.tile < 16 or args.overlap < 0 or args.overlap >= args.tile:
        raise CryovisError(f"--tile must be >= 16 and --overlap in [0, tile), got "
                           f"{args.tile}/{args.overlap}")
    torch.set_num_threads(max(1, args.threads))
    device = args.device or default_device()
    net, card = load_model(args.model, device=device)
    targets = output_paths(args.out, card["classes"])
    for path in list(targets.values()) + ([Path(args.labels_out)] if args.labels_out else []):
        check_writable(path, args.force)
    volume = read_volume(args.tomogram, voxel_size=args.voxel_size)
    memmap_dir = Path(args.out).resolve().parent if args.memmap else None
    bf16 = use_bf16(args.precision, device)
    seg = segment_volume(volume, net, card, tile=args.tile, overlap=args.overlap,
                         tta=args.tta, bf16=bf16, device=device, memmap_dir=memmap_dir)
    for w in seg.info["warnings"]:
        print(f"cryovis segment: warning: {w}", file=sys.stderr)

    def save(path: Path, data) -> None:
        write_volume(path, Volume(data, voxel_size=seg.voxel_size, origin=seg.origin),
                     overwrite=args.force)

    for k, path in enumerate(targets.values(), start=1):
        prob = seg.class_map(k)
        save(path, (prob > args.threshold).astype(np.int8) if args.threshold is not None
             else np.asarray(prob, dtype=np.float32))
    if args.labels_out:
        thr = 0.5 if args.threshold is None else args.threshold
        save(Path(args.labels_out), seg.labels(thr).astype(np.int8 if len(card["classes"]) < 128
                                                            else np.int16))
    print(json.dumps({"outputs": {n: str(p) for n, p in targets.items()},
                      "bf16": bf16,
                      "labels": args.labels_out, "classes": card["classes"],
                      "voxel_size": seg.voxel_size, **{k: v for k, v in seg.info.items()
                                                       if k != "warnings"}}))
    return 0
