"""Segmentation losses with an ignore label: BCE/CE, Dice, Tversky, MSE (on probabilities or,
for regression, on the raw output), adaptive wing, and
the differentiable Surface-Dice of MemBrain v2; plus deep-supervision weighting.

Conventions. ``logits`` are ``(B, C, D, H, W)``; ``target`` is ``(B, D, H, W)`` (or
``(B, 1, D, H, W)``) with integer labels ``0`` = background, ``1..K`` = classes and
``ignore_index`` (default ``-1``) = unknown. A one-class model has ``C = 1`` (sigmoid; its
target may also be a float soft label in ``[0, 1]``, e.g. pseudo-labels); a K-class model has
``C = K + 1`` (softmax, channel 0 = background). Ignored voxels contribute nothing to any loss
or gradient: their probabilities are zeroed before any neighbourhood operation.

Losses are computed in float32 even under bf16 autocast.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Prepared(NamedTuple):
    """Probabilities and one-hot targets of one output, with the ignore mask applied."""

    logits: torch.Tensor   # (B, C, D, H, W) float32
    prob: torch.Tensor     # sigmoid (C == 1) or softmax (C > 1)
    onehot: torch.Tensor   # (B, C, D, H, W) float in [0, 1], zero where ignored
    mask: torch.Tensor     # (B, 1, D, H, W) float, 1 = counted voxel
    fg: slice              # channels holding foreground classes


def prepare(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -1) -> Prepared:
    """Validate shapes/labels and build probabilities, one-hot targets and the ignore mask."""
    logits = logits.float()
    if target.ndim == logits.ndim:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits "
                         f"{tuple(logits.shape)}")
    channels = logits.shape[1]
    valid = target != ignore_index
    mask = valid[:, None].float()
    if channels == 1:
        y = torch.where(valid, target.float(), torch.zeros((), device=target.device))
        if y.min() < 0 or y.max() > 1:
            raise ValueError("one-class target values must be 0, 1 (or soft in [0, 1]) or "
                             f"{ignore_index} (ignore)")
        return Prepared(logits, torch.sigmoid(logits), y[:, None], mask, slice(0, 1))
    if target.is_floating_point():
        raise ValueError("multi-class targets must be integer labels")
    labels = torch.where(valid, target, torch.zeros((), dtype=target.dtype,
                                                    device=target.device)).long()
    if labels.min() < 0 or labels.max() >= channels:
        raise ValueError(f"labels must be in 0..{channels - 1} or {ignore_index} (ignore)")
    onehot = F.one_hot(labels, channels).movedim(-1, 1).float() * mask
    return Prepared(logits, torch.softmax(logits, dim=1), onehot, mask, slice(1, channels))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, C, ...) over voxels where ``mask`` (B, 1, ...) is 1."""
    return (values * mask).sum() / (mask.sum() * values.shape[1]).clamp(min=1.0)


def cross_entropy(p: Prepared, **_: Any) -> torch.Tensor:
    """Binary cross-entropy (one class) or softmax cross-entropy (K classes)."""
    if p.logits.shape[1] == 1:
        bce = F.binary_cross_entropy_with_logits(p.logits, p.onehot, reduction="none")
        return _masked_mean(bce, p.mask)
    nll = -(torch.log_softmax(p.logits, dim=1) * p.onehot).sum(dim=1, keepdim=True)
    return _masked_mean(nll, p.mask)


def dice(p: Prepared, smooth: float = 1.0, **_: Any) -> torch.Tensor:
    """1 - soft Dice over the batch, averaged over foreground classes."""
    prob = p.prob[:, p.fg] * p.mask
    y = p.onehot[:, p.fg]
    dims = (0, 2, 3, 4)
    inter = (prob * y).sum(dims)
    score = (2 * inter + smooth) / (prob.sum(dims) + y.sum(dims) + smooth)
    return 1 - score.mean()


def tversky(p: Prepared, smooth: float = 1.0, tversky_alpha: float = 0.3,
            tversky_beta: float = 0.7, **_: Any) -> torch.Tensor:
    """1 - Tversky index; ``alpha`` weights false positives, ``beta`` false negatives."""
    prob = p.prob[:, p.fg] * p.mask
    y = p.onehot[:, p.fg]
    dims = (0, 2, 3, 4)
    tp = (prob * y).sum(dims)
    fp = (prob * (1 - y)).sum(dims)
    fn = ((1 - prob) * y * p.mask).sum(dims)
    score = (tp + smooth) / (tp + tversky_alpha * fp + tversky_beta * fn + smooth)
    return 1 - score.mean()


