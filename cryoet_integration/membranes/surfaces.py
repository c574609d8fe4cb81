"""Fit one membrane instance: ellipsoid, closed GP implicit surface or open GP height field.

Arrays are ``[z, y, x]``; points are rows ``x, y, z`` in voxels; residuals, thicknesses and
uncertainties are voxels. Each instance is fitted on a box of the tomogram grid around it
(its voxels, plus for closed models the whole fitted ellipsoid and its anchors, so a vesicle
whose top and bottom the missing wedge removed is closed across them). The model is chosen
by the RMS distance of held-out points (every fifth thinned point) to each fitted surface;
closed models are only tried on points that surround their centroid.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .ellipsoid import Ellipsoid, fit_ellipsoid
from .gp import ImplicitSurface, ThinPlateGP, fit_implicit_surface

MAX_GP_POINTS = 700  # keeps each fit, with its uncertainty, at a few seconds on one core
MAX_SHEET_POINTS = 1500  # a height field is a 2D process on a 2D grid: it affords more
COARSE_POINTS = 24000  # coarse grid on which the GP mean is evaluated, then interpolated
STD_POINTS = 6000  # coarser grid for the posterior standard deviation (the costly part)
# A closed model needs points around its centroid: the length of the mean unit vector from
# the centroid to the points is ~0 for a vesicle or a band of one and ~1 for a cap or sheet.
SURROUND_MAX = 0.55
ELLIPSOID_PREFERENCE = 1.15  # the parametric fit wins unless the GP is this much closer


@dataclasses.dataclass
class InstanceFit:
    """The fitted surface of one instance on its box.

    Attributes:
        model: ``"ellipsoid"``, ``"implicit"`` (closed GP) or ``"sheet"`` (open GP height
            field).
        residuals: held-out RMS distance (voxels) of every model tried.
        offset: ``(z0, y0, x0)`` of the box in the tomogram.
        field: ``[z, y, x]`` float32 on the box: negative inside (closed) or below (sheet);
            its zero level set is the membrane mid-surface.
        domain: ``[z, y, x]`` bool on the box: where the surface is defined (a sheet's
            footprint; everywhere for closed models).
        std: ``[z, y, x]`` float32 on the box: posterior standard deviation of the surface
            position, voxels (GP std of ``f`` over ``|grad f|``, or of the height).
        points: the thinned points ``(n, 3)`` x, y, z voxels.
        closed: the model is closed and its surface does not reach the tomogram's border.
        ellipsoid: the fitted ellipsoid (voxels), when one was fitted.
    """

    model: str
    residuals: dict[str, float]
    offset: tuple[int, int, int]
    field: np.ndarray
    domain: np.ndarray
    std: np.ndarray
    points: np.ndarray
    closed: bool
    ellipsoid: Ellipsoid | None = None

    @property
    def residual(self) -> float:
        """Held-out RMS distance (voxels) of the chosen model."""
        return self.residuals[self.model]


def thin_points(coords_xyz: np.ndarray, cell: float, max_points: int = MAX_GP_POINTS,
                seed: int = 0) -> np.ndarray:
    """Average points ``(n, 3)`` per cubic cell of ``cell`` voxels (so the points of a thick
    mask fall near its mid-surface), then keep at most ``max_points`` of them at random."""
    keys = np.floor(coords_xyz / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inverse, coords_xyz)
    pts = sums / counts[:, None]
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
    return pts


def surround(points: np.ndarray, centre: np.ndarray) -> float:
    """Length of the mean unit vector from ``centre`` to ``points`` (0 = all around)."""
    d = points - centre
    u = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return float(np.linalg.norm(u.mean(0)))


def principal_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and axes (columns: the two in-plane axes, then the normal) of ``(n, 3)``."""
    c = points.mean(0)
    _, evecs = np.linalg.eigh(np.cov((points - c).T))
    return c, evecs[:, ::-1]


