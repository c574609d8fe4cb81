"""Training targets of the learned picker: particle lists -> class-sphere label maps.

DeepFinder's recipe: every particle becomes a ball of its class's radius in a label map
(0 background, 1..K particle classes, then optionally ``membrane`` from a mask); where balls
overlap, the particle whose centre is nearer wins. The same balls, numbered per particle,
form an instance map so validation picks can be scored with the SHREC 2021 rules of
``evaluate.picks`` without the simulator's instance maps.

Radii are in Å; positions are voxels ``x, y, z`` of the tomogram; arrays are ``[z, y, x]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from formats import outside_tomogram, positions_voxels

from ..errors import CryovisError

SINGLE_CLASS = "particle"
# Classes the picker learns in order to recognise and drop them (gold beads).
EXCLUDED_CLASS_NAMES = ("fiducial", "gold")


@dataclass
class ParticleList:
    """One tomogram's particles as the picker trains on them: positions ``xyz`` (N, 3) in
    voxels of the tomogram and one class name each; ``skipped`` counts particles dropped
    because they lie outside the tomogram; ``rows`` are the kept particles' row positions
    in the table read."""

    xyz: np.ndarray
    classes: list[str]
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def particle_classes(table: pd.DataFrame) -> list[str] | None:
    """Class names of a canonical table (``class`` column; RELION's rlnClassName or
    rlnClassNumber land there), or None when no particle has one. A list where only some
    particles have a class is an error: the rest would silently become background."""
    if "class" not in table.columns or len(table) == 0:
        return None
    raw = table["class"]
    missing = raw.isna() | (raw.astype(str).str.strip() == "")
    if missing.all():
        return None
    if missing.any():
        raise CryovisError(f"{int(missing.sum())} of {len(table)} particles have no class; "
                           "give every particle a class or none")
    return [str(c).strip() for c in raw]


def prepare_particles(table: pd.DataFrame, tomo_shape_zyx: tuple[int, int, int],
                      tomo_voxel_size: float, source: str) -> ParticleList:
    """Positions of ``table`` in voxels of the tomogram (rescaled when the table's known
    voxel size differs), with classes (one class ``particle`` when the list has none), and
    the particles outside the tomogram dropped and counted."""
    xyz = positions_voxels(table).astype(float)
    vs = table["voxel_size"].to_numpy(dtype=float) if "voxel_size" in table else None
    if vs is not None and tomo_voxel_size > 0:
        known = np.isfinite(vs) & (vs > 0)
        xyz = np.where(known[:, None], xyz * (np.where(known, vs, 1.0) / tomo_voxel_size)[:, None],
                       xyz)
    classes = particle_classes(table)
    notes = []
    if classes is None:
        classes = [SINGLE_CLASS] * len(table)
        if len(table):
            notes.append(f"{source}: no classes in the list; training one class "
                         f"'{SINGLE_CLASS}'")
    inside = ~outside_tomogram(xyz, tomo_shape_zyx)
    skipped = int((~inside).sum())
    if skipped:
        size = "x".join(map(str, tomo_shape_zyx[::-1]))
        notes.append(f"{source}: {skipped} of {len(table)} particles lie outside the "
                     f"tomogram ({size} voxels) and were skipped")
    return ParticleList(xyz[inside], [c for c, k in zip(classes, inside) if k], skipped, notes,
                        np.flatnonzero(inside))


def ball_maps(shape_zyx: tuple[int, int, int], xyz: np.ndarray, class_ids: np.ndarray,
              radii_voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and instance maps ``[z, y, x]`` of balls around ``xyz`` (voxels).

    Args:
        shape_zyx: map shape.
        xyz: (N, 3) centres in voxels (0-based voxel centres).
        class_ids: (N,) label of each ball (1..K).
        radii_voxels: (N,) ball radius of each particle, voxels.

    Returns:
        ``(labels int8, instances int32)``; instance ``i + 1`` is particle ``i``. Where
        balls overlap the voxel goes to the particle with the nearest centre relative to
        its radius.
    """
    labels = np.zeros(shape_zyx, dtype=np.int8)
    instances = np.zeros(shape_zyx, dtype=np.int32)
    best = np.full(shape_zyx, np.inf, dtype=np.float32)
    size = np.array(shape_zyx[::-1])
    for i, (c, k, r) in enumerate(zip(xyz, class_ids, radii_voxels)):
        r = max(float(r), 1.0)
        lo = np.maximum(np.floor(c - r).astype(int), 0)
        hi = np.minimum(np.ceil(c + r).astype(int) + 1, size)
        if np.any(hi <= lo):
            continue
        z, y, x = np.ogrid[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        # a radius of at least one voxel keeps the centre voxel inside its own ball
        d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / max(r, 1.0)
        sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        take = (d <= 1.0) & (d < best[sl])
        best[sl][take] = d[take]
        labels[sl][take] = k
        instances[sl][take] = i + 1
    return labels, instances


def estimate_radius(image: np.ndarray, xyz: np.ndarray, voxel_size: float,
                    radii_angst: np.ndarray | None = None) -> float:
    """Particle radius (Å) of one class from the tomogram: the ball radius whose
    scale-normalised Laplacian-of-Gaussian response, averaged over the class's particle
    centres, is strongest (a ball of radius r answers most at sigma = r / sqrt(3)).

    Args:
        image: normalised tomogram ``[z, y, x]``, dense matter dark (negative).
        xyz: (N, 3) particle centres, voxels of ``image``.
        voxel_size: Å per voxel of ``image``.
        radii_angst: candidate radii (default 20-200 Å on a geometric grid).
    """
    from scipy import ndimage

    if radii_angst is None:
        radii_angst = np.geomspace(20.0, 200.0, 16)
    ijk = np.clip(np.rint(xyz).astype(int), 0, np.array(image.shape[::-1]) - 1)
    if len(ijk) > 200:
        ijk = ijk[np.random.default_rng(0).choice(len(ijk), 200, replace=False)]
    responses = []
    for r in radii_angst:
        sigma = max(r / voxel_size / np.sqrt(3.0), 0.5)
        log = -sigma ** 2 * ndimage.gaussian_laplace(-image, sigma)
        responses.append(float(np.mean(log[ijk[:, 2], ijk[:, 1], ijk[:, 0]])))
    return float(radii_angst[int(np.argmax(responses))])


def parse_radius_options(items: list[str] | None) -> dict[str, float]:
    """``["ribosome=120", "barrel=70"]`` (Å) -> dict; CryovisError on a malformed item."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            radius = float(value)
        except ValueError:
            radius = float("nan")
        if not sep or not name.strip() or not radius > 0:
            raise CryovisError(f"--radius {item!r}: expected CLASS=RADIUS with the radius in Å "
                               "(> 0), e.g. ribosome=120")
        out[name.strip()] = radius
    return out
