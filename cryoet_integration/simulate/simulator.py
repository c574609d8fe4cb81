"""simulate_tomogram: scene -> tilt series -> weighted back-projection, with ground truth."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from formats import Volume, make_table

from ..optics import electron_wavelength
from . import labels as lab
from .config import SimulationConfig
from .imaging import interaction_constant, simulate_tilt_series
from .reconstruct import weighted_back_projection
from .scene import build_scene
from .shapes import CLASSES, FIDUCIAL, RANDOM_SHAPE


@dataclasses.dataclass
class SimulationResult:
    """One simulated tomogram and its ground truth (all maps ``[z, y, x]`` on one grid).

    Attributes:
        tomogram: reconstruction (float32, zero mean, unit standard deviation; dense matter
            is dark, i.e. negative) with ``voxel_size`` in Å.
        labels: int16 class labels: 0 background, 1 membrane, 2.. particle classes.
        instances: int32 particle ids (1-based; ``id`` in ``particles``), 0 elsewhere.
        membranes: uint8 0/1 bilayer mask (5 nm thick around the mid-surface).
        particles: canonical particle table (positions in voxels) plus ``id``, ``attached``.
        metadata: JSON-serialisable facts: seed, config, label ids, timings, SNR, ...
    """

    tomogram: Volume
    labels: np.ndarray
    instances: np.ndarray
    membranes: np.ndarray
    particles: pd.DataFrame
    metadata: dict[str, Any]


def _parse_size(size_xyz) -> tuple[int, int, int]:
    size = tuple(int(s) for s in size_xyz)
    if len(size) != 3 or min(size) < 8:
        raise ValueError(f"size_xyz must be three sizes >= 8 voxels (x, y, z), got {size_xyz}")
    return size


def simulate_tomogram(seed: int = 0, size_xyz=(256, 256, 128),
                      config: SimulationConfig | None = None,
                      tomo_name: str = "") -> SimulationResult:
    """Simulate one tomogram of ``size_xyz`` voxels (x, y, z) at ``config.voxel_size`` Å.

    Deterministic for (``seed``, ``size_xyz``, ``config``); ``config`` defaults to
    ``SimulationConfig()`` (fixed conditions; use ``SimulationConfig.randomised(seed)`` for
    domain-randomised ones). Needs numpy and scipy only.
    """
    cfg = (config or SimulationConfig()).validate()
    nx, ny, nz = _parse_size(size_xyz)
    seq = np.random.SeedSequence([int(seed), 0xC0FFEE])
    scene_rng, imaging_rng = (np.random.default_rng(s) for s in seq.spawn(2))

    t0 = time.perf_counter()
    scene = build_scene((nz, ny, nx), cfg, scene_rng)
    t1 = time.perf_counter()
    series = simulate_tilt_series(scene.potential, scene.absorption, scene.slab, cfg,
                                  imaging_rng, keep_clean=cfg.measure_snr)
    t2 = time.perf_counter()
    recon = weighted_back_projection(series.images, series.angles_deg, nz, cfg.filter_cutoff,
                                     cfg.sirt_iterations)
    snr = None
    if series.clean is not None:
        # SHREC's SNR = var(signal) / var(noise), estimated on a band of y slices: WBP works
        # slice by slice, so a band costs a fraction of a second full reconstruction.
        band = slice(max(0, ny // 2 - 16), min(ny, ny // 2 + 16))
        signal = weighted_back_projection(series.clean[:, band], series.angles_deg, nz,
                                          cfg.filter_cutoff, cfg.sirt_iterations)
        noise_var = float(np.var(recon[:, band] - signal))
        snr = float(np.var(signal) / noise_var) if noise_var > 0 else None
    mean, std = float(recon.mean()), float(recon.std())
    recon = ((recon - mean) / (std if std > 0 else 1.0)).astype(np.float32)
    t3 = time.perf_counter()

    vs = float(cfg.voxel_size)
    table = _particle_table(scene.particles, vs, tomo_name)
    counts = table["class"].value_counts().to_dict() if len(table) else {}
    metadata = {
        "seed": int(seed),
        "size_xyz": [nx, ny, nz],
        "voxel_size_angst": vs,
        "config": cfg.to_dict(),
        "labels": lab.label_names(),
        "label_conventions": {
            "membrane_mask_half_width_angst": lab.MASK_HALF_WIDTH_ANGST,
            "instance_threshold_fraction_of_interior_density": lab.INSTANCE_THRESHOLD,
            "instance_centre_ball_radius_voxels": lab.CENTRE_BALL_VOXELS,
        },
        "densities": {
            "source": "procedural",
            "note": "no installable package ships atomic models; shapes are unions of "
                    "ellipsoids/capsules blurred by 4 Å, excess potential over ice in V",
            "classes": {name: c.description for name, c in CLASSES.items()}
                       | {FIDUCIAL: f"gold bead, {cfg.fiducial_diameter_angst / 10:g} nm",
                          "microtubule": "hollow tube, 17/25 nm inner/outer diameter "
                                         "(labelled, not a particle)",
                          "actin": "7 nm rod filament (labelled, not a particle)"}
                       | ({RANDOM_SHAPE: "a new random union of 1-6 ellipsoids/capsules per "
                                         "particle, "
                                         f"{cfg.random_shape_size_angst[0] / 10:g}-"
                                         f"{cfg.random_shape_size_angst[1] / 10:g} nm, "
                                         "0.7-1.2x protein density"}
                          if cfg.random_shape_fraction > 0 else {}),
        },
        "particle_counts": {str(k): int(v) for k, v in counts.items()},
        "n_particles": len(table),
        "n_attached": int(table["attached"].sum()) if len(table) else 0,
        "membrane_profile": (cfg.bilayer_profile().describe(vs) | {"per_membrane": False}
                             if not cfg.profile_per_membrane
                             else {"per_membrane": True,
                                   "note": "each membrane's profile is in membranes[i]"}),
        "membranes": scene.membrane_info,
        "filaments": scene.filament_info,
        "membrane_fraction": float(scene.membranes.mean()),
        "ice_slab": scene.slab,
        "imaging": {
            "model": "projection approximation, exit wave exp(i*sigma*phi - mu), CTF with "
                     "defocus gradient across tilted images, Poisson counting",
            "wavelength_angst": electron_wavelength(cfg.voltage_kv),
            "interaction_constant_rad_per_v_angst": interaction_constant(cfg.voltage_kv),
            "tilt_angles_deg": series.angles_deg.tolist(),
            "true_tilt_angles_deg": series.true_angles_deg.tolist(),
            "shifts_voxels": series.shifts_voxels.tolist(),
            "rotations_deg": series.rotations_deg.tolist(),
            "dose_before_e_per_angst2": series.dose_before.tolist(),
            "ice_path_angst": series.ice_path_angst.tolist(),
            "phase_flipped": bool(cfg.phase_flip),
        },
        "reconstruction": {"method": (f"SIRT-like filtered back-projection "
                                      f"({cfg.sirt_iterations} iterations)"
                                      if cfg.sirt_iterations else
                                      "weighted back-projection (ramp, cosine roll-off)"),
                           "normalisation": "zero mean, unit standard deviation",
                           "contrast": "dense matter dark (negative)"},
        "snr": snr,
        "timings_s": {"scene": t1 - t0, "tilt_series": t2 - t1, "reconstruction": t3 - t2,
                      "total": t3 - t0},
    }
    tomogram = Volume(recon, voxel_size=vs)
    return SimulationResult(tomogram, scene.labels, scene.instances, scene.membranes, table,
                            metadata)


def _particle_table(particles: list[dict], voxel_size: float, tomo_name: str) -> pd.DataFrame:
    if not particles:
        table = make_table(np.zeros((0, 3)), voxel_size, tomo_name=tomo_name, classes=[])
        table.insert(0, "id", pd.Series([], dtype=np.int64))
        table["attached"] = pd.Series([], dtype=bool)
        return table
    xyz = np.array([p["xyz"] for p in particles], float)
    mats = np.array([p["matrix"] for p in particles], float)
    table = make_table(xyz, voxel_size, mats, tomo_name=tomo_name,
                       classes=[p["class"] for p in particles])
    table.insert(0, "id", np.array([p["id"] for p in particles], np.int64))
    table["attached"] = np.array([p["attached"] for p in particles], bool)
    return table
