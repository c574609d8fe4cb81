"""Tiled whole-tomogram inference with smooth blending (Nano-Ötzi / MemBrain v2 scheme).

The tomogram ``[z, y, x]`` is rescaled (Fourier cropping/padding) to the model's voxel size,
robustly normalised, cut into overlapping tiles, and each tile's probabilities are weighted
by a window that is 1 in its centre and falls smoothly (raised cosine) to almost 0 over the
``overlap`` voxels at its faces, so seams between tiles disappear. Only one tile (and its
test-time-augmentation flips) is in memory at a time, plus the accumulated output, which can
be a memory-mapped file. Probabilities are then resampled back to the input grid.

Default tile edge 128 voxels (as in the paper) with 16 voxels of overlap: on a CPU the cost
is proportional to the computed voxels, so we keep the overlap at the smallest width that
still hides the U-Net's border effects, and tile sizes adapt to the volume so the overlap
multiplies the computed voxels as little as possible (see :func:`axis_plan`).
"""

from __future__ import annotations

import itertools
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from formats import Volume, check_finite

from ..errors import CryovisError

# Where and in which precision to compute is decided in device.py, for training too; the
# names stay importable from here for callers of the inference API.
from .device import default_device as default_device
from .device import keep_freed_memory
from .device import native_bf16 as native_bf16
from .device import resolve_device as resolve_device
from .device import use_bf16 as use_bf16

DEFAULT_TILE = 128
DEFAULT_OVERLAP = 16
# Relative voxel-size mismatch below which the tomogram is used as is.
RESCALE_TOLERANCE = 0.02
WINDOW_FLOOR = 1e-3


@dataclass
class AxisPlan:
    """Tiling of one axis: tile length, tile start positions, and the padded axis length
    (larger than the axis only when the axis is shorter than one tile)."""

    tile: int
    starts: list[int]
    padded: int


