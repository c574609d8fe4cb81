"""Front-to-back compositing along view rays by shear-warp factorisation (Lacroute & Levoy).

The view rays are sampled where they cross the volume slices perpendicular to the axis most
parallel to the view. In each slice the samples form an axis-aligned scaled and shifted grid
(a shift for orthographic views, also a scale for perspective ones), so each slice is resampled
bilinearly in 2D, separably, and composited into an intermediate image on a base plane, at one
ray per voxel (times ``detail``). A final 2D warp maps the base plane to the output pixels, which
is where images larger than the volume are upsampled. Opacity is corrected for the sample
spacing along each ray, ``1 - (1 - alpha) ** step`` with the step in voxels.

Two backends compute the same thing: numpy (always available) and torch (``grid_sample``).
"""

from __future__ import annotations

import numpy as np

from .camera import ViewGeometry

MODES = ("composite", "max")
_EPS = 1e-6


class OrientedStack:
    """Per-voxel channels ``[C, z, y, x]`` with cached copies laid out slice-major per axis.

    For a principal axis ``pa`` (0 = x, 1 = y, 2 = z) the copy is ``[n_pa, C, n_a2, n_a1]``
    where ``a1 < a2`` are the other two axes (``a1`` varies along image columns).
    """

    def __init__(self, data: np.ndarray):
        if data.ndim != 4 or min(data.shape[1:]) < 2:
            raise ValueError(f"need channels [C, z, y, x] with every axis >= 2, got {data.shape}")
        self.data = np.asarray(data, dtype=np.float32)
        self._cache: dict[int, np.ndarray] = {}

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[1:])  # type: ignore[return-value]

    def along(self, pa: int) -> np.ndarray:
        if pa not in self._cache:
            a1, a2 = [c for c in (0, 1, 2) if c != pa]
            axes = (3 - pa, 0, 3 - a2, 3 - a1)
            self._cache[pa] = np.ascontiguousarray(self.data.transpose(axes))
        return self._cache[pa]


