"""Opacity transfer functions: ramps and their automatic left limits (Nano-Ötzi, section 5.1).

The left limit ``a`` of a class ramp is found by the iterative (isodata) thresholding of
Ridler & Calvard, the paper's Algorithm 1, applied to every z slice of the class probability
map; the mean over slices is the ramp's left limit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

LEVELS = 256  # Algorithm 1 works on 8-bit grey levels; thresholds are normalised back to [0, 1]


def ramp(values: np.ndarray, low: float, high: float = 1.0) -> np.ndarray:
    """The ramp ``clamp((v - low) / (high - low), 0, 1)`` (paper eq. 1 with ``high`` = 1).

    Args:
        values: probabilities or normalised intensities, any shape.
        low: left limit (0 below it); high: right limit (1 above it), ``high > low``.
    """
    if not high > low:
        raise ValueError(f"ramp needs high > low, got low={low}, high={high}")
    out = (np.asarray(values, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def isodata_level(counts: np.ndarray) -> int | None:
    """Algorithm 1 on a histogram of integer levels ``0..len(counts)-1``.

    Start at the rounded mean level T; repeat T <- round((mean below T + mean at/above T) / 2)
    until T changes by less than one level. Rounding is half-up. An empty side of the split
    contributes T itself (only possible at the first step). Returns ``None`` for an empty or
    single-level histogram, where no threshold separates anything.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or np.count_nonzero(counts) < 2:
        return None
    levels = np.arange(len(counts), dtype=np.float64)
    cum_n = np.cumsum(counts)
    cum_s = np.cumsum(counts * levels)
    t = _round_half_up(cum_s[-1] / total)
    for _ in range(4 * len(counts)):  # converges in a few steps; the bound only guards cycles
        n_below = cum_n[t - 1] if t > 0 else 0.0
        s_below = cum_s[t - 1] if t > 0 else 0.0
        n_above, s_above = total - n_below, cum_s[-1] - s_below
        bg = s_below / n_below if n_below > 0 else t
        fg = s_above / n_above if n_above > 0 else t
        new_t = _round_half_up((bg + fg) / 2.0)
        if abs(new_t - t) < 1:
            return new_t
        t = new_t
    return t


def quantize(image: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] to integer levels ``0..255`` (round half up, clipped)."""
    scaled = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * (LEVELS - 1)
    return np.floor(scaled + 0.5).astype(np.int64)


def slice_threshold(image: np.ndarray) -> float | None:
    """Algorithm 1 on one 2D probability slice; the threshold in [0, 1] or ``None`` if flat."""
    counts = np.bincount(quantize(image).ravel(), minlength=LEVELS)
    level = isodata_level(counts)
    return None if level is None else level / (LEVELS - 1)


@dataclasses.dataclass
class ThresholdEstimate:
    """The automatic left ramp limit of one class.

    Attributes:
        value: mean of the per-slice thresholds, in probability units [0, 1].
        per_slice: threshold of each z slice (NaN where the slice is constant).
    """

    value: float
    per_slice: np.ndarray


def estimate_threshold(prob: np.ndarray, fallback: float = 0.5) -> ThresholdEstimate:
    """Per-z-slice Algorithm 1 on a probability map ``[z, y, x]``, averaged over slices.

    Slices with a single grey level have no threshold and are left out of the mean; if every
    slice is flat, ``fallback`` is used (a map that constant carries no ramp information).
    """
    prob = np.asarray(prob)
    per = np.array([np.nan if (t := slice_threshold(s)) is None else t for s in prob],
                   dtype=np.float64)
    valid = per[np.isfinite(per)]
    return ThresholdEstimate(float(valid.mean()) if valid.size else float(fallback), per)


def write_histogram_png(path: str | Path, prob: np.ndarray, estimate: ThresholdEstimate,
                        name: str, color: tuple[float, float, float] = (0.3, 0.3, 0.3),
                        overwrite: bool = False) -> None:
    """A two-panel PNG: the class histogram with the ramp limit, and the per-slice thresholds.

    Needs matplotlib (imported here, so rendering itself does not depend on it).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from formats import atomic_path

    counts = np.bincount(quantize(prob).ravel(), minlength=LEVELS)
    centers = np.arange(LEVELS) / (LEVELS - 1)
    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(centers, np.maximum(counts, 0.5), width=1 / LEVELS, color=color, log=True)
    ax1.axvline(estimate.value, color="k", ls="--",
                label=f"ramp left limit a = {estimate.value:.3f}")
    ax1.set_xlabel("class probability")
    ax1.set_ylabel("voxels (log)")
    ax1.set_title(f"{name}: histogram")
    ax1.legend(loc="upper center", fontsize=8)
    ax2.plot(np.arange(len(estimate.per_slice)), estimate.per_slice, ".", color=color, ms=3)
    ax2.axhline(estimate.value, color="k", ls="--")
    ax2.set_xlabel("z slice")
    ax2.set_ylabel("Algorithm 1 threshold")
    ax2.set_ylim(0, 1)
    ax2.set_title("per-slice thresholds (mean = a)")
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
