"""The sample ("grand model"): ice slab, membranes, gold beads and particles without overlap.

Everything is built on the output grid ``[z, y, x]`` at ``config.voxel_size`` Å. Densities
are excess potential over vitreous ice in volts; the ice itself is added analytically by the
imaging step (an infinite slab), so the box holds only what differs from ice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import filaments as fl
from . import labels as lab
from . import membranes as mem
from .config import SimulationConfig
from .shapes import (
    CLASSES,
    FIDUCIAL,
    INSTANCE_THRESHOLD,
    PROTEIN_CLASSES,
    ParticleClass,
    class_template,
    fiducial_class,
    random_shape_class,
)

_OUTSIDE, _MEMBRANE, _PARTICLE = 1, 2, 3  # occupancy codes (0 = free)
_MEMBRANE_GAP_ANGST = 30.0  # minimum spacing between two bilayers' masks
_MAX_PARTICLES = 20000


@dataclasses.dataclass
class Scene:
    """A built sample.

    Attributes:
        potential: excess elastic potential (V) ``[z, y, x]``, float32.
        absorption: imaginary potential (V) ``[z, y, x]``, float32 (amplitude contrast).
        labels: int16 class labels (see ``labels``).
        instances: int32 particle ids (1-based), 0 elsewhere.
        membranes: uint8 membrane mask.
        particles: one dict per particle: id, class, xyz (voxels), matrix (ref -> tomogram),
            attached (bool).
        slab: ice slab: normal, centre (x,y,z Å), thickness (Å).
        membrane_info: parameters of each membrane (geometry and bilayer profile).
        filament_info: parameters of each filament (labelled, not particles).
    """

    potential: np.ndarray
    absorption: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    membranes: np.ndarray
    particles: list[dict[str, Any]]
    slab: dict[str, Any]
    membrane_info: list[dict[str, Any]]
    filament_info: list[dict[str, Any]]


def _grid_angst(shape_zyx: tuple[int, int, int], voxel_size: float, lo: np.ndarray,
                hi: np.ndarray):
    """Voxel index slices and the (..., 3) x,y,z Å points of the sub-box [lo, hi] Å."""
    size_xyz = np.array(shape_zyx[::-1])
    i0 = np.clip(np.floor(lo / voxel_size).astype(int), 0, size_xyz)
    i1 = np.clip(np.ceil(hi / voxel_size).astype(int) + 1, 0, size_xyz)
    return _grid_index(voxel_size, i0, i1)


def _grid_index(voxel_size: float, i0: np.ndarray, i1: np.ndarray):
    """Voxel index slices and x,y,z Å points of voxels ``i0 <= (x, y, z) < i1``."""
    if np.any(i1 <= i0):
        return None, None
    axes = [np.arange(i0[k], i1[k], dtype=np.float32) * voxel_size for k in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    sl = (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
    return sl, np.stack([xx, yy, zz], axis=-1)


class _Builder:
    def __init__(self, shape_zyx: tuple[int, int, int], config: SimulationConfig,
                 rng: np.random.Generator):
        self.shape = shape_zyx
        self.cfg = config
        self.vs = float(config.voxel_size)
        self.rng = rng
        self.potential = np.zeros(shape_zyx, np.float32)
        self.absorption = np.zeros(shape_zyx, np.float32)
        self.instances = np.zeros(shape_zyx, np.int32)
        self.labels = np.zeros(shape_zyx, np.int16)
        self.membranes = np.zeros(shape_zyx, np.uint8)
        self.occupancy = np.zeros(shape_zyx, np.uint8)
        self.particles: list[dict[str, Any]] = []
        self.membrane_objs: list[Any] = []
        self.membrane_areas: list[float] = []  # Å² of each bilayer inside box and ice
        self.profile = config.bilayer_profile()
        self.membrane_profiles: list[mem.BilayerProfile] = []
        self.filament_objs: list[fl.Filament] = []
        a = float(config.amplitude_contrast)
        self.bio_absorption = a / np.sqrt(1.0 - a * a)
        self.box_angst = np.array(shape_zyx[::-1], float) * self.vs

    # Ice ---------------------------------------------------------------------------------------
    def build_slab(self) -> None:
        depth = self.box_angst[2]
        t = (self.cfg.ice_thickness_angst if self.cfg.ice_thickness_angst
             else self.cfg.ice_fraction * depth)
        beta = np.deg2rad(self.cfg.ice_tilt_deg)
        phi = self.rng.uniform(0, 2 * np.pi)
        normal = np.array([np.sin(beta) * np.cos(phi), np.sin(beta) * np.sin(phi), np.cos(beta)])
        centre = (self.box_angst - self.vs) / 2
        if t < depth:
            centre[2] += self.rng.uniform(-0.4, 0.4) * (depth - t)
        self.slab = {"normal": normal, "centre": centre, "thickness": float(t)}
        nz, ny, nx = self.shape
        axes = [(np.arange(n, dtype=np.float32) * self.vs - centre[k]) * normal[k]
                for k, n in enumerate((nx, ny, nz))]
        self.slab_dist = (axes[2][:, None, None] + axes[1][None, :, None]
                          + axes[0][None, None, :]).astype(np.float32)
        self.in_slab = np.abs(self.slab_dist) <= t / 2
        # a one-voxel linear ramp at the ice surfaces, so densities are not cut sharply
        self.slab_soft = np.clip(0.5 - (np.abs(self.slab_dist) - t / 2) / self.vs, 0, 1)
        self.occupancy[~self.in_slab] = _OUTSIDE

    def random_point_in_slab(self, margin_angst: float) -> np.ndarray:
        """A point (x,y,z Å) uniform over the box part of the slab shrunk by ``margin_angst``.

        Uniform in x, y and in depth within the slab; depths outside the box are redrawn
        (after 20 draws the depth is clipped into the box).
        """
        t = self.slab["thickness"]
        half = max(t / 2 - margin_angst, 0.0)
        n, c = self.slab["normal"], self.slab["centre"]
        top = self.box_angst[2] - self.vs
        for _ in range(20):
            p = np.array([*self.rng.uniform(0, self.box_angst[:2]), 0.0])
            s = self.rng.uniform(-half, half)
            # the depth along z that puts p at slab distance s
            p[2] = c[2] + (s - n[0] * (p[0] - c[0]) - n[1] * (p[1] - c[1])) / n[2]
            if 0.0 <= p[2] <= top:
                return p
        p[2] = np.clip(p[2], 0.0, top)
        return p

    # Membranes -------------------------------------------------------------------------------
    def add_membrane(self, obj: Any, lumen_v: float = 0.0) -> bool:
        """Add ``obj`` if its mask lands in the ice and keeps clear of other membranes."""
        lo, hi = obj.bounds(mem.MASK_HALF_WIDTH_ANGST + 80.0)
        lo = np.maximum(lo, 0.0)
        hi = np.minimum(hi, self.box_angst)
        sl, pts = _grid_angst(self.shape, self.vs, lo, hi)
        if sl is None:
            return False
        d = obj.distance(pts).astype(np.float32)
        band = (np.abs(d) <= mem.MASK_HALF_WIDTH_ANGST) & self.in_slab[sl]
        if band.sum() < 50:
            return False
        near = np.abs(d) <= mem.MASK_HALF_WIDTH_ANGST + _MEMBRANE_GAP_ANGST
        if np.any(near & (self.membranes[sl] > 0)):
            return False
        profile = (mem.random_profile(self.rng, self.vs) if self.cfg.profile_per_membrane
                   else self.profile)
        density = profile.density(d, self.vs)
        if lumen_v:
            inner = np.clip(0.5 - (d + mem.MASK_HALF_WIDTH_ANGST) / self.vs, 0, 1)
            density += np.float32(lumen_v) * inner
        density *= self.slab_soft[sl]
        self.potential[sl] += density
        self.absorption[sl] += density * np.float32(self.bio_absorption)
        self.membranes[sl][band] = 1
        self.occupancy[sl][band] = _MEMBRANE
        self.membrane_objs.append(obj)
        self.membrane_profiles.append(profile)
        self.membrane_areas.append(float(band.sum()) * self.vs ** 3
                                   / (2 * mem.MASK_HALF_WIDTH_ANGST))
        return True

    def decorate_membranes(self) -> None:
        """Transmembrane proteins: unlabelled blobs across the bilayers.

        Each is a Gaussian ellipsoid (``sd`` 25 Å along the membrane normal, 12-20 Å
        across, +1.2 V peak) centred within 1 nm of the mid-surface, at
        ``membrane_proteins_per_angst2``. Their density outside the bilayer mask keeps
        particles away but carries no label.
        """
        per_angst2 = self.cfg.membrane_proteins_per_angst2
        size = np.array(self.shape[::-1])
        for obj, area in zip(self.membrane_objs, self.membrane_areas):
            n = int(self.rng.poisson(per_angst2 * area)) if per_angst2 > 0 else 0
            placed = 0
            for _ in range(5 * n):
                if placed == n:
                    break
                point, normal = obj.sample_surface(self.rng)
                centre = point + normal * self.rng.uniform(-10.0, 10.0)
                c = np.round(centre / self.vs).astype(int)
                if np.any(c < 0) or np.any(c >= size) or not self.membranes[c[2], c[1], c[0]]:
                    continue
                self._add_blob(centre, normal, float(self.rng.uniform(12.0, 20.0)))
                placed += 1

    def _add_blob(self, centre: np.ndarray, normal: np.ndarray, sd_lateral: float) -> None:
        sd_normal, peak = 25.0, 1.2
        h = int(np.ceil(3 * sd_normal / self.vs)) + 1
        lo = np.round(centre / self.vs).astype(int) - h
        size = np.array(self.shape[::-1])
        sl, pts = _grid_index(self.vs, np.clip(lo, 0, size), np.clip(lo + 2 * h + 1, 0, size))
        if sl is None:
            return
        d = pts - centre
        along = d @ normal
        lateral2 = np.einsum("...i,...i->...", d, d) - along ** 2
        blob = (peak * np.exp(-0.5 * along ** 2 / sd_normal ** 2
                              - 0.5 * lateral2 / sd_lateral ** 2)).astype(np.float32)
        blob *= self.slab_soft[sl]
        self.potential[sl] += blob
        self.absorption[sl] += blob * np.float32(self.bio_absorption)
        occ = self.occupancy[sl]
        occ[(blob > INSTANCE_THRESHOLD * peak) & (occ == 0)] = _PARTICLE

    def build_membranes(self) -> None:
        cfg, rng = self.cfg, self.rng
        t = self.slab["thickness"]
        largest = 0.5 * min(t, *self.box_angst[:2])
        for _ in range(cfg.n_vesicles):
            for _attempt in range(20):
                lo_r, hi_r = cfg.vesicle_radius_angst
                r = rng.uniform(lo_r, max(lo_r, min(hi_r, largest)))
                centre = self.random_point_in_slab(0.7 * r)
                lumen = float(rng.uniform(-0.1, 0.4))
                ves = mem.random_vesicle(rng, centre, r)
                inner_r = r - rng.uniform(80, 200)
                double = rng.random() < 0.25 and inner_r > 100
                if self.add_membrane(ves, 0.0 if double else lumen):
                    if double:
                        self.add_membrane(ves.scaled(inner_r / r, "inner_vesicle"), lumen)
                    break
        for _ in range(cfg.n_sheets):
            for _attempt in range(20):
                sheet = mem.random_sheet(rng, self.random_point_in_slab(50.0),
                                         float(self.box_angst[:2].mean()))
                if self.add_membrane(sheet):
                    break
        for _ in range(cfg.n_tubes):
            for _attempt in range(20):
                lo_r, hi_r = cfg.tube_radius_angst
                r = rng.uniform(lo_r, max(lo_r, min(hi_r, largest)))
                length = rng.uniform(0.3, 1.0) * float(np.linalg.norm(self.box_angst[:2]))
                tube = mem.random_capsule(rng, self.random_point_in_slab(0.7 * r), r, length)
                if self.add_membrane(tube, float(rng.uniform(-0.1, 0.3))):
                    break

    # Filaments -------------------------------------------------------------------------------
    def add_filament(self, fil: fl.Filament) -> bool:
        """Add ``fil`` if it lies in the ice clear of membranes, filaments and particles."""
        nz = self.shape[0]
        ny, nx = self.shape[1:]
        r = np.empty(self.shape, np.float32)
        for z0 in range(0, nz, 16):  # in z chunks: the whole grid of points is large
            z1 = min(nz, z0 + 16)
            _, pts = _grid_index(self.vs, np.array([0, 0, z0]), np.array([nx, ny, z1]))
            r[z0:z1] = fil.axis_distance(pts)
        density = fil.density(r, self.vs)
        mask = (density > INSTANCE_THRESHOLD * float(density.max(initial=0.0))) & self.in_slab
        if mask.sum() < 50:
            return False
        near = (r <= fil.outer_radius + self.vs) & self.in_slab
        if np.any(np.isin(self.occupancy[near], (_MEMBRANE, _PARTICLE))):
            return False
        density *= self.slab_soft
        self.potential += density
        self.absorption += density * np.float32(self.bio_absorption)
        self.labels[mask] = lab.class_label(fil.kind)
        self.occupancy[near] = _PARTICLE
        self.filament_objs.append(fil)
        return True

    def build_filaments(self) -> None:
        from scipy import ndimage

        if self.cfg.n_microtubules + self.cfg.n_actin == 0:
            return
        # Clearance (Å) from membranes and particles, to discard most colliding candidates
        # before the full-grid distance computation of add_filament.
        blocked = np.isin(self.occupancy, (_MEMBRANE, _PARTICLE))
        clearance = (ndimage.distance_transform_edt(~blocked).astype(np.float32) * self.vs
                     if blocked.any() else None)
        size = np.array(self.shape[::-1])
        reach = float(np.linalg.norm(self.box_angst))
        for kind, count in (("microtubule", self.cfg.n_microtubules),
                            ("actin", self.cfg.n_actin)):
            for _ in range(count):
                for _attempt in range(10):
                    margin = fl.MICROTUBULE_RADII_ANGST[1] if kind == "microtubule" else 50.0
                    fil = fl.random_filament(self.rng, kind, self.random_point_in_slab(margin),
                                             self.slab["normal"])
                    if clearance is not None:
                        idx = np.round(fil.axis_points(reach, self.vs / 2) / self.vs).astype(int)
                        idx = idx[np.all((idx >= 0) & (idx < size), axis=1)]
                        if np.any(clearance[idx[:, 2], idx[:, 1], idx[:, 0]]
                                  < fil.outer_radius + self.vs):
                            continue
                    if self.add_filament(fil):
                        break

    # Particles -------------------------------------------------------------------------------
    def render(self, template: np.ndarray, matrix: np.ndarray, frac_xyz: np.ndarray
               ) -> np.ndarray:
        """``template`` rotated by ``matrix`` and shifted by ``frac_xyz`` voxels, same box."""
        from scipy import ndimage

        n = template.shape[0]
        h = (n - 1) / 2
        perm = np.eye(3)[::-1]
        m = perm @ matrix.T @ perm  # output zyx offset -> template zyx offset
        frac_zyx = np.asarray(frac_xyz, float)[::-1]
        offset = h - m @ (np.full(3, h) + frac_zyx)
        return ndimage.affine_transform(template, m, offset=offset, order=1,
                                        output_shape=template.shape, mode="constant", cval=0.0,
                                        prefilter=False)

    def try_place(self, cls: ParticleClass, template: np.ndarray, matrix: np.ndarray,
                  centres_xyz: list[np.ndarray], attached: bool) -> int:
        """Render once, then try each candidate centre (voxels, same fractional part).

        Returns the number of voxels of the placed particle's instance region (0: not placed).
        """
        from scipy import ndimage

        size = np.array(self.shape[::-1])
        frac = centres_xyz[0] - np.round(centres_xyz[0])
        free = []
        for centre in centres_xyz:
            c = np.round(centre).astype(int)
            # the centre ball belongs to the particle, so a taken centre voxel always clashes
            if np.all((c >= 0) & (c < size)) and self.occupancy[c[2], c[1], c[0]] == 0:
                free.append(centre)
        if not free:
            return 0
        dens = self.render(template, matrix, frac)
        n = template.shape[0]
        h = n // 2
        mask = dens > INSTANCE_THRESHOLD * cls.density_v
        mask |= lab.centre_ball(mask.shape, np.full(3, h) + frac)
        grown = ndimage.binary_dilation(mask)
        for centre in free:
            base = np.round(centre).astype(int) - h
            lo = np.maximum(base, 0)
            hi = np.minimum(base + n, size)
            vol_sl = tuple(slice(lo[k], hi[k]) for k in (2, 1, 0))
            loc_sl = tuple(slice(lo[k] - base[k], hi[k] - base[k]) for k in (2, 1, 0))
            occ = self.occupancy[vol_sl]
            m, g = mask[loc_sl], grown[loc_sl]
            if attached:
                clash = np.any(occ[m] != 0) or np.any(np.isin(occ[g], (_OUTSIDE, _PARTICLE)))
            else:
                clash = np.any(occ[g] != 0)
            if clash:
                continue
            pid = len(self.particles) + 1
            self.potential[vol_sl] += dens[loc_sl]
            extra = cls.absorption if cls.absorption else self.bio_absorption
            self.absorption[vol_sl] += dens[loc_sl] * np.float32(extra)
            self.instances[vol_sl][m] = pid
            self.labels[vol_sl][m] = lab.class_label(cls.name)
            occ[g] = _PARTICLE
            self.particles.append({"id": pid, "class": cls.name,
                                   "xyz": np.round(centre, 0) + frac, "matrix": matrix,
                                   "attached": attached})
            return int(m.sum())
        return 0

    def free_centres(self, k: int, margin_angst: float) -> list[np.ndarray]:
        """``k`` random centres (voxels) inside the slab sharing one fractional offset."""
        frac = self.rng.uniform(-0.5, 0.5, size=3)
        return [np.round(self.random_point_in_slab(margin_angst) / self.vs) + frac
                for _ in range(k)]

    def place_fiducials(self, templates: dict[str, np.ndarray], cls: ParticleClass) -> None:
        from .membranes import random_rotation

        area = self.box_angst[0] * self.box_angst[1]
        n = int(self.rng.poisson(self.cfg.fiducials_per_angst2 * area))
        r = 0.5 * self.cfg.fiducial_diameter_angst
        t = self.slab["thickness"]
        for _ in range(n):
            for _attempt in range(10):
                p = self.random_point_in_slab(r)
                if t < self.box_angst[2] and self.rng.random() < 0.8:
                    # gold mostly sits at the ice surfaces
                    s = np.sign(self.rng.normal()) * (t / 2 - r - self.rng.uniform(0, 20))
                    n_ = self.slab["normal"]
                    p = p + n_ * (s - float((p - self.slab["centre"]) @ n_))
                centre = p / self.vs
                if self.try_place(cls, templates[FIDUCIAL], random_rotation(self.rng),
                                  [centre], attached=False):
                    break

    def attached_centres(self, cls: ParticleClass) -> tuple[list[np.ndarray], np.ndarray]:
        """A centre (voxels) and orientation that set the particle's foot on a membrane."""
        from scipy.spatial.transform import Rotation

        obj = self.membrane_objs[int(self.rng.integers(len(self.membrane_objs)))]
        point, normal = obj.sample_surface(self.rng)
        if obj.kind == "sheet" or self.rng.random() < 0.3:
            normal = normal * np.sign(self.rng.normal())
        _, _, base = cls.geometry
        centre = point + normal * (mem.MASK_HALF_WIDTH_ANGST + base + 0.5 * self.vs)
        align, _ = Rotation.align_vectors([normal], [[0.0, 0.0, 1.0]])
        spin = Rotation.from_euler("z", self.rng.uniform(0, 360), degrees=True)
        return [centre / self.vs], (align * spin).as_matrix()

    def place_proteins(self, templates: dict[str, np.ndarray]) -> None:
        from .membranes import random_rotation

        cfg, rng = self.cfg, self.rng
        names = list(PROTEIN_CLASSES)
        w = np.array([(cfg.class_weights or {}).get(c, 0.0 if cfg.class_weights else 1.0)
                      for c in names], float)
        random_fraction = cfg.random_shape_fraction
        if w.sum() <= 0:
            random_fraction = 1.0 if random_fraction > 0 else 0.0
        if (w.sum() <= 0 and random_fraction <= 0) or cfg.crowding <= 0:
            return
        w = w / w.sum() if w.sum() > 0 else w
        target = cfg.crowding * float(self.in_slab.sum())
        filled = 0.0
        failures = 0
        while filled < target and failures < 40 and len(self.particles) < _MAX_PARTICLES:
            # no draw without random shapes, so such scenes stay what they were for a seed
            if random_fraction > 0 and (random_fraction >= 1 or rng.random() < random_fraction):
                cls = random_shape_class(rng, cfg.random_shape_size_angst)
                template = class_template(cls, self.vs)
            else:
                cls = CLASSES[names[int(rng.choice(len(names), p=w))]]
                template = templates[cls.name]
            attached = (cls.binds_membrane and self.membrane_objs
                        and rng.random() < cfg.attached_fraction)
            if attached:
                centres, matrix = self.attached_centres(cls)
            else:
                _, radius, _ = cls.geometry
                centres, matrix = self.free_centres(12, 0.5 * radius), random_rotation(rng)
            placed = self.try_place(cls, template, matrix, centres, bool(attached))
            filled += placed
            failures = 0 if placed else failures + 1

    def add_background(self) -> None:
        """Smooth random texture for the unresolved small molecules of a crowded cytosol.

        Zero-mean Gaussian-filtered noise with std ``background_v`` V and correlation length
        ``background_scale_angst``, only in ice not taken by particles or bilayers.
        """
        from scipy import ndimage

        if self.cfg.background_v <= 0:
            return
        noise = self.rng.standard_normal(self.shape, dtype=np.float32)
        sigma = self.cfg.background_scale_angst / self.vs
        smooth = ndimage.gaussian_filter(noise, sigma, mode="wrap")
        smooth *= np.float32(self.cfg.background_v / max(float(smooth.std()), 1e-12))
        free = (self.instances == 0) & (self.membranes == 0)
        smooth *= free * self.slab_soft.astype(np.float32)
        self.potential += smooth
        self.absorption += smooth * np.float32(self.bio_absorption)


def build_scene(shape_zyx: tuple[int, int, int], config: SimulationConfig,
                rng: np.random.Generator) -> Scene:
    """Build the sample on a ``[z, y, x]`` grid at ``config.voxel_size`` Å (seeded by ``rng``)."""
    b = _Builder(shape_zyx, config, rng)
    b.build_slab()
    b.build_membranes()
    b.decorate_membranes()
    b.build_filaments()
    fid = fiducial_class(config.fiducial_diameter_angst)
    classes = {**CLASSES, FIDUCIAL: fid}
    templates = {name: class_template(c, b.vs) for name, c in classes.items()}
    b.place_fiducials(templates, fid)
    b.place_proteins(templates)
    b.add_background()
    b.labels[(b.membranes > 0) & (b.instances == 0)] = lab.MEMBRANE
    slab = {"normal": b.slab["normal"].tolist(), "centre_angst": b.slab["centre"].tolist(),
            "thickness_angst": b.slab["thickness"]}
    return Scene(b.potential, b.absorption, b.labels, b.instances, b.membranes, b.particles,
                 slab, [o.describe() | {"profile": p.describe(b.vs)}
                        for o, p in zip(b.membrane_objs, b.membrane_profiles)],
                 [f.describe() for f in b.filament_objs])