def _ceil_to(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def axis_plan(n: int, max_tile: int, overlap: int, multiple: int) -> AxisPlan:
    """Tile an axis of ``n`` voxels with tiles of at most ``max_tile`` voxels (a multiple of
    ``multiple``) overlapping by at least ``overlap``.

    The fewest tiles that fit are used and made as small as possible, so the tiles cover
    ``k * tile`` voxels instead of ``k * max_tile``. An axis shorter than one tile gets one
    tile and is padded to it.
    """
    max_tile = max(multiple, (max_tile // multiple) * multiple)
    if n <= max_tile:
        tile = _ceil_to(n, multiple)
        return AxisPlan(tile, [0], tile)
    overlap = min(overlap, max_tile - multiple)
    k = math.ceil((n - overlap) / (max_tile - overlap))
    tile = min(max_tile, _ceil_to(math.ceil((n + (k - 1) * overlap) / k), multiple))
    starts = np.linspace(0, n - tile, k).round().astype(int).tolist()
    return AxisPlan(tile, starts, n)


def blend_window(tile_shape: tuple[int, int, int], overlap: int) -> np.ndarray:
    """Blending weights ``[z, y, x]`` for one tile: 1 inside, a raised-cosine ramp down to
    ``WINDOW_FLOOR`` over ``overlap`` voxels at each face (never 0, so every voxel covered
    by any tile has a defined average)."""
    axes = []
    for n in tile_shape:
        w = np.ones(n, dtype=np.float32)
        ramp = min(overlap, n // 2)
        if ramp > 0:
            t = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
            edge = WINDOW_FLOOR + (1 - WINDOW_FLOOR) * 0.5 * (1 - np.cos(np.pi * t))
            w[:ramp] = edge
            w[n - ramp:] = edge[::-1]
        axes.append(w)
    return (axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :])


def overlap_factor(shape: tuple[int, int, int], tile: int, overlap: int,
                   multiple: tuple[int, int, int]) -> float:
    """Computed voxels (all tiles, before TTA) divided by the volume's voxels."""
    plans = [axis_plan(n, tile, overlap, m) for n, m in zip(shape, multiple)]
    computed = np.prod([p.tile * len(p.starts) for p in plans], dtype=np.float64)
    return float(computed / np.prod(shape, dtype=np.float64))


def tiles(shape: tuple[int, int, int], tile: int, overlap: int,
          multiple: tuple[int, int, int]) -> tuple[list[AxisPlan], list[tuple[int, int, int]]]:
    """Axis plans and every tile's start ``(z, y, x)`` for a volume of ``shape``."""
    plans = [axis_plan(n, tile, overlap, m) for n, m in zip(shape, multiple)]
    return plans, list(itertools.product(*[p.starts for p in plans]))


# How a network's output becomes probabilities: "sigmoid" (one class), "softmax" (one
# channel per class) or "regression" (one raw channel trained by MSE on 2-class soft labels:
# clipped to [0, 1] it is the second class's probability, and 1 minus it the first's, so the
# two maps sum to 1). "auto" picks sigmoid or softmax from the channel count.
OUTPUTS = ("auto", "sigmoid", "softmax", "regression")


def _activation(logits, output: str = "auto"):
    import torch

    if output == "regression":
        p = logits.clamp(0.0, 1.0)
        return torch.cat([1.0 - p, p], dim=1)
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def output_channels(net, output: str = "auto") -> int:
    """Probability channels :func:`predict_probabilities` gives for ``net``."""
    return 2 if output == "regression" else int(net.config["out_channels"])


def forward_tile(net, patch: np.ndarray, tta: bool = False, bf16: bool = False,
                 device: str = "cpu", logit_bias: float = 0.0,
                 output: str = "auto") -> np.ndarray:
    """Probabilities ``(C, z, y, x)`` of one tile (by ``output``, see ``OUTPUTS``: sigmoid
    for one output channel, softmax otherwise, or 2 channels from a regression output); with
    ``tta`` the mean over the 8 flips of the three axes. ``logit_bias`` is subtracted from
    one-channel sigmoid logits (the calibration stored in a model card)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))[None, None].to(device)
    flips = ([dims for r in range(4) for dims in itertools.combinations((2, 3, 4), r)]
             if tta else [()])
    total = None
    with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0],
                                                 dtype=torch.bfloat16, enabled=bf16):
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            logits = net(xi).float()
            sig = logits.shape[1] == 1 and output != "regression"
            p = _activation(logits - logit_bias if sig else logits, output)
            p = torch.flip(p, dims) if dims else p
            total = p if total is None else total + p
    return (total / len(flips))[0].float().cpu().numpy()


def _pad_to(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    pad = [(0, max(0, s - n)) for n, s in zip(image.shape, shape)]
    if not any(p for _, p in pad):
        return image
    # Mirroring keeps the statistics the network saw in training; a 1-voxel axis cannot be
    # mirrored, so it is repeated.
    mode = "reflect" if min(image.shape) > 1 else "edge"
    return np.pad(image, pad, mode=mode)


def _window_sums(plan: AxisPlan, n: int, overlap: int) -> np.ndarray:
    """Sum over the tiles of one axis of their 1D blending ramps, on the axis' ``n`` voxels.

    The tiles are the product of the axis plans and the window is the product of 1D ramps,
    so the total blending weight of a voxel is the product of these three sums.
    """
    ramp = blend_window((plan.tile, 1, 1), overlap)[:, 0, 0]
    total = np.zeros(n, dtype=np.float64)
    for start in plan.starts:
        end = min(start + plan.tile, n)
        total[start:end] += ramp[:end - start]
    return total


def predict_probabilities(net, image: np.ndarray, tile: int = DEFAULT_TILE,
                          overlap: int = DEFAULT_OVERLAP, tta: bool = False, bf16: bool = False,
                          device: str = "cpu", out: np.ndarray | None = None,
                          progress: Callable[[int, int], None] | None = None,
                          logit_bias: float = 0.0,
                          stats: tuple[float, float] | None = None,
                          output: str = "auto") -> np.ndarray:
    """Blend tile predictions over a normalised image ``[z, y, x]`` (at the model's voxel
    size) into probabilities ``(C, z, y, x)`` float32.

    Args:
        net: network in eval mode (``net.size_multiple`` gives the tile multiples).
        tile: largest tile edge, voxels; overlap: minimum overlap of neighbours, voxels.
        out: optional preallocated float32 ``(C, z, y, x)`` array (e.g. a memory map) that
            receives the result.
        progress: called as ``progress(done, total)`` after each tile.
        stats: ``(centre, scale)`` of :func:`preprocess.robust_stats`: ``image`` is then
            the raw tomogram and each tile is normalised as it is read, so a memory-mapped
            ``image`` and ``out`` stream through memory a tile at a time.
        output: how outputs become probabilities (``OUTPUTS``; a model card's ``output``).
    """
    from formats import release_pages, slabs

    from ..preprocess import normalize_with

    if image.ndim != 3:
        raise ValueError(f"expected a 3D image [z, y, x], got shape {image.shape}")
    keep_freed_memory()
    shape = tuple(int(n) for n in image.shape)
    plans, starts = tiles(shape, tile, overlap, tuple(net.size_multiple))
    tile_shape = tuple(p.tile for p in plans)
    window = blend_window(tile_shape, overlap)
    weight_z, weight_y, weight_x = (_window_sums(p, n, overlap) for p, n in zip(plans, shape))
    channels = output_channels(net, output)
    acc = out if out is not None else np.zeros((channels,) + shape, dtype=np.float32)
    if acc.shape != (channels,) + shape:
        raise ValueError(f"output array has shape {acc.shape}, expected {(channels,) + shape}")
    for z in slabs(shape):  # a fresh memory map is zero already; a reused one is not
        acc[:, z] = 0
        release_pages(acc)
    for i, (z, y, x) in enumerate(starts):
        patch = np.asarray(image[z:z + tile_shape[0], y:y + tile_shape[1], x:x + tile_shape[2]])
        if stats is not None:
            patch = normalize_with(patch, stats)
        # Padding happens only on axes shorter than a tile (the tile spans the axis).
        probs = forward_tile(net, _pad_to(patch, tile_shape), tta=tta, bf16=bf16,
                             device=device, logit_bias=logit_bias, output=output)
        # Only the part inside the unpadded volume is accumulated.
        ez, ey, ex = (min(s + t, n) - s for s, t, n in zip((z, y, x), tile_shape, shape))
        acc[:, z:z + ez, y:y + ey, x:x + ex] += probs[:, :ez, :ey, :ex] * window[:ez, :ey, :ex]
        release_pages(image)
        release_pages(acc)
        if progress is not None:
            progress(i + 1, len(starts))
    plane = (weight_y[:, None] * weight_x[None, :]).astype(np.float32)
    for z0 in range(0, shape[0], 8):
        z1 = min(z0 + 8, shape[0])
        acc[:, z0:z1] /= weight_z[z0:z1, None, None].astype(np.float32) * plane
        release_pages(acc)
    return acc


@dataclass
class Segmentation:
    """Result of :func:`segment_volume` on the input's grid.

    ``probabilities``: float32 ``(C, z, y, x)``; one channel for a one-class model; for a
    model with ``label_values`` (trained on K painted classes) channel k - 1 is class
    ``classes[k - 1]``, painted as ``label_values[k - 1]``; otherwise channel 0 is an
    implicit background and channel k is class ``classes[k - 1]``.
    """

    probabilities: np.ndarray
    classes: list[str]
    voxel_size: float
    origin: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)
    label_values: list[int] | None = None

    def class_map(self, k: int) -> np.ndarray:
        """Probability map ``[z, y, x]`` of class ``k`` (1-based, as in training)."""
        if len(self.classes) == 1:
            return self.probabilities[0]
        return self.probabilities[k - 1 if self.label_values else k]

    def labels(self, threshold: float = 0.5) -> np.ndarray:
        """uint8/int16 labels: the most probable class as its stroke value (models with
        ``label_values``), else 0 background and 1..K (one-class models: probability above
        ``threshold``)."""
        if len(self.classes) == 1:
            return (self.probabilities[0] > threshold).astype(np.uint8)
        lab = np.argmax(self.probabilities, axis=0)
        if self.label_values:
            values = np.asarray(self.label_values)
            return values[lab].astype(np.uint8 if values.max() < 255 else np.int16)
        return lab.astype(np.uint8 if len(self.classes) < 255 else np.int16)


def _resample_to(data: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Linear interpolation of a probability map onto ``shape`` (same field of view).

    Sample ``j`` of the target sits at ``j * n_src / n_target`` of the source, the grid that
    Fourier cropping/padding produced; edges are clamped. Interpolation, unlike Fourier
    resampling, keeps probabilities within [0, 1].
    """
    from scipy import ndimage

    scale = [n / s for n, s in zip(data.shape, shape)]
    return ndimage.affine_transform(data, scale, output_shape=tuple(shape), order=1,
                                    mode="nearest").astype(np.float32, copy=False)


def check_input(volume: Volume, finite: bool = True) -> None:
    """Raise CryovisError for volumes the model cannot segment (not 3D, or, with
    ``finite``, NaN/Inf voxels: a full pass over the data)."""
    name = volume.path or "<volume>"
    if volume.data.ndim != 3 or min(volume.data.shape) < 2:
        raise CryovisError(f"{name}: segmentation needs a 3D tomogram, got shape "
                           f"{tuple(volume.data.shape)} (z, y, x)")
    if not finite:
        return
    try:
        check_finite(volume)
    except ValueError as exc:
        raise CryovisError(str(exc)) from None


def segment_volume(volume: Volume, net, card: dict[str, Any], tile: int = DEFAULT_TILE,
                   overlap: int = DEFAULT_OVERLAP, tta: bool = False, bf16: bool = False,
                   device: str = "cpu", memmap_dir: str | Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Segmentation:
    """Segment a tomogram with a loaded model (see :func:`checkpoint.load_model`).

    The volume is resampled to ``card["voxel_size"]`` Å when its own voxel size differs by
    more than 2 %, normalised, tiled (``tile``/``overlap`` in voxels at the model's voxel
    size) and the probabilities resampled back to the input grid. A volume without a voxel
    size is assumed to be at the model's voxel size (recorded in ``info["warnings"]``).
    ``memmap_dir`` puts the probability arrays in memory-mapped files there.
    """
    from cryoet_integration.preprocess import (
        normalize,
        rescale_to_voxel_size,
        robust_stats,
    )

    check_input(volume)
    model_vs = float(card["voxel_size"])
    info: dict[str, Any] = {"warnings": [], "model_voxel_size": model_vs}
    vs = float(volume.voxel_size or 0.0)
    if not vs > 0:
        info["warnings"].append(f"{volume.path or 'volume'} has no voxel size; assuming the "
                                f"model's {model_vs:g} Å")
        vs = model_vs
    rescale = abs(vs / model_vs - 1) > RESCALE_TOLERANCE
    # A memory-mapped or lazy (OME-Zarr) tomogram at the model's voxel size streams: tiles
    # are read and normalised one at a time and the probabilities accumulate in a memory map.
    # Streaming normalises with robust statistics; a min-max model reads the volume whole.
    norm = card.get("normalise", "robust")
    streamed = (isinstance(volume.data, np.memmap) or not isinstance(volume.data, np.ndarray)
                ) and not rescale and norm == "robust"
    stats = None
    if streamed:
        data = volume.data
        stats = robust_stats(data)
        if memmap_dir is None:
            memmap_dir = tempfile.gettempdir()
    else:
        data = np.asarray(volume.data, dtype=np.float32)
        if rescale:
            data = rescale_to_voxel_size(data, vs, model_vs)
        data = normalize(data, norm)
    info.update(rescaled=rescale, streamed=streamed, working_shape_zyx=list(data.shape),
                overlap_factor=overlap_factor(data.shape, tile, overlap,
                                              tuple(net.size_multiple)))
    output = card.get("output", "auto")
    channels = output_channels(net, output)

    def alloc(shape):
        if memmap_dir is None:
            return np.zeros(shape, dtype=np.float32)
        fh = tempfile.NamedTemporaryFile(dir=memmap_dir, suffix=".f32", delete=True)
        return np.memmap(fh, dtype=np.float32, mode="w+", shape=shape)

    work = predict_probabilities(net, data, tile=tile, overlap=overlap, tta=tta, bf16=bf16,
                                 device=device, out=alloc((channels,) + data.shape),
                                 logit_bias=float(card.get("logit_bias", 0.0)),
                                 progress=progress, stats=stats, output=output)
    del data
    if rescale:
        target = tuple(int(n) for n in volume.data.shape)
        probs = alloc((channels,) + target)
        for c in range(channels):
            probs[c] = _resample_to(work[c], target)
        del work
    else:
        probs = work
    return Segmentation(probs, list(card["classes"]), float(volume.voxel_size or 0.0),
                        tuple(volume.origin), info, card.get("label_values"))