def mse(p: Prepared, **_: Any) -> torch.Tensor:
    """Mean squared error between probabilities and (soft) targets, all channels."""
    return _masked_mean((p.prob - p.onehot) ** 2, p.mask)


def regression(p: Prepared, **_: Any) -> torch.Tensor:
    """Mean squared error between the raw network output (no activation) and soft targets
    in [0, 1]: Nano-Ötzi's best loss for 2-class soft labels (section 4.4). Inference maps
    the output to a probability by clipping it to [0, 1]."""
    return _masked_mean((p.logits - p.onehot) ** 2, p.mask)


def adaptive_wing(p: Prepared, awing_omega: float = 14.0, awing_theta: float = 0.5,
                  awing_epsilon: float = 1.0, awing_alpha: float = 2.1,
                  **_: Any) -> torch.Tensor:
    """Adaptive wing loss (Wang et al. 2019) on probabilities vs targets, as in Nano-Oetzi."""
    y = p.onehot
    diff = (p.prob - y).abs()
    power = awing_alpha - y
    ratio = awing_theta / awing_epsilon
    slope = (awing_omega / (1 + ratio ** power) * power * ratio ** (power - 1)
             / awing_epsilon)
    offset = awing_theta * slope - awing_omega * torch.log1p(ratio ** power)
    small = awing_omega * torch.log1p((diff / awing_epsilon) ** power)
    large = slope * diff - offset
    return _masked_mean(torch.where(diff < awing_theta, small, large), p.mask)


def _erode(x: torch.Tensor) -> torch.Tensor:
    # Minimum over the 6-neighbourhood cross, as in clDice: three 1D min-pools.
    a = -F.max_pool3d(-x, (3, 1, 1), stride=1, padding=(1, 0, 0))
    b = -F.max_pool3d(-x, (1, 3, 1), stride=1, padding=(0, 1, 0))
    c = -F.max_pool3d(-x, (1, 1, 3), stride=1, padding=(0, 0, 1))
    return torch.minimum(torch.minimum(a, b), c)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool3d(x, 3, stride=1, padding=1)


