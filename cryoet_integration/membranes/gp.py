"""Gaussian-process fits with thin-plate covariances (membrane paper 002, sections 4.3.2, 5.2).

Coordinates are ``(n, d)`` rows in voxels (``x, y`` in 2D, ``x, y, z`` in 3D). The
covariances are the thin-plate kernels of Williams & Fitzgibbon (2006), with ``R`` the
largest distance in the domain the process is evaluated on:

* 2D: ``k(r) = 2 r^2 log r - (1 + 2 log R) r^2 + R^2``
* 3D: ``k(r) = 2 r^3 - 3 R r^2 + R^3``

Both fall from ``R^d`` at ``r = 0`` to 0 at ``r = R``. The paper prints the 3D kernel as
``2 r^3 + 3 R r^2 + R^3``; with ``+`` the kernel grows with distance, its diagonal is its
smallest entry and posterior variances come out negative, so that sign is a misprint and the
kernel of the paper's own reference [17] (Williams & Fitzgibbon) is used.

An implicit surface is the zero level set of the posterior mean of ``f`` given ``f = 0`` on
surface points, ``f = -1`` at an interior anchor and ``f = +1`` at exterior anchors; the
posterior standard deviation is the uncertainty (eq. 4), and the paper's marginal likelihood
of lying on the surface (eq. 5) follows from both. A height field is the same process over
a sheet's principal plane with the heights as observations.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_CHUNK = 4096  # query points per block: keeps a block of K_21 at ~30 MB for 1000 points


def thin_plate_kernel(r: np.ndarray, big_r: float, dim: int) -> np.ndarray:
    """The thin-plate covariance of distances ``r`` (voxels) for ``dim`` 2 or 3."""
    r = np.asarray(r, dtype=float)
    if dim == 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            r2logr = np.where(r > 0, r * r * np.log(np.maximum(r, 1e-300)), 0.0)
        return 2 * r2logr - (1 + 2 * np.log(big_r)) * r * r + big_r ** 2
    if dim == 3:
        out = 2 * r - 3 * big_r
        out *= r
        out *= r
        out += big_r ** 3
        return out
    raise ValueError(f"thin-plate kernels are defined here for 2 or 3 dimensions, not {dim}")


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


@dataclasses.dataclass
class ThinPlateGP:
    """A zero-mean GP conditioned on values at points (see the module docstring).

    Attributes:
        points: ``(n, d)`` conditioning coordinates, voxels.
        values: ``(n,)`` observed values of ``f``.
        big_r: ``R`` of the kernel, voxels (the largest distance in the evaluated domain).
        noise: observation noise variance as a fraction of the prior variance (the
            regularisation the paper mentions for an ill-conditioned ``K_11``), one value
            or one per point.
        amplitude: prior standard deviation of ``f`` at a point: the kernel is scaled by
            ``amplitude^2 / R^d``, so the prior matches the values' scale (1 for the +-1
            anchors of an implicit surface; the heights' spread for a height field). The
            posterior mean does not depend on it, the standard deviation is proportional.
    """

    points: np.ndarray
    values: np.ndarray
    big_r: float
    noise: float | np.ndarray = 1e-4
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        import scipy.linalg

        self.points = np.asarray(self.points, dtype=float)
        self.values = np.asarray(self.values, dtype=float)
        self.dim = self.points.shape[1]
        self._scale = self.amplitude ** 2 / self.big_r ** self.dim
        self.prior_var = self.amplitude ** 2
        k11 = self._k(_distances(self.points, self.points))
        jitter = np.broadcast_to(np.asarray(self.noise, dtype=float), (len(k11),)) \
            * self.prior_var
        for _ in range(6):
            try:
                self._chol = scipy.linalg.cho_factor(
                    k11 + np.diag(jitter), lower=True, check_finite=False)
                break
            except np.linalg.LinAlgError:
                jitter *= 10
        else:
            raise np.linalg.LinAlgError("thin-plate covariance is not positive definite")
        self._alpha = scipy.linalg.cho_solve(self._chol, self.values, check_finite=False)

    def _k(self, r: np.ndarray) -> np.ndarray:
        return self._scale * thin_plate_kernel(r, self.big_r, self.dim)

    def mean(self, query: np.ndarray) -> np.ndarray:
        """Posterior mean (eq. 3) at ``(m, d)`` query coordinates."""
        query = np.asarray(query, dtype=float).reshape(-1, self.dim)
        out = np.empty(len(query))
        for s in range(0, len(query), _CHUNK):
            k21 = self._k(_distances(query[s:s + _CHUNK], self.points))
            out[s:s + _CHUNK] = k21 @ self._alpha
        return out

    def mean_and_std(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (eq. 3) and standard deviation (the square root of eq. 4's
        diagonal) at ``(m, d)`` query coordinates."""
        import scipy.linalg

        query = np.asarray(query, dtype=float).reshape(-1, self.dim)
        mean, std = np.empty(len(query)), np.empty(len(query))
        lower = self._chol[0]
        for s in range(0, len(query), _CHUNK):
            k21 = self._k(_distances(query[s:s + _CHUNK], self.points))
            mean[s:s + _CHUNK] = k21 @ self._alpha
            v = scipy.linalg.solve_triangular(lower, k21.T, lower=True, check_finite=False)
            std[s:s + _CHUNK] = np.sqrt(np.maximum(self.prior_var - (v * v).sum(0), 0.0))
        return mean, std

    def gradient(self, query: np.ndarray, step: float = 0.5) -> np.ndarray:
        """Central-difference gradient of the posterior mean, ``(m, d)``, per voxel."""
        query = np.asarray(query, dtype=float).reshape(-1, self.dim)
        grad = np.empty_like(query)
        for axis in range(self.dim):
            dq = np.zeros(self.dim)
            dq[axis] = step
            grad[:, axis] = (self.mean(query + dq) - self.mean(query - dq)) / (2 * step)
        return grad