@dataclasses.dataclass
class HeightField:
    """An open sheet ``w = h(u, v)`` over its principal plane (voxels), a 2D thin-plate GP."""

    centroid: np.ndarray
    frame: np.ndarray
    gp: ThinPlateGP

    def local(self, p: np.ndarray) -> np.ndarray:
        """``(..., 3)`` points x, y, z -> ``(..., 3)`` u, v, w."""
        return (np.asarray(p, dtype=float) - self.centroid) @ self.frame

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Distance along the plane normal (voxels) of ``(m, 3)`` points to the sheet."""
        uvw = self.local(p)
        return np.abs(uvw[:, 2] - self.gp.mean(uvw[:, :2]))


def fit_height_field(points: np.ndarray, noise: float = 1e-3) -> HeightField:
    """Fit an open sheet through ``(n, 3)`` points (voxels) as a GP height field over their
    principal plane with the paper's 2D thin-plate kernel."""
    c, frame = principal_frame(points)
    uvw = (points - c) @ frame
    span = float(np.linalg.norm(uvw[:, :2].max(0) - uvw[:, :2].min(0)))
    amplitude = max(1.0, float(np.std(uvw[:, 2])))
    return HeightField(c, frame, ThinPlateGP(uvw[:, :2], uvw[:, 2], 1.5 * span + 2.0, noise,
                                             amplitude))


def _grid(lo: np.ndarray, hi: np.ndarray, n_points: int) -> tuple[list[np.ndarray], float]:
    """Axes ``[z, y, x]`` of a grid over the box ``lo..hi`` (z, y, x voxels) with about
    ``n_points`` points, and its step (voxels, at least 1)."""
    size = (hi - lo).astype(float)
    step = max(1.0, float((np.prod(size) / n_points) ** (1 / 3)))
    axes = [np.arange(lo[i], hi[i] + step * 0.5, step)[: max(2, int(np.ceil(size[i] / step)) + 1)]
            for i in range(3)]
    return [np.clip(a, lo[i], hi[i]) for i, a in enumerate(axes)], step


