"""Named training recipes; ``default-membrane`` reproduces the shipped membrane model.

A recipe is a JSON-able dict: how its training tomograms are simulated (H4's simulator with
domain-randomised conditions), the model voxel size, network, loss, patch sampling,
augmentation and optimiser settings. :func:`prepare_recipe_data` simulates and caches the
training and validation tomograms (each written once, so an interrupted run resumes with the
tomograms already made).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Seeds of the recipe's training/validation tomograms; held-out evaluation uses other seeds
# (benchmarks/score_membrane_model.py draws from 20000 on).
DEFAULT_MEMBRANE: dict[str, Any] = {
    "name": "default-membrane",
    "classes": ["membrane"],
    "simulation": {
        "size_xyz": [256, 256, 128],
        "train_seeds": list(range(10000, 10024)),
        "val_seeds": [10500, 10501, 10502, 10503],
        "randomised": True,
        "label": "membranes",
    },
    # Network, loss, patches, optimiser, voxel size (10 Å) and precision are TRAIN_DEFAULTS
    # (segmentation/train.py); only what differs from them is listed here.
    # MemBrain v2's loss: the Surface-Dice term rewards finding faint stretches of membrane
    # (skeleton recall), which Dice alone weighs by volume only.
    "loss": {"dice": 1.0, "bce": 1.0, "surface_dice": 1.0},
    # About 1 s per step on this 2-core CPU when nothing else runs (docs/models.md). Resume
    # with a larger max_steps to train longer.
    "max_steps": 1200,
    "validate_every": 50,
    "patience": 20,
    "val_crop": [64, 128, 128],
    # MemBrain v2 augmentation, with the missing-wedge and Fourier-amplitude transforms made
    # more frequent because the recipe's whole point is robustness to imaging conditions.
    "augment": {
        "missing_wedge": {"p": 0.2},
        "fourier_amplitude": {"p": 0.3},
        "zoom": {"p": 0.3, "range": (0.8, 1.25)},
        # A blur of ~2 voxels merges the two leaflets of a 10 Å bilayer into one dark band,
        # the way thick or strongly defocused membranes look; without it the model learns
        # "two parallel lines" only (benchmarks/cross_simulator.py, docs/cross_simulator.md).
        "blur": {"p": 0.35, "sigma": (0.5, 2.5)},
        "low_resolution": {"p": 0.3, "scale": (0.4, 1.0)},
        # Users hand us tomograms in either contrast polarity (segmentation/augment.py).
        "polarity": {"p": 0.2},
    },
}

RECIPES: dict[str, dict[str, Any]] = {"default-membrane": DEFAULT_MEMBRANE}


def get_recipe(name: str) -> dict[str, Any]:
    """A deep copy of the named recipe; ``ValueError`` names the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose from {sorted(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def _simulate_cached(cache: Path, name: str, seed: int, sim_cfg: dict[str, Any]
                     ) -> tuple[Path, Path]:
    """Simulate tomogram ``name`` into ``cache`` unless its files exist; returns the
    (tomogram, membrane mask) paths."""
    from cryoet_integration.simulate import SimulationConfig, simulate_tomogram, write_simulation

    tomo, mask = cache / f"{name}.mrc", cache / f"{name}_{sim_cfg['label']}.mrc"
    meta = cache / f"{name}.json"
    # write_simulation writes the JSON last, so its presence marks a complete tomogram.
    if meta.exists():
        cached = json.loads(meta.read_text()).get("size_xyz")
        if list(cached or []) != list(sim_cfg["size_xyz"]):
            raise ValueError(f"{meta}: cached tomogram is {cached} voxels, the recipe asks for "
                             f"{list(sim_cfg['size_xyz'])}; use another cache directory")
    else:
        config = SimulationConfig.randomised(seed) if sim_cfg["randomised"] else None
        log.info("simulating %s (seed %d)", name, seed)
        sim = simulate_tomogram(seed=seed, size_xyz=tuple(sim_cfg["size_xyz"]), config=config,
                                tomo_name=name)
        write_simulation(sim, cache, name=name, overwrite=True)
    return tomo, mask


def prepare_recipe_data(recipe: dict[str, Any], cache_dir: str | Path
                        ) -> dict[str, list[tuple[Path, Path]]]:
    """Simulate (or reuse) the recipe's tomograms in ``cache_dir``.

    Returns ``{"train": [(tomogram, mask), ...], "val": [...]}`` MRC paths.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    sim_cfg = recipe["simulation"]
    return {
        split: [_simulate_cached(cache, f"{split}_{seed}", seed, sim_cfg)
                for seed in sim_cfg[f"{split}_seeds"]]
        for split in ("train", "val")
    }