class _Plan:
    """Shear-warp parameters of one view: base plane, intermediate grid, per-slice maps."""

    def __init__(self, geom: ViewGeometry, shape_zyx: tuple[int, int, int], detail: float):
        d = geom.main_direction()
        self.pa = pa = int(np.argmax(np.abs(d)))
        self.a1, self.a2 = [c for c in (0, 1, 2) if c != pa]
        sizes = np.array(shape_zyx[::-1], dtype=np.float64)  # (nx, ny, nz)
        self.n = int(sizes[pa])
        self.geom, self.d = geom, d
        self.k0 = float(geom.centre[pa])
        self.h = 1.0 / float(detail)
        corners = np.array([[cx, cy, cz] for cx in (-1.0, sizes[0]) for cy in (-1.0, sizes[1])
                            for cz in (-1.0, sizes[2])])
        lo, hi = self._bounds(self.base_of_points(corners))
        img = self._image_corner_bases()
        if img is not None:
            ilo, ihi = self._bounds(img)
            lo, hi = np.maximum(lo, ilo - self.h), np.minimum(hi, ihi + self.h)
        self.empty = bool(np.any(hi <= lo))
        self.lo = lo
        count = np.floor((hi - lo) / self.h).astype(int) + 1 if not self.empty else np.ones(2, int)
        self.x1 = lo[0] + self.h * np.arange(count[0])
        self.x2 = lo[1] + self.h * np.arange(count[1])
        self.order = np.arange(self.n) if d[pa] > 0 else np.arange(self.n)[::-1]

    @staticmethod
    def _bounds(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return xy.min(axis=0), xy.max(axis=0)

    def base_of_points(self, p: np.ndarray) -> np.ndarray:
        """Base-plane coordinates ``(X1, X2)`` of points ``(..., 3)`` along their view rays."""
        pa, a1, a2, e = self.pa, self.a1, self.a2, self.geom.eye
        if e is None:
            t = (self.k0 - p[..., pa]) / self.d[pa]
            return np.stack([p[..., a1] + t * self.d[a1], p[..., a2] + t * self.d[a2]], axis=-1)
        s = (self.k0 - e[pa]) / (p[..., pa] - e[pa])
        return np.stack([e[a1] + (p[..., a1] - e[a1]) * s, e[a2] + (p[..., a2] - e[a2]) * s],
                        axis=-1)

    def base_of_rays(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        t = (self.k0 - origins[..., self.pa]) / dirs[..., self.pa]
        return np.stack([origins[..., self.a1] + t * dirs[..., self.a1],
                         origins[..., self.a2] + t * dirs[..., self.a2]], axis=-1)

    def _image_corner_bases(self) -> np.ndarray | None:
        g = self.geom
        cols = np.array([-0.5, g.width - 0.5, -0.5, g.width - 0.5])
        rows = np.array([-0.5, -0.5, g.height - 0.5, g.height - 0.5])
        o, dirs = g.rays(cols, rows)
        if np.min(np.abs(dirs[:, self.pa])) < 0.05:  # near-grazing corner rays: no crop
            return None
        return self.base_of_rays(o, dirs)

    def slice_maps(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column and row positions (voxels in each slice) of the grid, ``[K, N1]``, ``[K, N2]``."""
        e, ks = self.geom.eye, ks.astype(np.float64)[:, None]
        if e is None:
            q1 = self.x1[None, :] + (ks - self.k0) * self.d[self.a1] / self.d[self.pa]
            q2 = self.x2[None, :] + (ks - self.k0) * self.d[self.a2] / self.d[self.pa]
            return q1, q2
        s = (ks - e[self.pa]) / (self.k0 - e[self.pa])
        return (s * self.x1[None, :] + e[self.a1] * (1 - s),
                s * self.x2[None, :] + e[self.a2] * (1 - s))

    def step(self) -> np.ndarray:
        """Distance between consecutive slice samples along each grid ray, voxels ``[N2, N1]``."""
        if self.geom.eye is None:
            return np.full((1, 1), 1.0 / abs(self.d[self.pa]))
        e = self.geom.eye
        b = np.zeros((len(self.x2), len(self.x1), 3))
        b[..., self.a1] = self.x1[None, :]
        b[..., self.a2] = self.x2[:, None]
        b[..., self.pa] = self.k0
        return np.linalg.norm(b - e, axis=-1) / abs(self.k0 - e[self.pa])

    def output_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Fractional intermediate-grid (column, row) of every output pixel, ``[H, W]`` each."""
        g = self.geom
        rows, cols = np.mgrid[0:g.height, 0:g.width]
        base = self.base_of_rays(*g.rays(cols, rows))
        return (base[..., 0] - self.lo[0]) / self.h, (base[..., 1] - self.lo[1]) / self.h


def _axis_weights(q: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    i0 = np.floor(q).astype(np.int64)
    f = (q - i0).astype(np.float32)
    w0 = (1 - f) * ((i0 >= 0) & (i0 < n))
    w1 = f * ((i0 + 1 >= 0) & (i0 + 1 < n))
    return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), w0, w1


def _resample_numpy(slab: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Bilinear samples ``[K, C, N2, N1]`` of slices ``[K, C, n2, n1]`` (zero outside)."""
    i0, i1, w0, w1 = _axis_weights(q1, slab.shape[3])
    cols = (np.take_along_axis(slab, i0[:, None, None, :], axis=3) * w0[:, None, None, :]
            + np.take_along_axis(slab, i1[:, None, None, :], axis=3) * w1[:, None, None, :])
    j0, j1, v0, v1 = _axis_weights(q2, slab.shape[2])
    return (np.take_along_axis(cols, j0[:, None, :, None], axis=2) * v0[:, None, :, None]
            + np.take_along_axis(cols, j1[:, None, :, None], axis=2) * v1[:, None, :, None])


def _substeps(samples, previous, substeps: int):
    """Samples at ``substeps`` evenly spaced points per slice interval along each ray, by
    linear interpolation between consecutive slice crossings (``previous`` is the last
    crossing of the former chunk); works for numpy arrays and torch tensors alike."""
    if substeps == 1:
        return samples
    lead = samples[:1] * 0 if previous is None else previous[None]
    pairs_a = lead if len(samples) == 1 else _cat(lead, samples[:-1])
    parts = [pairs_a + (samples - pairs_a) * (j / substeps) for j in range(1, substeps + 1)]
    stacked = _stack1(parts)
    return stacked.reshape((-1,) + tuple(samples.shape[1:]))


def _cat(a, b):
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b], axis=0)
    import torch

    return torch.cat([a, b], dim=0)


def _stack1(parts):
    if isinstance(parts[0], np.ndarray):
        return np.stack(parts, axis=1)
    import torch

    return torch.stack(parts, dim=1)


def _march_numpy(slabs, plan: _Plan, mode: str, chunk: int, channels: int, substeps: int):
    n1, n2 = len(plan.x1), len(plan.x2)
    step = plan.step().astype(np.float32) / np.float32(substeps)
    acc = np.zeros((channels - 1 if mode == "composite" else channels, n2, n1), np.float32)
    trans = np.ones((n2, n1), np.float32)
    previous = None
    for start in range(0, plan.n, chunk):
        ks = plan.order[start:start + chunk]
        q1, q2 = plan.slice_maps(ks)
        crossings = _resample_numpy(slabs[ks], q1, q2)
        samples = _substeps(crossings, previous, substeps)
        previous = crossings[-1]
        if mode == "max":
            np.maximum(acc, samples.max(axis=0), out=acc)
            continue
        alpha = np.clip(samples[:, -1], 0.0, 1.0 - _EPS)
        corrected = -np.expm1(step * np.log1p(-alpha))
        color = samples[:, :-1] * (corrected / np.maximum(alpha, _EPS))[:, None]
        through = np.cumprod(1.0 - corrected, axis=0)
        before = np.concatenate([np.ones_like(through[:1]), through[:-1]], axis=0) * trans
        acc += np.einsum("khw,kchw->chw", before, color)
        trans = trans * through[-1]
        if float(trans.max()) < 1.0 / 1024:
            break
    coverage = 1.0 - trans if mode == "composite" else np.ones_like(trans)
    return np.concatenate([acc, coverage[None]], axis=0)


def _march_torch(slabs, plan: _Plan, mode: str, chunk: int, channels: int, substeps: int):
    import torch
    import torch.nn.functional as F

    n1, n2 = len(plan.x1), len(plan.x2)
    src_n1, src_n2 = slabs.shape[3], slabs.shape[2]
    step = torch.from_numpy(plan.step().astype(np.float32) / np.float32(substeps))
    acc = torch.zeros((channels - 1 if mode == "composite" else channels, n2, n1))
    trans = torch.ones((n2, n1))
    previous = None
    with torch.no_grad():
        for start in range(0, plan.n, chunk):
            ks = plan.order[start:start + chunk]
            q1, q2 = plan.slice_maps(ks)
            gx = torch.from_numpy((2.0 * q1 / (src_n1 - 1) - 1.0).astype(np.float32))
            gy = torch.from_numpy((2.0 * q2 / (src_n2 - 1) - 1.0).astype(np.float32))
            grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
            crossings = F.grid_sample(torch.from_numpy(slabs[ks]), grid, mode="bilinear",
                                      padding_mode="zeros", align_corners=True)
            samples = _substeps(crossings, previous, substeps)
            previous = crossings[-1]
            if mode == "max":
                acc = torch.maximum(acc, samples.amax(dim=0))
                continue
            alpha = samples[:, -1].clamp(0.0, 1.0 - _EPS)
            corrected = -torch.expm1(step * torch.log1p(-alpha))
            color = samples[:, :-1] * (corrected / alpha.clamp_min(_EPS))[:, None]
            through = torch.cumprod(1.0 - corrected, dim=0)
            before = torch.cat([torch.ones_like(through[:1]), through[:-1]], dim=0) * trans
            acc += torch.einsum("khw,kchw->chw", before, color)
            trans = trans * through[-1]
            if float(trans.max()) < 1.0 / 1024:
                break
    coverage = 1.0 - trans if mode == "composite" else torch.ones_like(trans)
    return torch.cat([acc, coverage[None]], dim=0).numpy()


def _warp(image: np.ndarray, cols: np.ndarray, rows: np.ndarray, backend: str) -> np.ndarray:
    """Bilinear samples ``[C, H, W]`` of ``image [C, N2, N1]`` at fractional ``(cols, rows)``."""
    if backend == "torch":
        import torch
        import torch.nn.functional as F

        n2, n1 = image.shape[1:]
        gx = 2.0 * cols / max(n1 - 1, 1) - 1.0
        gy = 2.0 * rows / max(n2 - 1, 1) - 1.0
        grid = torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))[None]
        with torch.no_grad():
            out = F.grid_sample(torch.from_numpy(np.ascontiguousarray(image))[None], grid,
                                mode="bilinear", padding_mode="zeros", align_corners=True)
        return out[0].numpy()
    from scipy import ndimage

    coords = np.stack([rows, cols]).astype(np.float32)
    return np.stack([ndimage.map_coordinates(ch, coords, order=1, mode="grid-constant",
                                             cval=0.0)
                     for ch in image])


def resolve_backend(backend: str) -> str:
    """``"auto"`` picks torch when importable, else numpy; explicit names are checked."""
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be auto, numpy or torch, got '{backend}'")
    if backend == "numpy":
        return backend
    try:
        import torch  # noqa: F401
    except ImportError:
        if backend == "torch":
            raise ValueError("backend 'torch' requested but torch is not installed") from None
        return "numpy"
    return "torch"


def march(stack: OrientedStack, geom: ViewGeometry, mode: str = "composite",
          detail: float = 1.0, backend: str = "auto", chunk: int = 8,
          substeps: int = 1) -> np.ndarray:
    """Render one view of a per-voxel channel stack.

    Args:
        stack: for ``"composite"``, premultiplied RGB + opacity per voxel of unit path length
            (4 channels); for ``"max"``, one or more channels maximised along rays.
        geom: the view (output size, rays).
        mode: ``"composite"`` (front-to-back over) or ``"max"`` (maximum intensity projection).
        detail: intermediate-image rays per voxel across the view (1 = the volume's resolution).
        backend: ``"numpy"``, ``"torch"`` or ``"auto"``.
        chunk: slices resampled together (memory vs. speed).
        substeps: samples per slice interval along each ray (more smooths the slice-aligned
            "wood grain" of sharp transfer functions; costs compositing time).

    Returns:
        ``[C, H, W]`` float32: composite: premultiplied RGB and coverage (1 - transmittance);
        max: the maxima of each channel and a coverage of ones.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    if not detail > 0:
        raise ValueError(f"detail must be positive, got {detail}")
    backend = resolve_backend(backend)
    plan = _Plan(geom, stack.shape_zyx, detail)
    channels = stack.data.shape[0] + (1 if mode == "max" else 0)
    if plan.empty:
        return np.zeros((channels, geom.height, geom.width), np.float32)
    slabs = stack.along(plan.pa)
    marcher = _march_torch if backend == "torch" else _march_numpy
    if int(substeps) < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps}")
    intermediate = marcher(slabs, plan, mode, chunk, stack.data.shape[0], int(substeps))
    cols, rows = plan.output_coords()
    return _warp(intermediate, cols, rows, backend).astype(np.float32, copy=False)
