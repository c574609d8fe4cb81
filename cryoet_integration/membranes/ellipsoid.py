"""Parametric fits: an ellipse per slice and an ellipsoid in 3D (paper sections 4.3.1, 5.1).

Coordinates are voxels, rows ``x, y`` (2D) or ``x, y, z`` (3D). The 3D fit is a constrained
nonlinear least-squares fit of the first-order geometric distance, its radii bounded to
``(min_radius, max_radius)``; it starts, as the paper's slice fits do, from the ellipses of
the best-populated z slices (the ones a missing wedge leaves whole), with a moment-based
start as a second guess.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Ellipsoid:
    """An ellipsoid in voxels: ``centre`` ``(3,)`` x, y, z, semi-axes ``radii`` ``(3,)`` and
    ``axes`` (columns are the unit axes, x, y, z components)."""

    centre: np.ndarray
    radii: np.ndarray
    axes: np.ndarray

    def level(self, p: np.ndarray) -> np.ndarray:
        """``|q| - 1`` with ``q`` the coordinates in units of the semi-axes (< 0 inside)."""
        q = (np.asarray(p, dtype=float) - self.centre) @ self.axes / self.radii
        return np.sqrt((q * q).sum(-1)) - 1.0

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Signed first-order distance (voxels) of ``(..., 3)`` points, > 0 outside."""
        q = (np.asarray(p, dtype=float) - self.centre) @ self.axes / self.radii
        r = np.sqrt((q * q).sum(-1))
        grad = np.linalg.norm(q / self.radii / np.maximum(r, 1e-9)[..., None], axis=-1)
        return (r - 1.0) / np.maximum(grad, 1e-12)

    def volume(self) -> float:
        """Enclosed volume, cubic voxels."""
        return float(4 / 3 * np.pi * np.prod(self.radii))


def fit_ellipse(points_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Least-squares ellipse through ``(n, 2)`` points (voxels): ``(centre, (a, b), theta)``
    with ``theta`` the angle (radians) of the ``a`` axis from x, or None if ill-posed."""
    from skimage.measure import EllipseModel

    pts = np.asarray(points_xy, dtype=float)
    if len(pts) < 6:
        return None
    if hasattr(EllipseModel, "from_estimate"):  # scikit-image >= 0.26
        model = EllipseModel.from_estimate(pts)
        if not model:
            return None
        params = np.array([*model.center, *model.axis_lengths, model.theta], dtype=float)
    else:
        model = EllipseModel()
        if not model.estimate(pts):
            return None
        params = np.asarray(model.params, dtype=float)
    if not np.all(np.isfinite(params)) or min(params[2:4]) <= 0:
        return None
    return params[:2], params[2:4], float(params[4])


def slice_seed(points: np.ndarray, n_slices: int = 5) -> Ellipsoid | None:
    """An ellipsoid start from the ellipses of the ``n_slices`` best-populated z slices.

    The widest slice ellipse gives the x/y radii and orientation, its slice the centre z;
    the z radius starts as their mean (a sphere-like guess the 3D fit then refines).
    """
    pts = np.asarray(points, dtype=float)
    z = np.rint(pts[:, 2]).astype(int)
    values, counts = np.unique(z, return_counts=True)
    best = None
    for zz in values[np.argsort(counts)[::-1][:n_slices]]:
        fit = fit_ellipse(pts[z == zz, :2])
        if fit is None:
            continue
        centre, ab, theta = fit
        if best is None or ab.prod() > best[1].prod():
            best = (centre, ab, theta, float(zz))
    if best is None:
        return None
    centre, ab, theta, zz = best
    c, s = np.cos(theta), np.sin(theta)
    axes = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Ellipsoid(np.array([*centre, zz]), np.array([ab[0], ab[1], ab.mean()]), axes)


def moment_seed(points: np.ndarray) -> Ellipsoid:
    """An ellipsoid start from the points' moments (a thin shell has variance r^2 / 3)."""
    pts = np.asarray(points, dtype=float)
    centre = pts.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((pts - centre).T))
    return Ellipsoid(centre, np.sqrt(3 * np.maximum(evals, 1e-6)), evecs)


def fit_ellipsoid(points: np.ndarray, *, min_radius: float = 2.0,
                  max_radius: float | None = None) -> tuple[Ellipsoid, float] | None:
    """Fit an ellipsoid to ``(n, 3)`` surface points (voxels).

    Args:
        points: membrane points ``x, y, z`` (voxels).
        min_radius, max_radius: bounds on the semi-axes (voxels); ``max_radius`` defaults to
            the points' largest extent, which keeps a flat sheet from fitting as a huge
            ellipsoid whose piece happens to be flat.

    Returns:
        ``(ellipsoid, rms_distance_voxels)``, or None when fewer than 9 points are given.
    """
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    pts = np.asarray(points, dtype=float)
    if len(pts) < 9:
        return None
    extent = float(np.linalg.norm(pts.max(0) - pts.min(0)))
    hi = max(max_radius if max_radius is not None else extent, min_radius * 1.5)
    lo_c, hi_c = pts.min(0) - hi, pts.max(0) + hi

    def unpack(x: np.ndarray) -> Ellipsoid:
        return Ellipsoid(x[:3], np.exp(x[3:6]), Rotation.from_rotvec(x[6:9]).as_matrix())

    def residual(x: np.ndarray) -> np.ndarray:
        return unpack(x).distance(pts)

    best = None
    for seed in (slice_seed(pts), moment_seed(pts)):
        if seed is None:
            continue
        radii = np.clip(seed.radii, min_radius * 1.01, hi * 0.99)
        axes = seed.axes if np.linalg.det(seed.axes) > 0 else seed.axes * [1, 1, -1]
        x0 = np.concatenate([np.clip(seed.centre, lo_c + 1e-3, hi_c - 1e-3), np.log(radii),
                             Rotation.from_matrix(axes).as_rotvec()])
        lower = np.concatenate([lo_c, np.full(3, np.log(min_radius)), np.full(3, -np.inf)])
        upper = np.concatenate([hi_c, np.full(3, np.log(hi)), np.full(3, np.inf)])
        sol = least_squares(residual, x0, bounds=(lower, upper), loss="soft_l1", f_scale=2.0,
                            max_nfev=200)
        rms = float(np.sqrt(np.mean(residual(sol.x) ** 2)))
        if best is None or rms < best[1]:
            best = (unpack(sol.x), rms)
    return best
