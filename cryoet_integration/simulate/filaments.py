"""Cytoskeletal filaments: microtubules and actin, as gently curved tubes and rods.

They are not particles (no instance id, no row in the particle table) but have their own
class labels. They matter as look-alikes: a microtubule cut along its length shows two
parallel dense walls 25 nm apart, which a membrane segmenter must learn not to label.

A filament's axis is an arc of a circle (radius of curvature ``curvature_radius`` Å, large
for near-straight filaments); points are ``(..., 3)`` arrays of x, y, z in Å.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import erf

MICROTUBULE_RADII_ANGST = (85.0, 125.0)  # inner and outer wall radius
ACTIN_RADIUS_ANGST = 35.0
MICROTUBULE_DENSITY_V = 1.6  # protein wall with gaps between protofilaments
ACTIN_DENSITY_V = 1.9


@dataclasses.dataclass
class Filament:
    """A filament along an arc: circle centre (Å), unit normal of its plane, radius (Å).

    ``through`` is a point (Å) of the axis inside the field of view.
    """

    kind: str  # "microtubule" or "actin"
    centre: np.ndarray
    normal: np.ndarray
    curvature_radius: float
    through: np.ndarray

    def axis_points(self, half_length: float, step: float) -> np.ndarray:
        """(n, 3) points (Å) every ``step`` Å along the axis, ``half_length`` Å either side
        of ``through``."""
        u = (self.through - self.centre) / self.curvature_radius
        v = np.cross(self.normal, u)
        t = np.arange(-half_length, half_length + step, step) / self.curvature_radius
        return self.centre + self.curvature_radius * (np.cos(t)[:, None] * u
                                                      + np.sin(t)[:, None] * v)

    def axis_distance(self, p: np.ndarray) -> np.ndarray:
        """Distance (Å) of points ``p`` (..., 3) Å to the filament axis (the circle)."""
        q = p - self.centre
        h = q @ self.normal
        in_plane = q - h[..., None] * self.normal
        rho = np.sqrt(np.einsum("...i,...i->...", in_plane, in_plane))
        return np.sqrt((rho - self.curvature_radius) ** 2 + h ** 2)

    def density(self, r: np.ndarray, voxel_size: float) -> np.ndarray:
        """Excess potential (V) at axis distance ``r`` (Å), edges softened by the voxel."""
        w = np.sqrt(2.0) * max(4.0, 0.42 * voxel_size)
        if self.kind == "microtubule":
            r_in, r_out = MICROTUBULE_RADII_ANGST
            shape = 0.5 * (erf((r - r_in) / w) - erf((r - r_out) / w))
            return (MICROTUBULE_DENSITY_V * shape).astype(np.float32)
        return (ACTIN_DENSITY_V * 0.5 * (1.0 - erf((r - ACTIN_RADIUS_ANGST) / w))
                ).astype(np.float32)

    @property
    def outer_radius(self) -> float:
        """Outer radius (Å) of the filament."""
        return MICROTUBULE_RADII_ANGST[1] if self.kind == "microtubule" else ACTIN_RADIUS_ANGST

    def describe(self) -> dict:
        """JSON-serialisable parameters."""
        return {"kind": self.kind, "arc_centre_angst": self.centre.tolist(),
                "arc_normal": self.normal.tolist(), "through_angst": self.through.tolist(),
                "curvature_radius_angst": float(self.curvature_radius)}


def random_filament(rng: np.random.Generator, kind: str, through: np.ndarray,
                    slab_normal: np.ndarray) -> Filament:
    """A filament through ``through`` (Å), running roughly within the ice plane.

    The direction deviates from the slab plane by at most 20°; the radius of curvature is
    log-uniform between 0.3 and 5 µm.
    """
    n = np.asarray(slab_normal, float)
    e1 = np.cross(n, [0.0, 1.0, 0.0] if abs(n[1]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    a = rng.uniform(0, 2 * np.pi)
    elev = np.deg2rad(rng.uniform(-20, 20))
    d = np.cos(elev) * (np.cos(a) * e1 + np.sin(a) * e2) + np.sin(elev) * n
    m = np.cross(d, rng.normal(size=3))
    m /= np.linalg.norm(m)
    radius = float(np.exp(rng.uniform(np.log(3000.0), np.log(50000.0))))
    centre = np.asarray(through, float) + radius * m
    normal = np.cross(d, m)
    return Filament(kind, centre, normal / np.linalg.norm(normal), radius,
                    np.asarray(through, float))
