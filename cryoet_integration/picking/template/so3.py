"""Rotations for template matching: uniform SO(3) grids, point-group symmetry, angular errors.

Orientations are (N, 3, 3) rotation matrices ``R`` in ``x, y, z`` that map the template
(reference) into the tomogram, as everywhere in ``formats``: the particle at orientation
``R`` is ``template(R^T p)``. A symmetric particle looks the same at ``R`` and ``R @ g`` for
every ``g`` of its point group, whose symmetry axis is the template's ``z`` (the second-order
axes of ``Dn`` lie along ``x`` and its multiples of 180/n in the xy plane).

The global grid is ``R = Rz(phi) Ry(theta) Rz(psi)``: the particle's ``z`` axis points along
one of a Fibonacci-sphere set of directions ``(theta, phi)`` and ``psi`` is spun uniformly
about it. Uniform directions times a uniform spin is the Haar measure of SO(3), and with
``4 pi / step^2`` directions and ``2 pi / step`` spins the grid holds ``8 pi^2 / step^3``
orientations (8,600 for 12 degrees). ``Cn`` cuts the spin range to ``360 / n`` degrees and
``Dn`` also keeps only directions of the upper hemisphere (its two-fold flips ``z``), so the
reduction is exact rather than a filter of the full grid.
"""

from __future__ import annotations

import re

import numpy as np

_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


def parse_symmetry(symmetry: str) -> tuple[str, int]:
    """``"C1"``, ``"c7"``, ``"D6"``... -> ("C" or "D", n). Raises ValueError otherwise."""
    match = re.fullmatch(r"\s*([CcDd])\s*([0-9]+)\s*", str(symmetry))
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"symmetry {symmetry!r} does not parse: expected Cn or Dn with n >= 1 "
                         "(e.g. C1, C7, D6)")
    return match.group(1).upper(), int(match.group(2))


def rz(angle: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations by ``angle`` radians about z."""
    a = np.atleast_1d(np.asarray(angle, dtype=float))
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((len(a), 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1], out[:, 2, 2] = c, -s, s, c, 1.0
    return out


def ry(angle: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations by ``angle`` radians about y."""
    a = np.atleast_1d(np.asarray(angle, dtype=float))
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((len(a), 3, 3))
    out[:, 0, 0], out[:, 0, 2], out[:, 2, 0], out[:, 2, 2], out[:, 1, 1] = c, s, -s, c, 1.0
    return out


def symmetry_matrices(symmetry: str) -> np.ndarray:
    """(G, 3, 3) elements of the point group ``Cn`` or ``Dn`` (identity first)."""
    kind, n = parse_symmetry(symmetry)
    cyclic = rz(2.0 * np.pi * np.arange(n) / n)
    if kind == "C":
        return cyclic
    flip = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x
    return np.concatenate([cyclic, cyclic @ flip])


def _check_step(step_deg: float) -> float:
    step = float(step_deg)
    if not (0.0 < step <= 90.0) or not np.isfinite(step):
        raise ValueError(f"angular step must be > 0 and <= 90 degrees, got {step_deg!r}")
    return step


def grid_size(step_deg: float, symmetry: str = "C1") -> tuple[int, int]:
    """(number of directions, number of spins) of :func:`uniform_grid`."""
    kind, n = parse_symmetry(symmetry)
    step = np.radians(_check_step(step_deg))
    n_dirs = max(1, int(round(4.0 * np.pi / step ** 2 / (2 if kind == "D" else 1))))
    n_spin = max(1, int(round(2.0 * np.pi / step / n)))
    return n_dirs, n_spin


def uniform_grid(step_deg: float, symmetry: str = "C1") -> np.ndarray:
    """(N, 3, 3) near-uniform orientations about ``step_deg`` apart, one per symmetry class.

    Args:
        step_deg: angular spacing in degrees (0 < step <= 90).
        symmetry: ``Cn`` or ``Dn`` of the template (symmetry axis = template z).
    """
    kind, n = parse_symmetry(symmetry)
    n_dirs, n_spin = grid_size(step_deg, symmetry)
    i = np.arange(n_dirs) + 0.5
    # Fibonacci points: cos(theta) uniform over the sphere (or the upper hemisphere for Dn)
    cos_t = 1.0 - i / n_dirs if kind == "D" else 1.0 - 2.0 * i / n_dirs
    theta = np.arccos(np.clip(cos_t, -1.0, 1.0))
    phi = np.mod(np.arange(n_dirs) * _GOLDEN_ANGLE, 2.0 * np.pi)
    psi = (np.arange(n_spin) + 0.5) * (2.0 * np.pi / n / n_spin)
    directions = rz(phi) @ ry(theta)
    spins = rz(psi)
    return np.einsum("dij,sjk->dsik", directions, spins).reshape(-1, 3, 3)


def local_grid(radius_deg: float, spacing_deg: float) -> np.ndarray:
    """(K, 3, 3) rotations within ``radius_deg`` of the identity on a cubic rotation-vector
    lattice of ``spacing_deg`` (identity first); ``R @ local_grid(...)`` samples around ``R``.
    """
    from scipy.spatial.transform import Rotation

    if not (radius_deg > 0 and spacing_deg > 0):
        raise ValueError("local grid radius and spacing must be > 0 degrees")
    m = int(np.floor(radius_deg / spacing_deg))
    ax = np.arange(-m, m + 1) * spacing_deg
    vec = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)
    norm = np.linalg.norm(vec, axis=1)
    vec = vec[np.argsort(norm, kind="stable")]
    vec = vec[np.linalg.norm(vec, axis=1) <= radius_deg + 1e-9]
    return Rotation.from_rotvec(np.radians(vec)).as_matrix()


def angular_distance(a: np.ndarray, b: np.ndarray, symmetry: str = "C1") -> np.ndarray:
    """Smallest rotation angle (degrees) between orientations ``a`` and ``b`` (N, 3, 3),
    over the symmetry-equivalent copies ``b @ g`` of the template's point group."""
    a = np.asarray(a, dtype=float).reshape(-1, 3, 3)
    b = np.asarray(b, dtype=float).reshape(-1, 3, 3)
    rel = np.einsum("nji,njk->nik", a, b)  # a^T b
    group = symmetry_matrices(symmetry)
    traces = np.einsum("nij,gji->ng", rel, group)  # trace(a^T b g)
    cos = np.clip((traces.max(axis=1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))
