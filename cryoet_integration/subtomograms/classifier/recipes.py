"""The recipe of the shipped default classifier (``default-classifier``).

It trains on the default picker's own simulated tomograms (``picking.recipes``: two
domain-randomised training tomograms, a validation tomogram of its own seed, the
picker's held-out particle types left out, a third of the particles random shapes), so
the classifier learns exactly the classes the picker names, and the two models share one
simulation cache. Held-out scoring (``validation/score_classifier.py``) uses seeds from
41000 on, which neither recipe draws.
"""

from __future__ import annotations

import copy
from typing import Any

from ...picking.recipes import DEFAULT_PICKER

DEFAULT_CLASSIFIER: dict[str, Any] = {
    "name": "default-classifier",
    "simulation": copy.deepcopy(DEFAULT_PICKER["simulation"]),
    # Sized for a shared 2-core CPU: a step of 12 boxes costs about 1.2 CPU s at these
    # sizes, 7x less than 32-voxel boxes with twice the channels. At 15 Å (the picker's
    # voxel size) a 24-voxel box spans 36 nm (a ribosome, about 27 nm, with context); the
    # smallest type (globular, 7 nm) is 4-5 voxels across.
    "train": {"voxel_size": 15.0, "box": 24, "margin": 3,
              "network": {"widths": [8, 16, 32], "hidden": 64},
              "batch_size": 12, "lr": 1e-3, "max_steps": 3000, "validate_every": 100,
              "patience": 8, "cpu_minutes": 30.0},
}

RECIPES: dict[str, dict[str, Any]] = {"default-classifier": DEFAULT_CLASSIFIER}


def get_recipe(name: str) -> dict[str, Any]:
    """A deep copy of the named recipe; ``ValueError`` names the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose from {sorted(RECIPES)}")
    return copy.deepcopy(RECIPES[name])
