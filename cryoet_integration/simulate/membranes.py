"""Membrane geometries as signed distances to the bilayer mid-surface, and the bilayer profile.

Distances are in Å, positive on the outer side (outside a vesicle or tube, along the normal
of a sheet). Points are ``(..., 3)`` arrays of ``x, y, z`` in Å from the corner voxel centre.
Ellipsoid and sheet distances are the first-order estimate ``f / |grad f|`` of a level set,
exact for spheres and flat sheets and within a few per cent for the mild shapes drawn here
near the bilayer, where the labels and densities need them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MASK_HALF_WIDTH_ANGST = 25.0  # label contract: the bilayer is every voxel within 2.5 nm
TAIL_DENSITY_V = -0.4  # hydrocarbon core below ice
HEAD_SIGMA_ANGST = 5.0
TAIL_SIGMA_ANGST = 7.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclasses.dataclass
class Ellipsoid:
    """A vesicle: ellipsoid with centre (Å), semi-axes (Å) and rotation ``rot`` (columns = axes)."""

    centre: np.ndarray
    radii: np.ndarray
    rot: np.ndarray
    kind: str = "vesicle"

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Signed distance (Å) of points ``p`` (..., 3) Å to the mid-surface."""
        q = (p - self.centre) @ self.rot / self.radii
        r = np.sqrt(np.einsum("...i,...i->...", q, q))
        grad = q / self.radii / np.maximum(r, 1e-9)[..., None]
        return (r - 1.0) / np.maximum(np.linalg.norm(grad, axis=-1), 1e-12)

    def bounds(self, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (lo, hi) x,y,z Å holding the surface plus ``margin`` Å."""
        reach = np.sqrt(((self.rot * self.radii) ** 2).sum(axis=1)) + margin
        return self.centre - reach, self.centre + reach

    def sample_surface(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random mid-surface point (Å) and its outward unit normal."""
        u = _unit(rng.normal(size=3))
        point = self.centre + self.rot @ (u * self.radii)
        normal = _unit(self.rot @ (u / self.radii))
        return point, normal

    def describe(self) -> dict:
        """JSON-serialisable parameters."""
        return {"kind": self.kind, "centre_angst": self.centre.tolist(),
                "radii_angst": self.radii.tolist(), "axes": self.rot.T.tolist()}

    def scaled(self, factor: float, kind: str) -> Ellipsoid:
        """A concentric copy ``factor`` times the size (the inner wall of a double membrane)."""
        return Ellipsoid(self.centre, self.radii * factor, self.rot, kind)


@dataclasses.dataclass
class Blob:
    """A deformed vesicle: radius ``R (1 + g(u))`` along each direction ``u`` from the centre.

    ``g(u) = sum a_i cos(f_i w_i . u + phase_i)``; ``modes`` rows are (a_i, f_i, w_i (3),
    phase_i). Smooth, star-shaped, up to ~25 % out of round.
    """

    centre: np.ndarray
    radius: float
    modes: np.ndarray
    kind: str = "blob"

    def _g(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.zeros(u.shape[:-1], dtype=u.dtype)
        grad = np.zeros_like(u)
        for a, f, wx, wy, wz, ph in self.modes:
            w = np.array([wx, wy, wz], dtype=u.dtype)
            arg = f * (u @ w) + ph
            g += a * np.cos(arg)
            grad -= (a * f * np.sin(arg))[..., None] * w
        return g, grad

    def _field(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = p - self.centre
        rho = np.maximum(np.sqrt(np.einsum("...i,...i->...", v, v)), 1e-6)
        u = v / rho[..., None]
        g, grad_u = self._g(u)
        tangential = grad_u - np.einsum("...i,...i->...", grad_u, u)[..., None] * u
        grad = u - self.radius * tangential / rho[..., None]
        return rho - self.radius * (1.0 + g), grad

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Signed distance (Å) of points ``p`` (..., 3) Å to the mid-surface."""
        f, grad = self._field(p)
        return f / np.maximum(np.linalg.norm(grad, axis=-1), 1e-12)

    def bounds(self, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (lo, hi) x,y,z Å holding the surface plus ``margin`` Å."""
        reach = self.radius * (1.0 + float(np.abs(self.modes[:, 0]).sum())) + margin
        return self.centre - reach, self.centre + reach

    def sample_surface(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random mid-surface point (Å) and its outward unit normal."""
        u = _unit(rng.normal(size=3))
        g, _ = self._g(u[None])
        point = self.centre + self.radius * (1.0 + float(g[0])) * u
        _, grad = self._field(point[None])
        return point, _unit(grad[0])

    def describe(self) -> dict:
        """JSON-serialisable parameters."""
        return {"kind": self.kind, "centre_angst": self.centre.tolist(),
                "radius_angst": float(self.radius), "modes": self.modes.tolist()}

    def scaled(self, factor: float, kind: str) -> Blob:
        """A concentric copy ``factor`` times the size (the inner wall of a double membrane)."""
        return Blob(self.centre, self.radius * factor, self.modes, kind)


@dataclasses.dataclass
class Capsule:
    """A tubule: capsule around the segment a -> b (Å) with radius (Å)."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    kind: str = "tube"

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Signed distance (Å) of points ``p`` (..., 3) Å to the mid-surface."""
        ab = self.b - self.a
        t = np.clip(((p - self.a) @ ab) / float(ab @ ab), 0.0, 1.0)
        d = p - (self.a + t[..., None] * ab)
        return np.sqrt(np.einsum("...i,...i->...", d, d)) - self.radius

    def bounds(self, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (lo, hi) x,y,z Å holding the surface plus ``margin`` Å."""
        r = self.radius + margin
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def sample_surface(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random mid-surface point (Å) and its outward unit normal (cylinder part)."""
        axis = _unit(self.b - self.a)
        normal = _unit(np.cross(axis, rng.normal(size=3)))
        point = self.a + rng.uniform() * (self.b - self.a) + self.radius * normal
        return point, normal

    def describe(self) -> dict:
        """JSON-serialisable parameters."""
        return {"kind": self.kind, "a_angst": self.a.tolist(), "b_angst": self.b.tolist(),
                "radius_angst": float(self.radius)}


@dataclasses.dataclass
class Sheet:
    """An open curved sheet: height field ``h(u, v)`` (sum of sinusoids) over a plane.

    ``frame`` columns are the in-plane axes ``e1, e2`` and the normal; ``waves`` rows are
    (amplitude Å, ku, kv rad/Å, phase rad); surface points are drawn within ``extent`` Å of
    the origin along each in-plane axis.
    """

    origin: np.ndarray
    frame: np.ndarray
    waves: np.ndarray
    kind: str = "sheet"
    extent: float = 2000.0

    def _height(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        h = np.zeros_like(u)
        hu = np.zeros_like(u)
        hv = np.zeros_like(u)
        for amp, ku, kv, ph in self.waves:
            arg = ku * u + kv * v + ph
            h += amp * np.sin(arg)
            c = amp * np.cos(arg)
            hu += c * ku
            hv += c * kv
        return h, hu, hv

    def distance(self, p: np.ndarray, exact_within: float = 200.0) -> np.ndarray:
        """Signed distance (Å) of points ``p`` (..., 3) Å to the mid-surface.

        Exact (first order) within ``exact_within`` Å of the undulation envelope; further
        out the height above the base plane stands in (it has the right sign and is larger
        than ``exact_within``), which saves evaluating the waves over the whole field.
        """
        local = (p - self.origin) @ self.frame
        w = local[..., 2]
        out = w.copy()
        near = np.abs(w) <= float(np.abs(self.waves[:, 0]).sum()) + exact_within
        h, hu, hv = self._height(local[..., 0][near], local[..., 1][near])
        out[near] = (w[near] - h) / np.sqrt(1.0 + hu ** 2 + hv ** 2)
        return out

    def bounds(self, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Unbounded: the sheet crosses the whole field."""
        return np.full(3, -np.inf), np.full(3, np.inf)

    def sample_surface(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random mid-surface point (Å, within ``extent`` Å of the origin) and its normal."""
        u, v = rng.uniform(-self.extent, self.extent, size=2)
        h, hu, hv = self._height(np.array(u), np.array(v))
        point = self.origin + self.frame @ np.array([u, v, float(h)])
        normal = _unit(self.frame @ np.array([-float(hu), -float(hv), 1.0]))
        return point, normal

    def describe(self) -> dict:
        """JSON-serialisable parameters."""
        return {"kind": self.kind, "origin_angst": self.origin.tolist(),
                "normal": self.frame[:, 2].tolist(), "waves": self.waves.tolist()}


@dataclasses.dataclass(frozen=True)
class BilayerProfile:
    """Density across a lipid bilayer: two head-group Gaussians around a hydrocarbon core.

    Densities are excess potential over ice (V) at the peak of each Gaussian before the voxel
    footprint widens it; lengths are Å along the membrane normal. The defaults are the fixed
    profile of ``SimulationConfig()``: sharp head groups around a core below ice density.
    """

    leaflet_spacing_angst: float = 40.0  # head-group peak to peak
    head_density_v: float = 1.6
    head_sigma_angst: float = HEAD_SIGMA_ANGST
    core_density_v: float = TAIL_DENSITY_V
    core_sigma_angst: float = TAIL_SIGMA_ANGST

    def density(self, d: np.ndarray, voxel_size: float) -> np.ndarray:
        """Excess potential (V, float32) at signed distance ``d`` (Å) from the mid-surface.

        Each Gaussian is widened by the footprint of a ``voxel_size`` Å voxel (peak lowered
        to keep its area), so the map is not aliased at coarse voxel sizes.
        """
        return self._values(d, voxel_size).astype(np.float32)

    def _values(self, d: np.ndarray, voxel_size: float) -> np.ndarray:
        foot = 0.42 * voxel_size  # sd of a box of one voxel width
        sh = np.hypot(self.head_sigma_angst, foot)
        st = np.hypot(self.core_sigma_angst, foot)
        half = self.leaflet_spacing_angst / 2
        heads = (np.exp(-0.5 * ((d - half) / sh) ** 2) + np.exp(-0.5 * ((d + half) / sh) ** 2))
        out = self.head_density_v * self.head_sigma_angst / sh * heads
        return out + (self.core_density_v * self.core_sigma_angst / st
                      * np.exp(-0.5 * (d / st) ** 2))

    def n_peaks(self, voxel_size: float) -> int:
        """Local density maxima across the bilayer at ``voxel_size`` Å (1: one dark band)."""
        reach = self.leaflet_spacing_angst + 4 * (self.head_sigma_angst + self.core_sigma_angst
                                                  + voxel_size)
        # float64: float32 rounding in the tails would count as ripples
        p = self._values(np.arange(-reach, reach, 0.25), voxel_size)
        step = np.diff(p)
        return int(np.sum((step[:-1] > 0) & (step[1:] <= 0)))

    def describe(self, voxel_size: float) -> dict:
        """JSON-serialisable parameters and whether the bilayer shows as one band."""
        return {**{k: float(v) for k, v in dataclasses.asdict(self).items()},
                "single_band": self.n_peaks(voxel_size) == 1}


# Domain-randomisation ranges of the bilayer profile (``random_profile``).
SPACING_RANGE_ANGST = (30.0, 50.0)
HEAD_SIGMA_RANGE_ANGST = (4.0, 12.0)
HEAD_TO_PROTEIN_RANGE = (0.6, 1.4)  # head-group peak relative to protein density
MERGED_FRACTION = 1 / 3  # draws whose core fills the gap between the head groups
MERGED_HEAD_SIGMA_RANGE_ANGST = (7.0, 12.0)
TWO_LEAFLET_CORE_RANGE = (-0.3, 0.6)  # core peak relative to the head-group peak


def random_profile(rng: np.random.Generator, voxel_size: float,
                   spacing_angst: float | None = None,
                   head_density_v: float | None = None) -> BilayerProfile:
    """A domain-randomised bilayer profile for a tomogram at ``voxel_size`` Å.

    Leaflet spacing and head-group density are drawn unless given (``SPACING_RANGE_ANGST``;
    ``HEAD_TO_PROTEIN_RANGE`` x the protein density). In ``MERGED_FRACTION`` of the draws
    the core (sigma half the half-spacing) is made just dense enough (1-1.2x the least
    density that does it) to fill the gap between thick head groups, so the bilayer is one
    dark band; otherwise the head groups have any width in ``HEAD_SIGMA_RANGE_ANGST`` and
    the core lies between 0.3x below ice and 0.6x the head-group density, with sigma 5 Å
    to half the half-spacing (wide head groups may still merge at coarse voxels).
    """
    from .shapes import PROTEIN_DENSITY_V

    if spacing_angst is None:
        spacing_angst = float(rng.uniform(*SPACING_RANGE_ANGST))
    if head_density_v is None:
        head_density_v = PROTEIN_DENSITY_V * float(rng.uniform(*HEAD_TO_PROTEIN_RANGE))
    quarter = spacing_angst / 4
    if rng.random() < MERGED_FRACTION:
        sigma = float(rng.uniform(*MERGED_HEAD_SIGMA_RANGE_ANGST))
        base = BilayerProfile(spacing_angst, head_density_v, sigma, 0.0, quarter)
        core = _merging_core_density(base, voxel_size) * float(rng.uniform(1.0, 1.2))
        return dataclasses.replace(base, core_density_v=core)
    return BilayerProfile(
        spacing_angst, head_density_v, float(rng.uniform(*HEAD_SIGMA_RANGE_ANGST)),
        head_density_v * float(rng.uniform(*TWO_LEAFLET_CORE_RANGE)),
        float(rng.uniform(5.0, max(5.0, quarter))))


def _merging_core_density(profile: BilayerProfile, voxel_size: float) -> float:
    """Least core density (V, within 1 %) that leaves ``profile`` a single band."""
    lo, hi = 0.0, 8.0 * profile.head_density_v
    for _ in range(20):
        mid = (lo + hi) / 2
        if dataclasses.replace(profile, core_density_v=mid).n_peaks(voxel_size) == 1:
            hi = mid
        else:
            lo = mid
        if hi - lo < 0.01 * profile.head_density_v:
            break
    return hi


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=rng).as_matrix()


def random_vesicle(rng: np.random.Generator, centre: np.ndarray, radius: float
                   ) -> Ellipsoid | Blob:
    """A vesicle of mean radius ``radius`` Å centred at ``centre`` (Å).

    One in three is a sphere, one in three an ellipsoid (axes up to 1.5:1) and one in three
    a smoothly deformed blob.
    """
    c = np.asarray(centre, float)
    pick = rng.random()
    if pick < 1 / 3:
        return Ellipsoid(c, np.full(3, radius), random_rotation(rng), "vesicle")
    if pick < 2 / 3:
        radii = radius * rng.uniform(0.75, 1.15, size=3)
        return Ellipsoid(c, radii, random_rotation(rng), "ellipsoid")
    n = int(rng.integers(2, 5))
    modes = np.empty((n, 6))
    for i in range(n):
        modes[i] = (rng.uniform(0.02, 0.15) / np.sqrt(n), rng.uniform(1.0, 3.0),
                    *_unit(rng.normal(size=3)), rng.uniform(0, 2 * np.pi))
    return Blob(c, float(radius), modes)


def random_sheet(rng: np.random.Generator, origin: np.ndarray, scale_angst: float) -> Sheet:
    """A curved sheet through ``origin`` (Å) with a random normal and gentle undulations.

    Undulation wavelengths are 0.5-2x ``scale_angst`` with slopes up to ~0.5; surface
    points are drawn within 2x ``scale_angst`` of the origin (the field is about that size).
    """
    frame = random_rotation(rng)
    n = int(rng.integers(1, 4))
    waves = np.empty((n, 4))
    for i in range(n):
        wavelength = scale_angst * rng.uniform(0.5, 2.0)
        k = 2 * np.pi / wavelength
        ang = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.0, 0.5) / k / np.sqrt(n)
        waves[i] = (amp, k * np.cos(ang), k * np.sin(ang), rng.uniform(0, 2 * np.pi))
    return Sheet(np.asarray(origin, float), frame, waves, extent=2.0 * scale_angst)


def random_capsule(rng: np.random.Generator, centre: np.ndarray, radius: float,
                   length: float) -> Capsule:
    """A straight tubule of ``radius`` Å and axis ``length`` Å centred at ``centre`` (Å)."""
    axis = _unit(rng.normal(size=3))
    c = np.asarray(centre, float)
    return Capsule(c - axis * length / 2, c + axis * length / 2, float(radius))
