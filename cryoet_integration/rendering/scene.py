"""A renderable scene: per-voxel colours and opacities computed once, then any number of views.

For our mode (Nano-Ötzi eq. 2-3) every voxel composites its classes in their fixed order,
each with opacity ``r_i(p_i) * r_raw(raw)`` and material colour ``c_i``, and the result is lit
by the view-independent ambient occlusion and soft shadow factors. Those premultiplied
colours and opacities are then composited front to back along the view rays by
:func:`composite.march`, so the classes are interleaved sample by sample along each ray
exactly as in the paper's double sum, with the transfer functions applied at the voxels
(pre-classification) rather than after interpolation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from . import colors as colormod
from .camera import Camera
from .composite import OrientedStack, march, resolve_backend
from .illumination import illumination, unit
from .postprocess import bloom, over_background, to_uint8
from .preprocess import prepare_raw
from .transfer import ThresholdEstimate, estimate_threshold, ramp

RENDER_MODES = ("ours", "dvr", "mip")
# Plain DVR of noisy data is a fog: a low opacity per voxel keeps more than the front visible.
DVR_OPACITY = 0.15


@dataclasses.dataclass
class RenderSettings:
    """Everything that shapes the picture besides the camera.

    Attributes:
        thresholds: left ramp limit per class in [0, 1); ``None`` (for all or one class)
            means estimate it with Algorithm 1.
        raw_ramp: (low, high) of the ramp on the inverted, low-passed raw data in [0, 1].
        lowpass_sigma: Gaussian low-pass of the raw data, voxels.
        invert: invert the raw data (dark protein, as in cryo-ET).
        colors: one colour per class (names, ``#rrggbb`` or RGB triples); ``None``: Okabe-Ito.
        opacity: opacity scale per voxel of path for fully selected voxels (0, 1].
        light_dir: direction towards the light, ``(x, y, z)`` in the volume frame.
        ao_strength, shadow_strength: 0..1.
        uncertainty: blend each class colour towards grey by the entropy of the soft
            probabilities (classes plus the remainder as background), in units of an even
            two-way split (``min(H / ln 2, 1)``).
        bloom: bloom strength (0 disables).
        background: RGB in [0, 1].
        detail: rays per voxel across the view (1 = sample at the volume's resolution).
        substeps: samples per slice interval along each ray (1 = one per slice crossed).
        backend: ``"auto"`` (torch when installed), ``"numpy"`` or ``"torch"``.
    """

    thresholds: Sequence[float | None] | None = None
    raw_ramp: tuple[float, float] = (0.0, 1.0)
    lowpass_sigma: float = 1.5
    invert: bool = True
    colors: Sequence | None = None
    opacity: float = 1.0
    light_dir: tuple[float, float, float] = (-0.4, 0.8, 0.45)
    ao_strength: float = 0.9
    shadow_strength: float = 0.75
    uncertainty: bool = False
    bloom: float = 0.5
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    detail: float = 1.0
    substeps: int = 1
    backend: str = "auto"


def check_inputs(raw: np.ndarray, classes: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise ValueError (one line naming the class) unless the tomogram is 3D and finite and
    every class map has its shape, is finite and holds probabilities in [0, 1]."""
    from formats.volume import Volume, check_finite

    if raw.ndim != 3 or min(raw.shape) < 2:
        raise ValueError(f"tomogram must be 3D with every side >= 2 voxels, got shape {raw.shape}")
    check_finite(Volume(raw, path="tomogram"))
    if not classes:
        raise ValueError("at least one class map is needed")
    for name, c in zip(names, classes):
        if c.shape != raw.shape:
            raise ValueError(f"{name}: shape {c.shape} (z, y, x) differs from the tomogram's "
                             f"{raw.shape}")
        check_finite(Volume(c, path=name))
        lo, hi = float(c.min()), float(c.max())
        if lo < -0.01 or hi > 1.01:  # small overshoots from interpolation are clipped
            raise ValueError(f"{name}: values {lo:g}..{hi:g} are not probabilities in [0, 1]")


class Scene:
    """A tomogram and its soft class maps, prepared for rendering from any viewpoint.

    Args:
        raw: tomogram ``[z, y, x]``.
        classes: soft class maps ``[z, y, x]`` with probabilities in [0, 1] (values outside
            are clipped), in compositing order (the first is in front within a sample).
        settings: see :class:`RenderSettings`.
        names: class names for messages and histograms.
    """

    def __init__(self, raw: np.ndarray, classes: Sequence[np.ndarray],
                 settings: RenderSettings | None = None, names: Sequence[str] | None = None):
        self.settings = s = settings or RenderSettings()
        self.names = list(names) if names is not None else [f"class{i + 1}"
                                                             for i in range(len(classes))]
        raw = np.asarray(raw)
        classes = [np.asarray(c) for c in classes]
        check_inputs(raw, classes, self.names)
        self.backend = resolve_backend(s.backend)
        self.colors = colormod.resolve_colors(list(s.colors) if s.colors is not None else None,
                                              len(classes))
        if not 0 < s.opacity <= 1:
            raise ValueError(f"opacity must be in (0, 1], got {s.opacity}")
        unit(s.light_dir)
        self.probs = [np.clip(c.astype(np.float32, copy=False), 0.0, 1.0) for c in classes]
        self.raw01 = prepare_raw(raw, s.lowpass_sigma, s.invert)
        self.estimates = self._thresholds()
        self._stacks: dict[str, OrientedStack] = {}

    def _thresholds(self) -> list[ThresholdEstimate]:
        given = self.settings.thresholds
        if given is not None and len(given) != len(self.probs):
            raise ValueError(f"{len(given)} thresholds given for {len(self.probs)} classes")
        out = []
        for i, p in enumerate(self.probs):
            value = None if given is None else given[i]
            if value is None:
                out.append(estimate_threshold(p))
            else:
                if not 0.0 <= float(value) < 1.0:
                    raise ValueError(f"threshold for {self.names[i]} must be in [0, 1),"
                                     f" got {value}")
                out.append(ThresholdEstimate(float(value), np.full(p.shape[0], np.nan)))
        return out

    @property
    def thresholds(self) -> list[float]:
        """The left ramp limits in use, one per class."""
        return [e.value for e in self.estimates]

    def class_opacities(self) -> list[np.ndarray]:
        """``r_i(p_i) * r_raw(raw) * opacity`` per class, ``[z, y, x]`` float32."""
        s = self.settings
        raw_r = ramp(self.raw01, *s.raw_ramp) * np.float32(s.opacity)
        return [ramp(p, a) * raw_r for p, a in zip(self.probs, self.thresholds)]

    def _uncertainty(self) -> np.ndarray:
        total = np.sum(self.probs, axis=0)
        parts = self.probs + [np.clip(1.0 - total, 0.0, 1.0)]
        norm = np.maximum(np.sum(parts, axis=0), 1e-6)
        ent = np.zeros_like(total)
        for q in parts:
            q = q / norm
            ent -= q * np.log(np.maximum(q, 1e-12))
        # scaled so that an even two-way split (p = 0.5 against one alternative) is fully
        # uncertain; more-way splits saturate
        return np.clip(ent / np.log(2.0), 0.0, 1.0).astype(np.float32)

    def _ours(self) -> OrientedStack:
        s = self.settings
        alphas = self.class_opacities()
        uncert = self._uncertainty() if s.uncertainty else None
        grey = np.float32(0.6)
        color = np.zeros((3,) + self.raw01.shape, np.float32)
        trans = np.ones(self.raw01.shape, np.float32)
        for a, c in zip(alphas, self.colors):
            weight = trans * a
            for ch in range(3):
                tint = c[ch] if uncert is None else (1 - uncert) * c[ch] + uncert * grey
                color[ch] += weight * tint
            trans *= 1.0 - a
        opacity = 1.0 - trans
        lao, ssc = illumination(opacity, s.light_dir, s.ao_strength, s.shadow_strength)
        color *= (lao * ssc)[None]
        return OrientedStack(np.concatenate([color, opacity[None]], axis=0))

    def _dvr(self) -> OrientedStack:
        # The comparison of the paper's Figure 9: the same low-passed data, a grey ramp whose
        # left limit is Algorithm 1 on the data itself, no segmentation and no illumination.
        low = estimate_threshold(self.raw01).value
        alpha = ramp(self.raw01, low) * np.float32(DVR_OPACITY * self.settings.opacity)
        grey = alpha * self.raw01
        return OrientedStack(np.stack([grey, grey, grey, alpha]))

    def stack(self, mode: str) -> OrientedStack:
        """The per-voxel channels of ``mode`` (computed on first use, then cached)."""
        if mode not in RENDER_MODES:
            raise ValueError(f"mode must be one of {RENDER_MODES}, got '{mode}'")
        if mode not in self._stacks:
            if mode == "ours":
                self._stacks[mode] = self._ours()
            elif mode == "dvr":
                self._stacks[mode] = self._dvr()
            else:
                self._stacks[mode] = OrientedStack(self.raw01[None])
        return self._stacks[mode]

    def render_float(self, camera: Camera, mode: str = "ours") -> np.ndarray:
        """``[H, W, 3]`` float RGB in [0, 1] of one view (bloom applied in ``ours`` mode)."""
        s = self.settings
        stack = self.stack(mode)
        geom = camera.geometry(self.raw01.shape)
        if mode == "mip":
            out = march(stack, geom, "max", s.detail, self.backend, substeps=s.substeps)
            rgb = np.repeat(np.moveaxis(out[:1], 0, -1), 3, axis=-1)
            bg = np.asarray(s.background, np.float32)
            return np.clip(rgb + (1 - out[1])[..., None] * bg, 0, 1)
        out = march(stack, geom, "composite", s.detail, self.backend,
                    substeps=s.substeps)
        rgb = np.clip(over_background(out, s.background), 0.0, 1.0)
        return bloom(rgb, s.bloom) if mode == "ours" else rgb

    def render(self, camera: Camera, mode: str = "ours") -> np.ndarray:
        """``[H, W, 3]`` uint8 image of one view."""
        return to_uint8(self.render_float(camera, mode))
