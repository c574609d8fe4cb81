"""Simulated cryo-electron tomograms with exact ground truth (after SHREC 2021, section 2.1).

>>> cfg = SimulationConfig.randomised(seed)
>>> sim = simulate_tomogram(seed=1, size_xyz=(256, 256, 128), config=cfg)
>>> paths = write_simulation(sim, out_dir, name="tomo_000")

``sim.tomogram`` is a ``formats.Volume`` (float32 ``[z, y, x]``, voxel size in Å); label,
instance and membrane maps are on the same grid; ``sim.particles`` is the canonical particle
table plus ``id`` (the value in the instance map) and ``attached`` (sits on a membrane).
"""

from __future__ import annotations

from .config import SimulationConfig
from .io import write_simulation
from .simulator import SimulationResult, simulate_tomogram

__all__ = ["SimulationConfig", "SimulationResult", "simulate_tomogram", "write_simulation"]