def surface_likelihood(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The paper's eq. 5: the density of ``f = 0`` under the posterior ``N(mean, std^2)``."""
    var = np.maximum(np.asarray(std, dtype=float) ** 2, 1e-12)
    return np.exp(-np.asarray(mean) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` quasi-uniform unit vectors ``(n, 3)`` (golden-angle spiral)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    rho = np.sqrt(1 - z * z)
    return np.column_stack([rho * np.cos(phi), rho * np.sin(phi), z])


def farthest_points(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Indices of ``n`` well-separated rows of ``points`` (greedy farthest-point sampling)."""
    points = np.asarray(points, dtype=float)
    n = min(n, len(points))
    chosen = [start]
    dist = np.linalg.norm(points - points[start], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return np.asarray(chosen)


@dataclasses.dataclass
class ImplicitSurface:
    """A closed surface: the zero level set of a thin-plate GP (paper section 5.2).

    Attributes:
        gp: the process, ``f < 0`` inside.
        centroid: the interior anchor, voxels ``(d,)``.
        exterior: exterior anchors ``(k, d)``, voxels.
    """

    gp: ThinPlateGP
    centroid: np.ndarray
    exterior: np.ndarray

    def distance(self, query: np.ndarray) -> np.ndarray:
        """First-order distance ``|f| / |grad f|`` (voxels) of ``(m, d)`` points to the
        zero level set."""
        grad = np.linalg.norm(self.gp.gradient(query), axis=1)
        return np.abs(self.gp.mean(query)) / np.maximum(grad, 1e-9)


def fit_implicit_surface(points: np.ndarray, *, alpha: float = 1.2,
                         enclosing: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                         n_rays: int = 24, n_shell: int = 48, big_r: float | None = None,
                         noise: float = 1e-4, anchor_noise: float = 0.05,
                         centroid: np.ndarray | None = None
                         ) -> ImplicitSurface:
    """Fit a closed implicit surface through surface points (paper sections 4.3.2 and 5.2).

    Args:
        points: ``(n, d)`` points on the membrane (voxels, ``x, y[, z]``), already thinned to
            a tractable number (a few hundred to ~1500).
        alpha: exterior anchors lie at ``centroid + alpha (p - centroid)`` for ``n_rays``
            well-separated points ``p`` (the paper's alpha = 1.2).
        enclosing: optional ``(centre, radii, axes)`` of an ellipse/ellipsoid fitted to the
            points (axes as columns); ``n_shell`` exterior anchors are then also spread
            quasi-uniformly over it scaled by ``alpha`` (the paper's other choice), which
            closes the surface across gaps where no point gives a ray; as many interior
            anchors go on it scaled by ``2 - alpha``.
        big_r: kernel ``R`` (voxels); default: the diameter of the anchors' bounding box,
            so every distance in the fitted region is below ``R``.
        noise: noise variance of the surface points (see :class:`ThinPlateGP`).
        anchor_noise: noise variance of the anchors (their values are guesses).
        centroid: interior anchor (default: the mean of ``points``).

    Returns:
        The surface; ``f`` is -1 at the centroid (and interior anchors), 0 on the points
        and +1 at the exterior anchors.
    """
    pts = np.asarray(points, dtype=float)
    dim = pts.shape[1]
    c = pts.mean(axis=0) if centroid is None else np.asarray(centroid, dtype=float)
    rays = pts[farthest_points(pts, n_rays)]
    exterior = [c + alpha * (rays - c)]
    if enclosing is not None:
        centre, radii, axes = (np.asarray(a, dtype=float) for a in enclosing)
        if dim == 3:
            unit = fibonacci_sphere(n_shell)
        else:
            t = np.linspace(0, 2 * np.pi, n_shell, endpoint=False)
            unit = np.column_stack([np.cos(t), np.sin(t)])
        exterior.append(centre + alpha * (unit * radii) @ axes.T)
    interior = [c[None]]
    if enclosing is not None:
        # mirror anchors inside the fitted ellipsoid (2 - alpha times it) balance the
        # exterior ones, as the paper's 2D figures place anchors on both sides
        interior.append(centre + (2 - alpha) * (unit * radii) @ axes.T)
    ext, inner = np.concatenate(exterior), np.concatenate(interior)
    every = np.concatenate([pts, inner, ext])
    if big_r is None:
        big_r = float(np.linalg.norm(every.max(0) - every.min(0))) * 1.05 + 1.0
    values = np.concatenate([np.zeros(len(pts)), -np.ones(len(inner)), np.ones(len(ext))])
    # anchors are prior guesses, not data: looser, so the posterior stays uncertain where
    # only anchors constrain the surface (the gaps)
    noises = np.concatenate([np.full(len(pts), noise),
                             np.full(len(inner) + len(ext), anchor_noise)])
    return ImplicitSurface(ThinPlateGP(every, values, big_r, noises), c, ext)
