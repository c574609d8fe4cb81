"""Front-to-back compositing along view rays by shear-warp factorisation (Lacroute & Levoy).

The view rays are sampled where they cross the volume slices perpendicular to the axis most
parallel to the view. In each slice the samples form an axis-aligned scaled and shifted grid
(a shift for orthographic views, also a scale for perspective ones), so each slice is resampled
bilinearly in 2D, separably, and composited into an intermediate image on a base plane, at one
ray per voxel (times ``detail``). A final 2D warp maps the base plane to the output pixels, which
is where images larger than the volume are upsampled. Opacity is corrected for the sample
spacing along each ray, ``1 - (1 - alpha) ** step`` with the step in voxels.

Two backends compute the same thing: numpy (always available) and torch (``grid_sample``
for the slice resampling and the final warp); compositing is shared numpy code.
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
        self._boxes: dict[int, np.ndarray] = {}

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[1:])  # type: ignore[return-value]

    def along(self, pa: int) -> np.ndarray:
        if pa not in self._cache:
            a1, a2 = [c for c in (0, 1, 2) if c != pa]
            axes = (3 - pa, 0, 3 - a2, 3 - a1)
            self._cache[pa] = np.ascontiguousarray(self.data.transpose(axes))
        return self._cache[pa]

    def boxes(self, pa: int) -> np.ndarray:
        """Per slice of :meth:`along`, the rows and columns ``[r0, r1, c0, c1)`` holding
        non-zero values (all zero for an empty slice), ``[n_pa, 4]`` int."""
        if pa not in self._boxes:
            nonzero = np.any(self.along(pa) != 0, axis=1)
            rows, cols = nonzero.any(axis=2), nonzero.any(axis=1)
            out = np.zeros((len(nonzero), 4), np.int64)
            for k in np.flatnonzero(rows.any(axis=1)):
                r, c = np.flatnonzero(rows[k]), np.flatnonzero(cols[k])
                out[k] = r[0], r[-1] + 1, c[0], c[-1] + 1
            self._boxes[pa] = out
        return self._boxes[pa]


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
        """Fractional intermediate-grid (column, row) of every output pixel, ``[H, W]`` each.

        A pixel's point on the centre plane and (in perspective) its ray direction are affine
        in (column, row), so each needed component is an outer sum of two 1D arrays.
        """
        g = self.geom
        cols = (np.arange(g.width) - (g.width - 1) / 2.0) * g.pixel
        rows = ((g.height - 1) / 2.0 - np.arange(g.height)) * g.pixel

        def component(axis: int, start: np.ndarray) -> np.ndarray:
            return (start[axis] + rows[:, None] * g.up[axis]
                    + cols[None, :] * g.right[axis]).astype(np.float32)

        if g.eye is None:
            p_pa, d = component(self.pa, g.centre), -g.back
            t = (self.k0 - p_pa) / np.float32(d[self.pa])
            x1 = component(self.a1, g.centre) + t * np.float32(d[self.a1])
            x2 = component(self.a2, g.centre) + t * np.float32(d[self.a2])
        else:
            offset = g.centre - g.eye  # ray direction = offset + in-plane displacement
            scale = np.float32(self.k0 - g.eye[self.pa]) / component(self.pa, offset)
            x1 = np.float32(g.eye[self.a1]) + component(self.a1, offset) * scale
            x2 = np.float32(g.eye[self.a2]) + component(self.a2, offset) * scale
        return ((x1 - np.float32(self.lo[0])) / np.float32(self.h),
                (x2 - np.float32(self.lo[1])) / np.float32(self.h))


def _axis_weights(q: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    i0 = np.floor(q).astype(np.int64)
    f = (q - i0).astype(np.float32)
    w0 = (1 - f) * ((i0 >= 0) & (i0 < n))
    w1 = f * ((i0 + 1 >= 0) & (i0 + 1 < n))
    return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), w0, w1


def _resample_numpy(slab: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Bilinear samples ``[C, N2, N1]`` of one slice ``[C, n2, n1]`` at rows ``q2`` and
    columns ``q1`` (zero outside); rows first, which gathers whole contiguous rows."""
    j0, j1, v0, v1 = _axis_weights(q2, slab.shape[1])
    rows = slab[:, j0, :] * v0[None, :, None] + slab[:, j1, :] * v1[None, :, None]
    i0, i1, w0, w1 = _axis_weights(q1, slab.shape[2])
    return rows[:, :, i0] * w0 + rows[:, :, i1] * w1