def soft_skeleton(x: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Differentiable soft skeleton of ``x`` (B, C, D, H, W) in [0, 1] (Shit et al. 2021).

    Iterated erosion (min-pooling); at each step what an opening removes is added to the
    skeleton. ``iterations`` should be about half the structure thickness in voxels.
    """
    skel = F.relu(x - _dilate(_erode(x)))
    for _ in range(iterations):
        x = _erode(x)
        delta = F.relu(x - _dilate(_erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, D, H, W) with ``sigma`` voxels, zero padding."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    channels = x.shape[1]
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = k.numel()
        weight = k.view(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        padding = [0, 0, 0]
        padding[axis] = radius
        x = F.conv3d(x, weight, padding=tuple(padding), groups=channels)
    return x


def surface_dice(p: Prepared, smooth: float = 1.0, skeleton_iterations: int = 3,
                 gt_sigma: float = 1.0, **_: Any) -> torch.Tensor:
    """1 - Surface-Dice (MemBrain v2): harmonic mean of soft-skeleton precision and recall.

    Precision = |S_pred * M_gt| / |S_pred|, recall = |S_gt * M_pred| / |S_gt|, where the
    ground truth is blurred by a Gaussian of ``gt_sigma`` voxels before skeletonisation.
    Sums run over the batch; the result is averaged over foreground classes.
    """
    prob = p.prob[:, p.fg] * p.mask
    y = p.onehot[:, p.fg]
    skel_pred = soft_skeleton(prob, skeleton_iterations)
    skel_gt = soft_skeleton(gaussian_blur(y, gt_sigma), skeleton_iterations) * p.mask
    dims = (0, 2, 3, 4)
    precision = ((skel_pred * y).sum(dims) + smooth) / (skel_pred.sum(dims) + smooth)
    recall = ((skel_gt * prob).sum(dims) + smooth) / (skel_gt.sum(dims) + smooth)
    score = 2 * precision * recall / (precision + recall)
    return 1 - score.mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "bce": cross_entropy,
    "ce": cross_entropy,
    "dice": dice,
    "tversky": tversky,
    "mse": mse,
    "regression": regression,
    "adaptive_wing": adaptive_wing,
    "surface_dice": surface_dice,
}

OPTIONS = {"smooth", "skeleton_iterations", "gt_sigma", "tversky_alpha", "tversky_beta",
           "awing_omega", "awing_theta", "awing_epsilon", "awing_alpha"}


def downsample_target(target: torch.Tensor, size: Sequence[int],
                      mode: str = "max") -> torch.Tensor:
    """Shrink a ``(B, D, H, W)`` label map to spatial ``size`` by integer factors.

    ``mode="max"`` keeps the largest label of each block (thin membranes survive; a block is
    ignored only if all of it is ignored, since the ignore label -1 is the smallest);
    ``mode="nearest"`` takes the first voxel of each block.
    """
    factors = [s // t for s, t in zip(target.shape[-3:], size)]
    if any(s != f * t for s, f, t in zip(target.shape[-3:], factors, size)):
        raise ValueError(f"cannot downsample target {tuple(target.shape)} to {tuple(size)}")
    if factors == [1, 1, 1]:
        return target
    if mode == "nearest":
        return target[..., ::factors[0], ::factors[1], ::factors[2]]
    if mode != "max":
        raise ValueError(f"unknown target downsampling mode {mode!r}")
    pooled = F.max_pool3d(target.float().unsqueeze(1), factors, stride=factors).squeeze(1)
    return pooled if target.is_floating_point() else pooled.round().to(target.dtype)


class SegmentationLoss(nn.Module):
    """Weighted sum of named losses, with deep-supervision support.

    Called as ``loss_fn(logits_or_list, target)``. A list of outputs (full resolution first)
    gets targets downsampled by :func:`downsample_target` and weights halving per level,
    normalised to sum to 1. ``last_terms`` holds the unweighted full-resolution terms of the
    last call (floats) for logging.
    """

    def __init__(self, weights: dict[str, float], ignore_index: int = -1,
                 target_downsampling: str = "max", **options: Any):
        super().__init__()
        unknown = set(weights) - set(LOSSES)
        if unknown or not weights:
            raise ValueError(f"unknown or no loss names {sorted(unknown)}: "
                             f"choose from {sorted(LOSSES)}")
        bad = set(options) - OPTIONS
        if bad:
            raise ValueError(f"unknown loss options {sorted(bad)}: choose from {sorted(OPTIONS)}")
        self.weights = dict(weights)
        self.ignore_index = ignore_index
        self.target_downsampling = target_downsampling
        self.options = options
        self.last_terms: dict[str, float] = {}

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Weighted loss of one output and its unweighted terms."""
        prepared = prepare(logits, target, self.ignore_index)
        terms = {name: LOSSES[name](prepared, **self.options) for name in self.weights}
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, terms

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor],
                target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if target.ndim == 5:
            target = target[:, 0]
        level_weights = [0.5 ** i for i in range(len(outputs))]
        norm = sum(level_weights)
        total = torch.zeros((), device=outputs[0].device)
        for i, (out, w) in enumerate(zip(outputs, level_weights)):
            t = downsample_target(target, out.shape[2:], self.target_downsampling)
            value, terms = self.single(out, t)
            total = total + (w / norm) * value
            if i == 0:
                self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return total


def build_loss(weights: dict[str, float] | None = None, ignore_index: int = -1,
               **options: Any) -> SegmentationLoss:
    """Build the training loss; default ``{"dice": 1, "bce": 1, "surface_dice": 1}`` (MemBrain).

    ``options``: ``smooth`` (1.0), ``skeleton_iterations`` (3), ``gt_sigma`` (1.0 voxel),
    ``tversky_alpha``/``tversky_beta`` (0.3/0.7), ``awing_omega``/``awing_theta``/
    ``awing_epsilon``/``awing_alpha`` (14/0.5/1/2.1), ``target_downsampling`` ("max").
    """
    return SegmentationLoss(weights or {"dice": 1.0, "bce": 1.0, "surface_dice": 1.0},
                            ignore_index=ignore_index, **options)
