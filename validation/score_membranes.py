"""Score ``cryovis membranes`` (instances + surface fitting) on simulated tomograms.

    .venv/bin/python -m validation.score_membranes --json OUT.json [--figures DIR]
        [--seeds 20000-20007] [--broken-seeds 31-34] [--cache DIR]

Two studies, each against the simulator's true membrane mask:

* **Broken masks** (seeds ``--broken-seeds``, fixed conditions, 192x192x96): the true mask
  with the missing-wedge caps cut away (membrane whose normal is within 35 degrees of z) and
  spurious blobs added; Dice before/after fitting, the per-slice Dice curve (as the paper's
  Fig. 21), and the count of closed vesicles against the true count.
* **Held-out model output** (seeds ``--seeds``, the held-out seeds of the shipped membrane
  model's card, randomised conditions, 256x256x128): the shipped model's probabilities
  (``cryovis segment``) thresholded at 0.5, then ``cryovis membranes`` on them; Dice and
  Surface-Dice of segment alone and of segment + membranes, overall and on the membrane no
  tilt of the series shows edge-on (``wedge_hidden_mask`` with the series' tilt range).

Figures (per-slice curves) go to ``--figures``; all numbers to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from formats import Volume, read_volume, write_volume

HELD_OUT_SIZE_XYZ = (256, 256, 128)


def seed_range(text: str) -> list[int]:
    """``A-B`` (inclusive) or ``A,B,C`` as a list of seeds."""
    if "-" in text:
        a, b = (int(p) for p in text.split("-"))
        return list(range(a, b + 1))
    return [int(p) for p in text.split(",")]


def held_out_probabilities(cache: Path, seed: int) -> tuple[Path, Path, dict]:
    """Simulate (once) held-out tomogram ``seed`` and segment it (once) with the shipped
    model as ``cryovis segment`` does; returns (probability map, true mask, metadata)."""
    from validation.score_membrane_model import held_out

    tomo_path, mask_path, meta = held_out(cache, seed)
    prob_path = cache / f"heldout_{seed}_prob.mrc"
    if not prob_path.exists():
        from cryoet_integration.segmentation.checkpoint import load_model
        from cryoet_integration.segmentation.inference import segment_volume, use_bf16

        net, card = load_model(None)
        vol = read_volume(tomo_path)
        seg = segment_volume(vol, net, card, bf16=use_bf16("auto"))
        write_volume(prob_path, Volume(np.asarray(seg.class_map(1), dtype=np.float32),
                                       voxel_size=seg.voxel_size), overwrite=True)
    return prob_path, mask_path, meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="write the figures (numbers) here")
    ap.add_argument("--figures", default=None, help="folder for the PNG curves")
    ap.add_argument("--seeds", default="20000-20007", help="held-out seeds of the model card")
    ap.add_argument("--broken-seeds", default="31-34")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/cryovis/heldout"))
    ap.add_argument("--prepare-only", action="store_true",
                    help="only simulate and segment the held-out tomograms into --cache")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        import torch

        torch.set_num_threads(1)
        for seed in seed_range(args.seeds):
            t0 = time.perf_counter()
            held_out_probabilities(cache, seed)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    raise SystemExit("not yet")


if __name__ == "__main__":
    sys.exit(main())