def _support(q: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """The index range of increasing positions ``q`` whose bilinear stencil touches the
    source range ``[lo, hi)``."""
    return int(np.searchsorted(q, lo - 1, "right")), int(np.searchsorted(q, hi, "left"))


def _substeps(samples: np.ndarray, previous: np.ndarray, substeps: int) -> np.ndarray:
    """Samples at ``substeps`` evenly spaced points per slice interval along each ray, by
    linear interpolation between consecutive slice crossings (``previous`` is the crossing
    before the first of ``samples``)."""
    if substeps == 1:
        return samples
    starts = np.concatenate([previous[None], samples[:-1]], axis=0)
    parts = [starts + (samples - starts) * np.float32(j / substeps)
             for j in range(1, substeps + 1)]
    return np.stack(parts, axis=1).reshape((-1,) + samples.shape[1:])


def _resample_chunk_numpy(slabs, ks, q1, q2, spans, box, channels):
    ja, jb, ia, ib = box
    out = np.zeros((len(ks), channels, jb - ja, ib - ia), np.float32)
    for i, (k, span) in enumerate(zip(ks, spans)):
        if span is not None:
            a, b, c, d = span
            out[i, :, a - ja:b - ja, c - ia:d - ia] = _resample_numpy(slabs[k], q1[i, c:d],
                                                                      q2[i, a:b])
    return out


def _resample_chunk_torch(slabs, ks, q1, q2, spans, box, channels):
    import torch
    import torch.nn.functional as F

    ja, jb, ia, ib = box
    src_n2, src_n1 = slabs.shape[2], slabs.shape[3]
    gx = torch.from_numpy((2.0 * q1[:, ia:ib] / (src_n1 - 1) - 1.0).astype(np.float32))
    gy = torch.from_numpy((2.0 * q2[:, ja:jb] / (src_n2 - 1) - 1.0).astype(np.float32))
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    with torch.no_grad():
        out = F.grid_sample(torch.from_numpy(slabs[ks]), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=True)
    return out.numpy()


def _march_slices(slabs, plan: _Plan, mode: str, chunk: int, channels: int, substeps: int,
                  boxes: np.ndarray, backend: str) -> np.ndarray:
    # Empty-space skipping: a chunk of slices is resampled and composited only over the grid
    # rows and columns whose bilinear stencil touches the non-zero box of one of its slices
    # (or, with substeps, of the slice before).
    resample = _resample_chunk_torch if backend == "torch" else _resample_chunk_numpy
    n1, n2 = len(plan.x1), len(plan.x2)
    step = np.broadcast_to(plan.step().astype(np.float32) / np.float32(substeps), (n2, n1))
    acc = np.zeros((channels - 1 if mode == "composite" else channels, n2, n1), np.float32)
    trans = np.ones((n2, n1), np.float32)
    previous = np.zeros((channels, n2, n1), np.float32)
    prev_span = None
    for start in range(0, plan.n, chunk):
        ks = plan.order[start:start + chunk]
        q1, q2 = plan.slice_maps(ks)
        spans = []
        for i, k in enumerate(ks):
            r0, r1, c0, c1 = boxes[k]
            ja, jb = _support(q2[i], r0, r1) if r1 > r0 else (0, 0)
            ia, ib = _support(q1[i], c0, c1) if r1 > r0 else (0, 0)
            spans.append((ja, jb, ia, ib) if jb > ja and ib > ia else None)
        used = [b for b in spans if b is not None]
        if substeps > 1 and prev_span is not None:
            used.append(prev_span)
        if not used:
            prev_span = None
            continue
        box = (min(b[0] for b in used), max(b[1] for b in used),
               min(b[2] for b in used), max(b[3] for b in used))
        region = np.s_[box[0]:box[1], box[2]:box[3]]
        crossings = resample(slabs, ks, q1, q2, spans, box, channels)
        samples = _substeps(crossings, previous[(slice(None),) + region], substeps)
        if substeps > 1:
            previous[:] = 0
            previous[(slice(None),) + region] = crossings[-1]
            prev_span = box if spans[-1] is not None else None
        if mode == "max":
            sub = acc[(slice(None),) + region]
            np.maximum(sub, samples.max(axis=0), out=sub)
            continue
        alpha = np.clip(samples[:, -1], 0.0, 1.0 - _EPS)
        corrected = -np.expm1(step[region] * np.log1p(-alpha))
        color = samples[:, :-1] * (corrected / np.maximum(alpha, _EPS))[:, None]
        through = np.cumprod(1.0 - corrected, axis=0)
        t_region = trans[region]
        before = np.concatenate([np.ones_like(through[:1]), through[:-1]], axis=0) * t_region
        acc[(slice(None),) + region] += np.einsum("khw,kchw->chw", before, color)
        trans[region] = t_region * through[-1]
        if float(trans.max()) < 1.0 / 1024:
            break
    coverage = 1.0 - trans if mode == "composite" else np.ones_like(trans)
    return np.concatenate([acc, coverage[None]], axis=0)


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
    if int(substeps) < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps}")
    intermediate = _march_slices(slabs, plan, mode, chunk, stack.data.shape[0], int(substeps),
                                 stack.boxes(plan.pa), backend)
    cols, rows = plan.output_coords()
    return _warp(intermediate, cols, rows, backend).astype(np.float32, copy=False)