def _interpolate(axes: list[np.ndarray], values: np.ndarray, lo: np.ndarray,
                 shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear interpolation of coarse ``values`` on ``axes`` onto the full box."""
    from scipy.interpolate import RegularGridInterpolator

    interp = RegularGridInterpolator(axes, values, bounds_error=False, fill_value=None)
    out = np.empty(shape, dtype=np.float32)
    zz = np.arange(shape[0]) + lo[0]
    yy, xx = np.meshgrid(np.arange(shape[1]) + lo[1], np.arange(shape[2]) + lo[2],
                         indexing="ij")
    for i, z in enumerate(zz):
        q = np.column_stack([np.full(yy.size, z), yy.ravel(), xx.ravel()])
        out[i] = interp(q).reshape(shape[1:])
    return out


def _zyx_points(axes: list[np.ndarray]) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    return np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])


def _box(points_lo: np.ndarray, points_hi: np.ndarray, shape: tuple[int, int, int],
         margin: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """Integer box ``(lo, hi)`` z, y, x (inclusive) of x, y, z extents plus margin, clipped
    to the tomogram; and whether clipping cut it."""
    lo = np.floor(points_lo[::-1] - margin).astype(int)
    hi = np.ceil(points_hi[::-1] + margin).astype(int)
    top = np.asarray(shape) - 1
    cut = bool((lo < 0).any() or (hi > top).any())
    return np.maximum(lo, 0), np.minimum(hi, top), cut


def fit_instance(coords_xyz: np.ndarray, shape: tuple[int, int, int], thickness: float,
                 *, alpha: float = 1.2, models: tuple[str, ...] = ("ellipsoid", "implicit",
                                                                    "sheet")) -> InstanceFit:
    """Fit the surface of one instance.

    Args:
        coords_xyz: ``(n, 3)`` voxel coordinates x, y, z of the instance's voxels.
        shape: the tomogram's shape ``(z, y, x)``.
        thickness: membrane thickness (voxels); sets the thinning cell.
        alpha: exterior anchor factor of the implicit surface (the paper's 1.2).
        models: the models to choose from (an ellipsoid is fitted for the implicit
            surface's anchors in any case).
    """
    pts = thin_points(np.asarray(coords_xyz, dtype=float), max(2.0, 0.8 * thickness))
    held = np.zeros(len(pts), dtype=bool)
    held[::5] = True
    if len(pts) < 15:
        held[:] = False
    fit_pts, val_pts = pts[~held], pts[held] if held.any() else pts
    residuals: dict[str, float] = {}
    fits: dict[str, object] = {}
    extent = float(np.linalg.norm(pts.max(0) - pts.min(0)))
    around = surround(pts, pts.mean(0)) <= SURROUND_MAX
    ellipsoid = None
    if around and ("ellipsoid" in models or "implicit" in models):
        got = fit_ellipsoid(fit_pts, min_radius=max(1.0, thickness), max_radius=extent)
        if got is not None:
            ellipsoid = got[0]
            if "ellipsoid" in models:
                residuals["ellipsoid"] = float(np.sqrt(np.mean(ellipsoid.distance(val_pts) ** 2)))
                fits["ellipsoid"] = ellipsoid
    if around and "implicit" in models:
        enclosing = None
        centre = pts.mean(0)
        if ellipsoid is not None:
            enclosing = (ellipsoid.centre, ellipsoid.radii, ellipsoid.axes)
            if ellipsoid.level(centre[None])[0] >= -0.3:
                centre = ellipsoid.centre  # the points' centroid is not well inside
        surf = fit_implicit_surface(fit_pts, alpha=alpha, enclosing=enclosing, centroid=centre)
        residuals["implicit"] = float(np.sqrt(np.mean(surf.distance(val_pts) ** 2)))
        fits["implicit"] = surf
    if "sheet" in models and len(fit_pts) >= 3:
        sheet = fit_height_field(fit_pts)
        residuals["sheet"] = float(np.sqrt(np.mean(sheet.distance(val_pts) ** 2)))
        fits["sheet"] = sheet
    if not residuals:
        raise ValueError("no surface model could be fitted to this instance")
    model = min(residuals, key=residuals.get)
    if (model == "implicit" and "ellipsoid" in residuals
            and residuals["ellipsoid"] <= ELLIPSOID_PREFERENCE * residuals["implicit"]):
        model = "ellipsoid"
    margin = 2.0 + thickness
    if model == "sheet":
        # the chosen sheet is refitted on more points: a 2D process affords them
        many = thin_points(np.asarray(coords_xyz, dtype=float), max(2.0, 0.8 * thickness),
                           MAX_SHEET_POINTS)
        return _sheet_field(fit_height_field(many), many, shape, thickness, residuals,
                            ellipsoid, margin)
    return _closed_field(model, fits, pts, shape, residuals, ellipsoid, margin, alpha)


def _closed_field(model: str, fits: dict, pts: np.ndarray, shape: tuple[int, int, int],
                  residuals: dict, ellipsoid: Ellipsoid | None, margin: float,
                  alpha: float) -> InstanceFit:
    surf = fits.get("implicit")
    lo_xyz, hi_xyz = pts.min(0), pts.max(0)
    if ellipsoid is not None:
        reach = np.sqrt(((ellipsoid.axes * ellipsoid.radii) ** 2).sum(1))
        lo_xyz = np.minimum(lo_xyz, ellipsoid.centre - reach)
        hi_xyz = np.maximum(hi_xyz, ellipsoid.centre + reach)
    lo, hi, cut = _box(lo_xyz, hi_xyz, shape, margin)
    box_shape = tuple(int(s) for s in hi - lo + 1)
    if surf is None:  # no GP: the ellipsoid alone, with no uncertainty model
        field = _ellipsoid_field(ellipsoid, lo, box_shape)
        std = np.zeros(box_shape, dtype=np.float32)
    else:
        axes, _ = _grid(lo.astype(float), hi.astype(float), COARSE_POINTS)
        mean = surf.gp.mean(_zyx_points(axes)).reshape([len(a) for a in axes])
        saxes, _ = _grid(lo.astype(float), hi.astype(float), STD_POINTS)
        smean, sstd = surf.gp.mean_and_std(_zyx_points(saxes))
        sshape = [len(a) for a in saxes]
        grads = np.gradient(smean.reshape(sshape), *saxes)
        gnorm = np.sqrt(sum(g * g for g in grads))
        near_zero = np.abs(smean.reshape(sshape)) <= np.percentile(np.abs(smean), 5)
        # the std of f over the typical slope of f across its zero set: how far the zero
        # level set may move, in voxels (one slope per membrane: locally the slope of a mean
        # fitted to a thick band can vanish)
        slope = max(float(np.median(gnorm[near_zero])), 1e-6)
        pos_std = sstd.reshape(sshape) / slope
        std = _interpolate(saxes, pos_std, lo, box_shape)
        field = (_ellipsoid_field(ellipsoid, lo, box_shape) if model == "ellipsoid"
                 else _interpolate(axes, mean, lo, box_shape))
    if surf is not None and model == "implicit":
        # Far from the data the thin-plate mean can bend back through zero; beyond the
        # exterior anchors there is no membrane.
        outside = _outside_anchors(surf, lo, box_shape, alpha)
        field = np.where(outside, np.maximum(field, 1e-3), field)
    closed = not cut or not _touches_border(field, lo, hi, shape)
    return InstanceFit(model, residuals, tuple(int(v) for v in lo), field.astype(np.float32),
                       np.ones(box_shape, dtype=bool), std.astype(np.float32), pts,
                       closed=closed, ellipsoid=ellipsoid)


def _touches_border(field: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    shape: tuple[int, int, int]) -> bool:
    """Whether the surface (``field <= 0`` somewhere on a box face) reaches a face of the
    box that is the tomogram's border: the tomogram cuts it open."""
    for axis in range(3):
        for at_border, index in ((lo[axis] == 0, 0), (hi[axis] == shape[axis] - 1, -1)):
            if at_border and (np.take(field, index, axis=axis) <= 0).any():
                return True
    return False


def _outside_anchors(surf: ImplicitSurface, lo: np.ndarray, shape: tuple[int, ...],
                     alpha: float) -> np.ndarray:
    """Box voxels farther from the centroid than the farthest exterior anchor in their
    direction would allow (a generous radial bound: 1.25 times the anchor radius)."""
    zz, yy, xx = np.meshgrid(*(np.arange(n) + lo[i] for i, n in enumerate(shape)),
                             indexing="ij")
    d = np.stack([xx, yy, zz], axis=-1) - surf.centroid
    r = np.linalg.norm(d, axis=-1)
    return r > 1.25 * float(np.linalg.norm(surf.exterior - surf.centroid, axis=1).max())


def _ellipsoid_field(ellipsoid: Ellipsoid, lo: np.ndarray, shape: tuple[int, ...]
                     ) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*(np.arange(n) + lo[i] for i, n in enumerate(shape)),
                             indexing="ij")
    return ellipsoid.distance(np.stack([xx, yy, zz], axis=-1)).astype(np.float32)


def _sheet_field(sheet: HeightField, pts: np.ndarray, shape: tuple[int, int, int],
                 thickness: float, residuals: dict, ellipsoid: Ellipsoid | None,
                 margin: float) -> InstanceFit:
    """Signed height ``w - h(u, v)`` on the box around the sheet, defined over the sheet's
    footprint: the convex hull of its points in the plane, which completes it across the
    gaps (a missing wedge, noise) inside its outline."""
    from scipy.interpolate import RegularGridInterpolator
    from scipy.spatial import Delaunay

    uvw = sheet.local(pts)
    uv = uvw[:, :2]
    uv_lo, uv_hi = uv.min(0) - 1, uv.max(0) + 1
    step = max(1.0, float(np.sqrt(np.prod(uv_hi - uv_lo) / 2500)))
    gu = np.arange(uv_lo[0], uv_hi[0] + step, step)
    gv = np.arange(uv_lo[1], uv_hi[1] + step, step)
    uu, vv = np.meshgrid(gu, gv, indexing="ij")
    h, hstd = sheet.gp.mean_and_std(np.column_stack([uu.ravel(), vv.ravel()]))
    h_i = RegularGridInterpolator((gu, gv), h.reshape(uu.shape), bounds_error=False,
                                  fill_value=None)
    s_i = RegularGridInterpolator((gu, gv), hstd.reshape(uu.shape), bounds_error=False,
                                  fill_value=None)
    corners = np.array([[a, b, c] for a in (uv_lo[0], uv_hi[0]) for b in (uv_lo[1], uv_hi[1])
                        for c in (h.min(), h.max())])
    world = corners @ sheet.frame.T + sheet.centroid
    lo, hi, _ = _box(world.min(0), world.max(0), shape, margin)
    box_shape = tuple(int(s) for s in hi - lo + 1)
    hull = Delaunay(uv)
    field = np.empty(box_shape, dtype=np.float32)
    std = np.empty(box_shape, dtype=np.float32)
    domain = np.empty(box_shape, dtype=bool)
    yy, xx = np.meshgrid(np.arange(box_shape[1]) + lo[1], np.arange(box_shape[2]) + lo[2],
                         indexing="ij")
    for i in range(box_shape[0]):
        p = np.column_stack([xx.ravel(), yy.ravel(), np.full(xx.size, lo[0] + i)])
        q = sheet.local(p)
        field[i] = (q[:, 2] - h_i(q[:, :2])).reshape(box_shape[1:])
        std[i] = s_i(q[:, :2]).reshape(box_shape[1:])
        domain[i] = (hull.find_simplex(q[:, :2]) >= 0).reshape(box_shape[1:])
    return InstanceFit("sheet", residuals, tuple(int(v) for v in lo), field, domain, std, pts,
                       closed=False, ellipsoid=ellipsoid)


def mesh_distance(fit: InstanceFit, vertices_xyz: np.ndarray, reach: float
                  ) -> np.ndarray:
    """Euclidean distance (voxels) of the box voxels ``[z, y, x]`` within ``reach`` voxels of
    the zero set to the nearest vertex of the surface's mesh (``(n, 3)`` x, y, z voxels,
    about a voxel apart, so within a fraction of a voxel of the distance to the surface);
    inf elsewhere."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    inner, outer = zero_set(fit)
    dist = np.full(fit.field.shape, np.inf, dtype=np.float32)
    if not inner.any() or len(vertices_xyz) == 0:
        return dist
    near = ndimage.distance_transform_edt(~(inner | outer)) <= reach
    idx = np.nonzero(near)
    xyz = np.column_stack(idx)[:, ::-1] + np.asarray(fit.offset)[::-1]
    dist[idx] = cKDTree(vertices_xyz).query(xyz)[0]
    return dist


def mid_surface_distance(dist: np.ndarray, fit: InstanceFit, coords_xyz: np.ndarray
                         ) -> np.ndarray:
    """Signed distances (voxels, negative inside or below) of voxel coordinates ``(n, 3)``
    x, y, z inside the box, read from a box distance map ``dist`` (:func:`mesh_distance`)
    and the sign of the fitted field; the finite ones."""
    idx = tuple((np.rint(coords_xyz[:, ::-1]).astype(int) - fit.offset).T)
    d = dist[idx] * np.where(fit.field[idx] <= 0, -1.0, 1.0)
    return d[np.isfinite(d)]


def band_thickness(signed: np.ndarray) -> float:
    """Thickness (voxels) of a band from its voxels' signed distances to its mid-surface:
    uniform on ``[-t/2, t/2]`` has variance ``t^2 / 12``. The variance (not the mean
    distance) keeps a fit offset from the band's middle from thickening it; the 2.5 % tails
    (protrusions, misfit) are left out, and the cut is corrected for them."""
    d = np.asarray(signed, dtype=float)
    if d.size < 2:
        return 0.0
    lo, hi = np.percentile(d, [2.5, 97.5])
    d = d[(d >= lo) & (d <= hi)]
    return float(np.sqrt(12 * d.var()) / 0.95)


def zero_set(fit: InstanceFit) -> tuple[np.ndarray, np.ndarray]:
    """The fitted zero level set on the box ``[z, y, x]``, thinned to one voxel on either
    side: ``(inner, outer)`` bool layers of the voxels with a 6-neighbour across the sign
    change (``field <= 0`` and ``> 0``), within the surface's domain."""
    neg = fit.field <= 0
    # edge padding: the box faces are not sign changes
    padded = np.pad(neg, 1, mode="edge")
    inner = np.zeros_like(neg)
    outer = np.zeros_like(neg)
    n = neg.shape
    for axis in range(3):
        for shift in (0, 2):
            idx = [slice(1, n[0] + 1), slice(1, n[1] + 1), slice(1, n[2] + 1)]
            idx[axis] = slice(shift, shift + n[axis])
            other = padded[tuple(idx)]
            inner |= neg & ~other
            outer |= ~neg & other
    return inner & fit.domain, outer & fit.domain


def shell(dist: np.ndarray, thickness: float) -> np.ndarray:
    """The fitted membrane on the box ``[z, y, x]`` (bool): the zero set thinned to one
    voxel either side and dilated to a band ``thickness`` voxels across, i.e. the voxels
    whose distance ``dist`` (:func:`mesh_distance`) to the surface is at most half of it."""
    return dist <= thickness / 2 + 1e-6
