"""Simulation conditions: one dataclass, fixed defaults and domain-randomised draws.

One unit inside: every length is in Å (``_angst``; ``voxel_size`` is Å per voxel of the
output tomogram), areal densities per Å², angles in degrees. Other units (defocus in µm,
Cs in mm, sizes in nm) are converted where values enter or leave: the command line, the
documented ranges of :meth:`SimulationConfig.randomised`, the records of ``cryovis
simulate``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .membranes import BilayerProfile

ANGST_PER_NM = 10.0
ANGST_PER_UM = 1e4
ANGST_PER_MM = 1e7
ANGST2_PER_UM2 = 1e8


@dataclasses.dataclass
class SimulationConfig:
    """Conditions of one simulated tomogram (sample, microscope, reconstruction).

    The defaults follow the SHREC 2021 data set (300 kV, Cs 2.7 mm, +-60 deg tilts, about
    100 e/Å² in total, defocus 3.5 µm) at 10 Å voxels.
    """

    voxel_size: float = 10.0
    # Sample ------------------------------------------------------------------------------
    ice_thickness_angst: float | None = None  # None: ice_fraction x box depth
    ice_fraction: float = 0.85
    ice_tilt_deg: float = 0.0  # tilt of the slab normal away from the beam (z) axis
    n_vesicles: int = 2  # spheres and ellipsoids (one in four double-walled)
    vesicle_radius_angst: tuple[float, float] = (150.0, 600.0)
    n_sheets: int = 1  # curved open sheets crossing the field
    n_tubes: int = 0  # capsule-shaped tubules
    tube_radius_angst: tuple[float, float] = (100.0, 250.0)
    n_microtubules: int = 0  # hollow 25 nm tubes (labelled, not particles)
    n_actin: int = 0  # 7 nm filaments (labelled, not particles)
    # Bilayer profile (see ``membranes.BilayerProfile``): head-group Gaussians around a core
    leaflet_spacing_angst: float = 40.0  # head-group peak to peak
    head_density_v: float = 1.6  # lipid head groups above ice
    head_sigma_angst: float = 5.0
    core_density_v: float = -0.4  # hydrocarbon core; negative: below ice
    core_sigma_angst: float = 7.0
    profile_per_membrane: bool = False  # True: each membrane draws its own random profile
    membrane_proteins_per_angst2: float = 0.0  # unlabelled transmembrane blobs
    crowding: float = 0.08  # target fraction of the ice volume filled by particles
    class_weights: dict[str, float] | None = None  # by particle count; None: uniform
    # Fraction of the particles (by count) that are random shapes (shapes.random_shape_class,
    # class "random_shape"), each instance a new shape of random size and density; 0: none.
    random_shape_fraction: float = 0.0
    random_shape_size_angst: tuple[float, float] = (80.0, 400.0)  # overall size range
    attached_fraction: float = 0.4  # membrane-binding particles placed on a membrane
    fiducials_per_angst2: float = 40.0 / ANGST2_PER_UM2  # gold beads per area of the view
    fiducial_diameter_angst: float = 100.0
    background_v: float = 0.1  # std of the unresolved crowded-cytosol texture (V)
    background_scale_angst: float = 30.0  # its correlation length
    # Microscope ---------------------------------------------------------------------------
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 3.0
    voltage_kv: float = 300.0
    cs_angst: float = 2.7 * ANGST_PER_MM  # spherical aberration
    amplitude_contrast: float = 0.07
    defocus_angst: float = 3.5 * ANGST_PER_UM  # underfocus is positive
    astigmatism_angst: float = 0.0
    astigmatism_angle_deg: float = 0.0
    bfactor_angst2: float = 100.0  # overall resolution loss (drift, charging)
    dose_total: float = 100.0  # e/Å² over the whole tilt series, dose-symmetric order
    misalign_shift_angst: float = 5.0  # std of residual per-tilt shifts (x and y)
    misalign_rotation_deg: float = 0.2  # std of residual in-plane rotations
    tilt_error_deg: float = 0.1  # std of the error of each tilt angle
    # Reconstruction ---------------------------------------------------------------------------
    phase_flip: bool = False  # correct the CTF by phase flipping before back-projection
    filter_cutoff: float = 0.5  # end of the cosine roll-off of the ramp, cycles per voxel
    sirt_iterations: int = 0  # > 0: SIRT-like filter of that many iterations instead of WBP
    measure_snr: bool = True  # reconstruct the noise-free series too (SHREC's SNR)

    @classmethod
    def randomised(cls, seed: int) -> SimulationConfig:
        """Draw domain-randomised conditions (deterministic for ``seed``).

        Ranges cover what real data sets vary: voxel size 6-14 Å, defocus 1.5-6 µm,
        total dose 40-180 e/Å², ice 0.5-1.3 x the box depth, 0-6 vesicles, 0-2 sheets and
        tubes, crowding 2-20 %, cytosol texture 0-0.3 V, tilt range ±(45-70)° with up to
        10° asymmetry and 1-4° steps, residual misalignment up to 1.5 nm, 0 or 200-3000
        transmembrane proteins per µm², 0-2 microtubules and 0-8 actin filaments, and one
        in three reconstructions SIRT-like (5-40 iterations). The bilayer profile
        (``membranes.random_profile``): leaflet spacing 3-5 nm, head groups 0.6-1.4x the
        protein density with sigma 4-12 Å, the core from below ice up to about the
        head-group density (one draw in three a single merged dark band); one tomogram in
        three draws a profile per membrane instead.
        """
        from .membranes import random_profile
        from .shapes import PROTEIN_DENSITY_V

        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x51C0]))
        n_ves = int(rng.integers(0, 7))
        n_sheets = int(rng.integers(0, 3))
        n_tubes = int(rng.integers(0, 3))
        if n_ves + n_sheets + n_tubes == 0:
            n_ves = 1
        tilt_max = float(rng.uniform(45, 70))
        asym = float(rng.uniform(-10, 10))
        weights = rng.dirichlet(np.ones(len(_protein_classes())) * 2.0)
        cfg = cls(
            voxel_size=float(np.round(rng.uniform(6.0, 14.0), 2)),
            ice_fraction=float(rng.uniform(0.5, 1.3)),
            ice_tilt_deg=float(rng.uniform(0, 10)),
            n_vesicles=n_ves,
            vesicle_radius_angst=(float(rng.uniform(10, 25)) * ANGST_PER_NM,
                                  float(rng.uniform(35, 90)) * ANGST_PER_NM),
            n_sheets=n_sheets,
            n_tubes=n_tubes,
            tube_radius_angst=(8.0 * ANGST_PER_NM, float(rng.uniform(12, 30)) * ANGST_PER_NM),
            leaflet_spacing_angst=float(rng.uniform(3.0, 5.0)) * ANGST_PER_NM,
            crowding=float(rng.uniform(0.02, 0.2)),
            class_weights={c: float(w) for c, w in zip(_protein_classes(), weights)},
            attached_fraction=float(rng.uniform(0.2, 0.8)),
            fiducials_per_angst2=float(rng.uniform(0, 80)) / ANGST2_PER_UM2,
            fiducial_diameter_angst=float(rng.choice([5.0, 6.0, 10.0, 10.0, 15.0])) * ANGST_PER_NM,
            background_v=float(rng.uniform(0.0, 0.3)),
            background_scale_angst=float(rng.uniform(1.5, 5.0)) * ANGST_PER_NM,
            tilt_min_deg=-tilt_max + asym,
            tilt_max_deg=tilt_max + asym,
            tilt_step_deg=float(rng.choice([1.0, 2.0, 3.0, 3.0, 4.0])),
            amplitude_contrast=float(rng.uniform(0.05, 0.12)),
            defocus_angst=float(rng.uniform(1.5, 6.0)) * ANGST_PER_UM,
            astigmatism_angst=float(rng.uniform(0, 0.3)) * ANGST_PER_UM,
            astigmatism_angle_deg=float(rng.uniform(0, 180)),
            bfactor_angst2=float(rng.uniform(0, 400)),
            dose_total=float(rng.uniform(40, 180)),
            misalign_shift_angst=float(rng.uniform(0, 1.5)) * ANGST_PER_NM,
            misalign_rotation_deg=float(rng.uniform(0, 0.5)),
            tilt_error_deg=float(rng.uniform(0, 0.3)),
            phase_flip=bool(rng.random() < 0.25),
            filter_cutoff=float(rng.uniform(0.3, 0.5)),
            sirt_iterations=int(rng.integers(5, 41)) if rng.random() < 0.35 else 0,
            head_density_v=PROTEIN_DENSITY_V * float(rng.uniform(0.6, 1.4)),
            n_microtubules=int(rng.choice([0, 0, 1, 2])),
            membrane_proteins_per_angst2=(0.0 if rng.random() < 0.3
                                          else float(rng.uniform(200, 3000)) / ANGST2_PER_UM2),
            n_actin=int(rng.choice([0, 0, 2, 4, 8])),
        )
        # drawn last so that the other conditions of a seed stay as they were
        profile = random_profile(rng, cfg.voxel_size, cfg.leaflet_spacing_angst,
                                 cfg.head_density_v)
        return dataclasses.replace(
            cfg, head_sigma_angst=profile.head_sigma_angst,
            core_density_v=profile.core_density_v, core_sigma_angst=profile.core_sigma_angst,
            profile_per_membrane=bool(rng.random() < 1 / 3))

    def bilayer_profile(self) -> BilayerProfile:
        """The tomogram's bilayer profile (each membrane's own if ``profile_per_membrane``)."""
        from .membranes import BilayerProfile

        return BilayerProfile(self.leaflet_spacing_angst, self.head_density_v,
                              self.head_sigma_angst, self.core_density_v, self.core_sigma_angst)

    def tilt_angles(self) -> np.ndarray:
        """Nominal tilt angles (deg), ascending, from ``tilt_min_deg`` to ``tilt_max_deg``."""
        n = int(np.floor((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg + 1e-6))
        return self.tilt_min_deg + self.tilt_step_deg * np.arange(n + 1)

    def validate(self) -> SimulationConfig:
        """Raise ValueError naming the first impossible setting; returns self."""
        checks = [
            (self.voxel_size > 0, "voxel_size must be > 0 Å"),
            (self.ice_fraction > 0, "ice_fraction must be > 0"),
            (self.ice_thickness_angst is None or self.ice_thickness_angst > 0,
             "ice_thickness_angst must be > 0"),
            (0 <= self.crowding < 0.6, "crowding must be in [0, 0.6)"),
            (0 <= self.random_shape_fraction <= 1, "random_shape_fraction must be in [0, 1]"),
            (0 < self.random_shape_size_angst[0] <= self.random_shape_size_angst[1],
             "random_shape_size_angst must be (min, max) with 0 < min <= max"),
            (self.tilt_step_deg > 0, "tilt_step_deg must be > 0"),
            (-90 < self.tilt_min_deg < self.tilt_max_deg < 90,
             "tilt range must satisfy -90 < tilt_min_deg < tilt_max_deg < 90"),
            (self.voltage_kv > 0, "voltage_kv must be > 0"),
            (0 <= self.amplitude_contrast < 1, "amplitude_contrast must be in [0, 1)"),
            (self.dose_total > 0, "dose_total must be > 0 e/Å²"),
            (self.background_v >= 0 and self.background_scale_angst > 0,
             "background_v must be >= 0 V and background_scale_angst > 0"),
            (0 < self.filter_cutoff <= 0.5, "filter_cutoff must be in (0, 0.5] cycles/voxel"),
            (self.sirt_iterations >= 0, "sirt_iterations must be >= 0"),
            (min(self.n_vesicles, self.n_sheets, self.n_tubes) >= 0,
             "membrane counts must be >= 0"),
            (min(self.n_microtubules, self.n_actin) >= 0, "filament counts must be >= 0"),
            (self.membrane_proteins_per_angst2 >= 0, "membrane_proteins_per_angst2 must be >= 0"),
            (self.leaflet_spacing_angst > 0 and self.head_sigma_angst > 0
             and self.core_sigma_angst > 0,
             "leaflet_spacing_angst, head_sigma_angst and core_sigma_angst must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"simulation config: {message}")
        if self.class_weights is not None:
            unknown = set(self.class_weights) - set(_protein_classes())
            if unknown:
                raise ValueError(f"simulation config: unknown particle classes {sorted(unknown)}"
                                 f" (known: {', '.join(_protein_classes())})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all settings."""
        out = dataclasses.asdict(self)
        out["vesicle_radius_angst"] = list(self.vesicle_radius_angst)
        out["tube_radius_angst"] = list(self.tube_radius_angst)
        out["random_shape_size_angst"] = list(self.random_shape_size_angst)
        return out


def _protein_classes() -> list[str]:
    from .shapes import PROTEIN_CLASSES

    return list(PROTEIN_CLASSES)
