"""Procedural particle densities: unions of ellipsoids and capsules, blurred to smooth maps.

No installable package here ships PDB/mmCIF models of macromolecules (checked: gemmi,
biotite), so each class is a hand-built shape of the size and symmetry of a real complex.
Shapes live in Å in the particle frame; ``z`` is the long or membrane-attachment axis
(attached particles touch the membrane with their lowest ``-z`` point). The frame origin is
the density centroid, so a particle's listed position is its centre of mass.

Densities are excess Coulomb potential over vitreous ice in volts (protein +2.3 V, gold
+24 V), which the imaging step turns into phase shifts.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

PROTEIN_DENSITY_V = 2.3  # protein (~6.8 V mean inner potential) minus vitreous ice (4.53 V)
GOLD_DENSITY_V = 24.0  # gold (~28.5 V mean inner potential) minus ice
SURFACE_BLUR_ANGST = 4.0  # softness of molecular surfaces
INSTANCE_THRESHOLD = 0.2  # instance region: density above this fraction of the interior


@dataclasses.dataclass(frozen=True)
class Primitive:
    """A solid piece of a shape in Å: an ellipsoid (``radii``) or a capsule (``end``)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float] = (0.0, 0.0, 0.0)
    end: tuple[float, float, float] | None = None  # capsule: segment centre -> end
    radius: float = 0.0  # capsule radius
    yaw_deg: float = 0.0  # ellipsoid rotation about z
    carve: bool = False  # remove instead of add

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (lo, hi) x,y,z Å holding the primitive."""
        c = np.asarray(self.centre, dtype=float)
        if self.end is not None:
            e = np.asarray(self.end, dtype=float)
            return np.minimum(c, e) - self.radius, np.maximum(c, e) + self.radius
        r = np.asarray(self.radii, dtype=float)
        reach = np.array([max(r[0], r[1]), max(r[0], r[1]), r[2]])
        return c - reach, c + reach

    def inside(self, p: np.ndarray) -> np.ndarray:
        """Boolean mask of points ``p`` (..., 3) x,y,z Å inside this primitive."""
        c = np.asarray(self.centre, dtype=float)
        if self.end is not None:
            a, b = c, np.asarray(self.end, dtype=float)
            ab = b - a
            t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
            d = p - (a + t[..., None] * ab)
            return np.einsum("...i,...i->...", d, d) <= self.radius ** 2
        ang = np.deg2rad(self.yaw_deg)
        rot = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
        q = (p - c) @ rot / np.asarray(self.radii, dtype=float)
        return np.einsum("...i,...i->...", q, q) <= 1.0


@dataclasses.dataclass(frozen=True)
class ParticleClass:
    """One particle class: its shape, contrast and how it sits in the scene."""

    name: str
    description: str
    primitives: tuple[Primitive, ...]
    density_v: float = PROTEIN_DENSITY_V
    absorption: float = 0.0  # extra imaginary potential fraction (gold); 0: use the config's
    binds_membrane: bool = False

    def inside(self, p: np.ndarray) -> np.ndarray:
        """Boolean mask of points (..., 3) Å (raw primitive frame) inside the shape."""
        out = np.zeros(p.shape[:-1], dtype=bool)
        for prim in self.primitives:
            if not prim.carve:
                out |= prim.inside(p)
        for prim in self.primitives:
            if prim.carve:
                out &= ~prim.inside(p)
        return out

    def rasterise(self, ax: np.ndarray, ay: np.ndarray, az: np.ndarray) -> np.ndarray:
        """Boolean ``[z, y, x]`` grid of the shape at ascending axis coordinates (Å).

        Same result as ``inside`` on the full grid, evaluating each primitive in its box only.
        """
        out = np.zeros((len(az), len(ay), len(ax)), dtype=bool)
        for carve in (False, True):
            for prim in self.primitives:
                if prim.carve != carve:
                    continue
                lo, hi = prim.bounds()
                sl = tuple(slice(np.searchsorted(a, lo[k]), np.searchsorted(a, hi[k], "right"))
                           for k, a in ((2, az), (1, ay), (0, ax)))
                zz, yy, xx = np.meshgrid(az[sl[0]], ay[sl[1]], ax[sl[2]], indexing="ij")
                hit = prim.inside(np.stack([xx, yy, zz], axis=-1))
                if carve:
                    out[sl] &= ~hit
                else:
                    out[sl] |= hit
        return out

    @functools.cached_property
    def geometry(self) -> tuple[np.ndarray, float, float]:
        """(centroid x,y,z Å in the primitive frame, radius Å from it, base depth Å below it).

        Sampled on a 3 Å grid; the base depth is how far the lowest point lies below the
        centroid along ``-z`` (where an attached particle meets the membrane).
        """
        ext = self.extent()
        axis = np.arange(-ext, ext + 1e-6, 3.0)
        zi, yi, xi = np.nonzero(self.rasterise(axis, axis, axis))
        pts = np.stack([axis[xi], axis[yi], axis[zi]], axis=1)
        centroid = pts.mean(axis=0)
        rel = pts - centroid
        return centroid, float(np.sqrt((rel ** 2).sum(1)).max()), float(-rel[:, 2].min())

    def extent(self) -> float:
        """Half-width (Å) of a cube around the primitive frame origin holding the shape."""
        reach = 0.0
        for prim in self.primitives:
            c = np.abs(np.asarray(prim.centre))
            if prim.end is None:
                reach = max(reach, float((c + max(prim.radii)).max()))
            else:
                e = np.abs(np.asarray(prim.end))
                reach = max(reach, float(np.maximum(c, e).max() + prim.radius))
        return reach + 3.0


def _ring(n: int, radius: float, z: float, radii: tuple[float, float, float],
          phase_deg: float = 0.0) -> list[Primitive]:
    out = []
    for k in range(n):
        ang = phase_deg + 360.0 * k / n
        a = np.deg2rad(ang)
        out.append(Primitive((radius * np.cos(a), radius * np.sin(a), z), radii, yaw_deg=ang))
    return out


def _ribosome() -> tuple[Primitive, ...]:
    return (
        Primitive((0, 0, -25), (120, 110, 95)),  # large subunit
        Primitive((10, 0, 85), (110, 72, 50), yaw_deg=15),  # small subunit
        Primitive((60, 20, 115), (40, 35, 35)),  # head
        Primitive((-110, 30, -20), (35, 28, 45)),  # L1 stalk
        Primitive((0, -70, 55), (40, 35, 40)),  # central protuberance
        Primitive((30, 0, 40), (45, 130, 18), carve=True),  # inter-subunit cleft
        Primitive((0, 0, 10), end=(0, 0, -130), radius=12, carve=True),  # exit tunnel
    )


def _barrel() -> tuple[Primitive, ...]:
    # 20S proteasome: four stacked heptameric rings around a hollow chamber.
    prims: list[Primitive] = []
    for z, radii, phase in ((-56, (19, 19, 17), 0), (-19, (21, 21, 18), 25.7),
                            (19, (21, 21, 18), 0), (56, (19, 19, 17), 25.7)):
        prims += _ring(7, 43.0, z, radii, phase)
    return tuple(prims)


def _ring_hexamer() -> tuple[Primitive, ...]:
    # p97/VCP-like: two stacked hexameric AAA rings and N-domains on one face.
    return tuple(_ring(6, 40.0, -18, (25, 24, 20)) + _ring(6, 40.0, 22, (26, 25, 22), 30)
                 + _ring(6, 66.0, -40, (18, 18, 15), 15))


def _rod() -> tuple[Primitive, ...]:
    # Actin-like filament fragment: a two-start helix of 10 subunits (rise 27.5 Å).
    prims = []
    for i in range(10):
        a = np.deg2rad(166.6 * i)
        z = 27.5 * (i - 4.5)
        prims.append(Primitive((24 * np.cos(a), 24 * np.sin(a), z), (26, 23, 22),
                               yaw_deg=float(np.rad2deg(a))))
    return tuple(prims)


def _cube() -> tuple[Primitive, ...]:
    # Rubisco-like L8S8: eight large subunits in a cube, four small ones capping each end.
    prims = [Primitive((sx * 28, sy * 28, sz * 26), (30, 30, 28))
             for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    prims += _ring(4, 40.0, -56, (18, 18, 14), 45) + _ring(4, 40.0, 56, (18, 18, 14))
    return tuple(prims)


def _globular() -> tuple[Primitive, ...]:
    # Small two-domain protein (~7 nm, Hsp70-like).
    return (Primitive((-14, 0, 0), (26, 22, 20)), Primitive((18, 6, 4), (20, 18, 17), yaw_deg=30))


def _stalked() -> tuple[Primitive, ...]:
    # ATP-synthase-like: head on a central stalk, peripheral stalk, foot on the membrane.
    return (
        Primitive((0, 0, 60), (55, 55, 45)),
        Primitive((0, 0, -70), end=(0, 0, 20), radius=14),
        Primitive((38, 0, -70), end=(50, 0, 50), radius=8),
        Primitive((0, 0, -78), (42, 42, 10)),
    )


CLASSES: dict[str, ParticleClass] = {
    c.name: c for c in (
        ParticleClass("ribosome", "ribosome-like: two lobes, ~27 nm, exit tunnel at -z",
                      _ribosome(), binds_membrane=True),
        ParticleClass("barrel", "20S-proteasome-like hollow barrel of 4 heptameric rings, "
                      "15 x 12 nm", _barrel()),
        ParticleClass("ring", "p97-like double hexameric ring with N-domains, 16 x 9 nm",
                      _ring_hexamer()),
        ParticleClass("rod", "actin-like two-start helical rod of 10 subunits, 30 x 10 nm",
                      _rod()),
        ParticleClass("cube", "rubisco-like L8S8 cube, ~12 nm", _cube()),
        ParticleClass("globular", "small two-domain globular protein, ~7 nm", _globular()),
        ParticleClass("stalked", "ATP-synthase-like head on a stalk, 19 nm tall, foot at -z",
                      _stalked(), binds_membrane=True),
    )
}
PROTEIN_CLASSES: tuple[str, ...] = tuple(CLASSES)
# Point group of each class about its template's z axis (rings of n identical subunits
# about z); template matching searches and scores orientations modulo it. Others: C1.
CLASS_SYMMETRY: dict[str, str] = {"barrel": "C7", "ring": "C6", "cube": "C4"}
FIDUCIAL = "fiducial"
# Class name of the per-instance random shapes (``random_shape_class``).
RANDOM_SHAPE = "random_shape"


def random_shape_class(rng: np.random.Generator, size_angst: tuple[float, float],
                       density_fraction: tuple[float, float] = (0.7, 1.2)) -> ParticleClass:
    """A new random compound particle: 1-6 ellipsoids and capsules grown from each other.

    The overall size (largest edge of the axis-aligned box of the primitives, Å) is drawn
    log-uniformly in ``size_angst`` (small shapes are as common as large ones on a log
    scale, as real complexes are); each piece starts inside or at the surface of an earlier
    one, so the shape is connected; one shape in five gets a carved cavity (hollow or
    cup-like). The density is ``density_fraction`` x the protein density, drawn uniformly.
    Each call makes a shape never seen before: these are the "types it never saw" that
    teach a picker class-agnostic localisation.
    """
    n = int(rng.integers(1, 7))
    prims: list[Primitive] = []
    anchors: list[tuple[np.ndarray, float]] = []
    for k in range(n):
        radii = rng.uniform(0.25, 1.0, size=3)
        if k == 0:
            centre = np.zeros(3)
        else:
            base, reach = anchors[int(rng.integers(len(anchors)))]
            direction = rng.normal(size=3)
            direction /= max(float(np.linalg.norm(direction)), 1e-9)
            centre = base + direction * reach * rng.uniform(0.5, 1.1)
        if rng.random() < 0.3:
            direction = rng.normal(size=3)
            direction /= max(float(np.linalg.norm(direction)), 1e-9)
            length = float(rng.uniform(0.5, 2.0))
            radius = float(rng.uniform(0.15, 0.45))
            end = centre + direction * length
            prims.append(Primitive(tuple(centre), end=tuple(end), radius=radius))
            anchors += [(centre, radius), (end, radius)]
        else:
            prims.append(Primitive(tuple(centre), tuple(radii),
                                   yaw_deg=float(rng.uniform(0, 360))))
            anchors.append((centre, float(radii.min())))
    if rng.random() < 0.2:
        c0, r0 = anchors[0]
        prims.append(Primitive(tuple(c0 + rng.normal(size=3) * 0.2 * r0),
                               tuple(rng.uniform(0.3, 0.7, size=3) * r0), carve=True))
    lo = np.min([p.bounds()[0] for p in prims if not p.carve], axis=0)
    hi = np.max([p.bounds()[1] for p in prims if not p.carve], axis=0)
    mid = 0.5 * (lo + hi)
    size = float(np.exp(rng.uniform(np.log(size_angst[0]), np.log(size_angst[1]))))
    scale = size / float((hi - lo).max())

    def place(v) -> tuple[float, float, float]:
        return tuple(float(x) for x in (np.asarray(v, float) - mid) * scale)

    scaled = tuple(Primitive(place(p.centre), tuple(float(r) * scale for r in p.radii),
                             end=None if p.end is None else place(p.end),
                             radius=p.radius * scale, yaw_deg=p.yaw_deg, carve=p.carve)
                   for p in prims)
    density = PROTEIN_DENSITY_V * float(rng.uniform(*density_fraction))
    return ParticleClass(RANDOM_SHAPE, f"random compound shape, {size / 10:.0f} nm, "
                         f"{len(scaled)} pieces", scaled, density_v=density)


def fiducial_class(diameter_angst: float) -> ParticleClass:
    """A gold bead of ``diameter_angst`` Å (very dense, strongly absorbing)."""
    r = 0.5 * diameter_angst
    return ParticleClass(FIDUCIAL, f"gold bead, {diameter_angst / 10:g} nm",
                         (Primitive((0, 0, 0), (r, r, r)),), density_v=GOLD_DENSITY_V,
                         absorption=0.3)


@functools.lru_cache(maxsize=64)
def class_template(cls: ParticleClass, voxel_size: float) -> np.ndarray:
    """Density of ``cls`` (V above ice) on a cube grid ``[z, y, x]`` at ``voxel_size`` Å.

    The grid has odd size with the density centroid on the central voxel. The solid shape is
    sampled 3x finer per axis, averaged into voxels and blurred by the surface softness, so
    the map is smooth and not aliased at coarse voxel sizes. Cached: treat as read-only.
    """
    from scipy import ndimage

    centroid, radius, _ = cls.geometry
    sigma_vox = SURFACE_BLUR_ANGST / voxel_size
    half = int(np.ceil(radius / voxel_size + 3 * sigma_vox + 2))
    n = 2 * half + 1
    sub = 3
    offsets = (np.arange(n * sub) - (n * sub - 1) / 2) * (voxel_size / sub)
    solid = cls.rasterise(offsets + centroid[0], offsets + centroid[1],
                          offsets + centroid[2]).astype(np.float32)
    occupancy = solid.reshape(n, sub, n, sub, n, sub).mean(axis=(1, 3, 5))
    return (ndimage.gaussian_filter(occupancy, sigma_vox) * cls.density_v).astype(np.float32)
