"""The recipe of the shipped default picker, and the simulated tomograms it trains on.

``default-picker`` simulates domain-randomised tomograms (``SimulationConfig.randomised``)
in which two of the simulator's seven particle types never occur (``HELD_OUT_CLASSES``), so
the shipped model can be scored on types it never saw. Each tomogram is simulated once into
a cache folder (``{name}.mrc``, ``{name}_membranes.mrc``, ``{name}_particles.csv``, ...;
the JSON written last marks it complete), so an interrupted run resumes with the tomograms
already made.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Types the default picker never sees in training: scored as "unseen" in docs/picking.md.
HELD_OUT_CLASSES = ("cube", "stalked")
RANDOM_SHAPE_FRACTION = 0.35

DEFAULT_PICKER: dict[str, Any] = {
    "name": "default-picker",
    "simulation": {
        "size_xyz": [256, 256, 128],
        # held-out evaluation draws from 41000 on (validation/score_picker.py); validation
        # is a tomogram of its own seed, so its conditions differ from training's
        "train_seeds": [31000, 31001],
        "val_seeds": [31100],
        "exclude_classes": list(HELD_OUT_CLASSES),
        # a third of the particles are random shapes (class "random_shape"), each a new
        # shape of 8-40 nm: they teach localisation of types the picker was never shown
        "random_shape_fraction": RANDOM_SHAPE_FRACTION,
    },
    # Class radii (Å) of the ball targets: about 0.6x each simulated shape's largest
    # half-extent, so balls stay inside the particle and neighbours stay apart.
    # (The held-out types are absent from the training lists, so they have no radius here.)
    # Random shapes (8-40 nm) share one radius: 60 Å stays inside all but the smallest
    # and is the suppression radius of picks of types the picker cannot name.
    "radii_angst": {"ribosome": 100.0, "barrel": 55.0, "ring": 55.0, "rod": 50.0,
                    "globular": 30.0, "fiducial": 50.0, "random_shape": 60.0},
    # Sized for a shared 2-core CPU (benchmarks/bench_picker_train.py; docs/picking.md):
    # at 15 Å a 32-voxel patch spans 48 nm (a ribosome with context) for half the voxels
    # of a 40-voxel patch at 10 Å, and a 3-level U-Net of 8 base channels (87 k
    # parameters) costs a fifth of the first picker's 4-level, 12-channel one per voxel:
    # on a saturated machine every step counts. The smallest type (globular, 7 nm) is
    # still 4-5 voxels across.
    "train": {"voxel_size": 15.0, "max_steps": 2500, "validate_every": 200, "patience": 8,
              "lr": 2e-3,
              "network": {"arch": "unet3d", "base_channels": 8, "depth": 3, "residual": True,
                          "norm": "instance", "deep_supervision": True},
              "patch_size": [32, 32, 32], "val_crop": [32, 96, 96]},
}

RECIPES: dict[str, dict[str, Any]] = {"default-picker": DEFAULT_PICKER}


def get_recipe(name: str) -> dict[str, Any]:
    """A deep copy of the named recipe; ``ValueError`` names the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose from {sorted(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def simulation_config(seed: int, exclude_classes: list[str] | tuple[str, ...] = (),
                      only_classes: list[str] | tuple[str, ...] | None = None,
                      randomised: bool = True, random_shape_fraction: float = 0.0):
    """The simulator conditions of tomogram ``seed``: domain-randomised (or SHREC-like
    fixed ones), with the particle types in ``exclude_classes`` left out, or only
    ``only_classes`` present, and ``random_shape_fraction`` of the particles random shapes
    (with ``only_classes=[]`` and a fraction > 0, random shapes only)."""
    from cryoet_integration.simulate import SimulationConfig
    from cryoet_integration.simulate.shapes import PROTEIN_CLASSES

    cfg = SimulationConfig.randomised(seed) if randomised else SimulationConfig()
    weights = dict(cfg.class_weights or {c: 1.0 for c in PROTEIN_CLASSES})
    for c in PROTEIN_CLASSES:
        if c in exclude_classes or (only_classes is not None and c not in only_classes):
            weights[c] = 0.0
        elif weights.get(c, 0.0) <= 0:
            weights[c] = 1.0 / len(PROTEIN_CLASSES)
    return dataclasses.replace(cfg, class_weights=weights,
                               random_shape_fraction=float(random_shape_fraction))


def simulate_cached(cache: str | Path, name: str, seed: int, size_xyz: list[int],
                    **config_options: Any) -> dict[str, Path]:
    """Simulate tomogram ``name`` into ``cache`` unless it is there already.

    Returns the paths of ``tomogram``, ``membranes``, ``instances`` and ``particles`` (CSV).
    """
    from cryoet_integration.simulate import simulate_tomogram, write_simulation

    folder = Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / f"{name}.json"
    if meta.exists():
        cached = json.loads(meta.read_text()).get("size_xyz")
        if list(cached or []) != list(size_xyz):
            raise ValueError(f"{meta}: cached tomogram is {cached} voxels, {list(size_xyz)} "
                             "asked for; use another cache directory")
    else:
        log.info("simulating %s (seed %d)", name, seed)
        sim = simulate_tomogram(seed=seed, size_xyz=tuple(size_xyz),
                                config=simulation_config(seed, **config_options),
                                tomo_name=name)
        write_simulation(sim, folder, name=name, overwrite=True)
    return {"tomogram": folder / f"{name}.mrc", "membranes": folder / f"{name}_membranes.mrc",
            "instances": folder / f"{name}_instances.mrc",
            "particles": folder / f"{name}_particles.csv"}


def prepare_recipe_data(recipe: dict[str, Any], cache: str | Path
                        ) -> dict[str, list[dict[str, Path]]]:
    """Simulate (or reuse) the recipe's training and validation tomograms in ``cache``."""
    sim = recipe["simulation"]
    return {split: [simulate_cached(cache, f"picker_{split}_{seed}", seed, sim["size_xyz"],
                                    exclude_classes=sim["exclude_classes"],
                                    random_shape_fraction=sim.get("random_shape_fraction", 0.0))
                    for seed in sim[f"{split}_seeds"]]
            for split in ("train", "val")}
