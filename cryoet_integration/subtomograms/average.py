"""Subtomogram averaging under known orientations, missing-wedge weighted, and the FSC.

Each subtomogram ``s`` (``[z, y, x]``, box^3, its particle centred at voxel ``box // 2 +
shift``) of a particle with orientation R (reference -> tomogram) is brought into the
reference frame, ``ref_i(p) = s(R p + box // 2 + shift)``: the rotation trilinearly
(``picking.template.filters.rotate``), the shift exactly (a Fourier phase ramp). Its
missing-wedge weight W (``rlnCtfImage``: centred, zero frequency at voxel ``box // 2``) turns
with it, ``W_i(k) = W(R k)``. The average is

    A = IFFT( sum_i W_i F_i / max(sum_i W_i, 1) )

so Fourier voxels seen by many particles are their mean, those that no particle saw stay
empty; without weights it is the plain mean. Two half-set averages (rlnRandomSubset, else
alternating particles) give the Fourier shell correlation; the resolution at a threshold is
where the FSC first falls below it (linear between shells), in Å at the subtomograms'
pixel size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

FSC_THRESHOLDS = (0.143, 0.5)


def wedge_weight(box: int, tilt_range_deg: tuple[float, float]) -> np.ndarray:
    """Missing-wedge weight of a box^3 subtomogram as RELION 3.1 reads an ``rlnCtfImage``:
    float32 ``[kz, ky, kx]`` full box^3, zero frequency at voxel ``box // 2`` (fftshift order),
    1 where a single-axis tilt series about y over ``tilt_range_deg`` (degrees) measured,
    0 in the wedge."""
    from ..picking.template.filters import wedge

    full = wedge((box, box, box), tilt_range_deg, half=False)
    return np.fft.fftshift(full).astype(np.float32)


def centred_weight(weight: np.ndarray, box: int) -> np.ndarray:
    """An ``rlnCtfImage`` as a centred full box^3 weight: RELION accepts it centred
    (box^3) or as its FFTW half (``[box, box, box // 2 + 1]``, zero frequency first)."""
    w = np.asarray(weight, dtype=np.float32)
    if w.shape == (box, box, box):
        return w
    if w.shape == (box, box, box // 2 + 1):
        full = np.empty((box, box, box), dtype=np.float32)
        full[..., :box // 2 + 1] = w
        # Hermitian symmetry: W(-k) = W(k) for the real weights RELION stores
        rest = np.arange(box // 2 + 1, box)
        full[..., rest] = w[(-np.arange(box)) % box][:, (-np.arange(box)) % box][..., box - rest]
        return np.fft.fftshift(full)
    raise ValueError(f"weight of shape {w.shape} does not fit a box of {box}")


def reference_spectrum(subtomogram: np.ndarray, matrix: np.ndarray, shift_xyz: np.ndarray
                       ) -> np.ndarray:
    """Fourier transform (fftshift order, complex ``[kz, ky, kx]``) of ``subtomogram``
    brought into the reference frame, ``ref(p) = s(R p + box // 2 + shift)``.

    The rotation is trilinear about the box centre (``filters.rotate``) and the shift, which
    is ``R^T shift`` in the reference frame, an exact phase ramp.

    Args:
        subtomogram: ``[z, y, x]`` box^3.
        matrix: (3, 3) orientation R, ``x, y, z`` (reference -> tomogram).
        shift_xyz: particle centre minus box centre, voxels ``x, y, z``.
    """
    import scipy.fft as sfft

    from ..picking.template.filters import frequencies, rotate

    data = np.asarray(subtomogram, dtype=np.float64)
    data = data - data.mean()  # the rotation fills with zeros: keep the box at zero mean
    r = np.asarray(matrix, dtype=float)
    spec = sfft.fftn(rotate(data, r.T), workers=-1)
    t = r.T @ np.asarray(shift_xyz, dtype=float)
    if np.any(t != 0):
        kz, ky, kx = frequencies(data.shape, half=False)
        spec *= np.exp(2j * np.pi * (kx * t[0] + ky * t[1] + kz * t[2]))
    return sfft.fftshift(spec)


def to_reference(subtomogram: np.ndarray, matrix: np.ndarray, shift_xyz: np.ndarray
                 ) -> np.ndarray:
    """``subtomogram`` in the reference frame (float32 ``[z, y, x]``, zero mean), see
    :func:`reference_spectrum`."""
    spec = reference_spectrum(subtomogram, matrix, shift_xyz)
    return np.fft.ifftn(np.fft.ifftshift(spec)).real.astype(np.float32)


@dataclasses.dataclass
class HalfSums:
    """Running Fourier sums of one half set: ``sum W_i F_i`` and ``sum W_i`` (fftshift
    order, full box^3) and the particle count."""

    data: np.ndarray
    weight: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, box: int) -> HalfSums:
        """Zero sums for a box^3 average."""
        return cls(np.zeros((box,) * 3, complex), np.zeros((box,) * 3, np.float64))

    def add(self, spec: np.ndarray, weight: np.ndarray | None) -> None:
        """Add one :func:`reference_spectrum` with its turned weight (or None)."""
        if weight is None:
            self.data += spec
            self.weight += 1.0
        else:
            self.data += spec * weight
            self.weight += weight
        self.count += 1

    def __add__(self, other: HalfSums) -> HalfSums:
        return HalfSums(self.data + other.data, self.weight + other.weight,
                        self.count + other.count)

    def average(self) -> np.ndarray:
        """The weighted average, float32 ``[z, y, x]``."""
        spec = self.data / np.maximum(self.weight, 1.0)
        return np.fft.ifftn(np.fft.ifftshift(spec)).real.astype(np.float32)


def fsc(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two box^3 maps: ``(shell, fsc)`` for shells 0 ..
    ``box // 2`` (shell s is the frequency ``s / box`` cycles per voxel, width 1)."""
    from ..picking.template.filters import radial_frequency

    box = a.shape[0]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    shell = np.rint(radial_frequency(a.shape, half=False) * box).astype(np.int64).ravel()
    n = box // 2 + 1
    keep = shell < n
    shell = shell[keep]
    cross = np.bincount(shell, (fa * np.conj(fb)).real.ravel()[keep], n)
    pa = np.bincount(shell, (np.abs(fa) ** 2).ravel()[keep], n)
    pb = np.bincount(shell, (np.abs(fb) ** 2).ravel()[keep], n)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(pa * pb > 0, cross / np.sqrt(pa * pb), 0.0)
    return np.arange(n), curve


def resolution(shells: np.ndarray, curve: np.ndarray, box: int, pixel_size: float,
               threshold: float) -> float:
    """Resolution (Å) where ``curve`` first falls below ``threshold`` after shell 0 (linear
    between shells); Nyquist (2 x pixel size) when it never does."""
    for s in range(1, len(curve)):
        if curve[s] < threshold:
            prev = curve[s - 1]
            t = (prev - threshold) / (prev - curve[s]) if prev != curve[s] else 0.0
            freq = (shells[s - 1] + t * (shells[s] - shells[s - 1])) / (box * pixel_size)
            return float(1.0 / freq) if freq > 0 else float("inf")
    return 2.0 * pixel_size


@dataclasses.dataclass
class AverageResult:
    """Full and half-set averages and their FSC."""

    average: np.ndarray
    half1: np.ndarray
    half2: np.ndarray
    shells: np.ndarray
    fsc: np.ndarray
    resolution_angst: dict[str, float]
    counts: tuple[int, int]


def average_subtomograms(items: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray,
                                               np.ndarray | None, int]],
                         box: int, pixel_size: float,
                         progress: Callable[[int], None] | None = None) -> AverageResult:
    """Average subtomograms under their orientations (see the module's formulas).

    Args:
        items: ``(subtomogram [z, y, x], matrix (3, 3), shift_xyz voxels, weight or None,
            half 1|2)`` per particle; ``weight`` a centred box^3 missing-wedge weight in the
            subtomogram's (tomogram) frame.
        box: subtomogram edge (voxels).
        pixel_size: Å per voxel.
        progress: called with the number of particles done.
    """
    from ..picking.template.filters import rotate

    halves = {1: HalfSums.empty(box), 2: HalfSums.empty(box)}
    turned: dict[tuple, np.ndarray] = {}
    for done, (sub, matrix, shift, weight, half) in enumerate(items, start=1):
        if sub.shape != (box,) * 3:
            raise ValueError(f"subtomogram of shape {sub.shape}, expected {(box,) * 3}")
        spec = reference_spectrum(sub, matrix, shift)
        w = None
        if weight is not None:
            # W_i(k) = W(R k): the same turn as the image (weights shared by many particles
            # with one orientation are turned once)
            key = (id(weight), tuple(np.round(np.asarray(matrix).ravel(), 9)))
            w = turned.get(key)
            if w is None:
                w = rotate(np.asarray(weight, dtype=np.float64), np.asarray(matrix).T)
                if len(turned) < 64:
                    turned[key] = w
        halves[2 if half == 2 else 1].add(spec, w)
        if progress is not None:
            progress(done)
    full = halves[1] + halves[2]
    h1, h2 = halves[1].average(), halves[2].average()
    shells, curve = fsc(h1, h2)
    res = {str(t): resolution(shells, curve, box, pixel_size, t) for t in FSC_THRESHOLDS}
    return AverageResult(full.average(), h1, h2, shells, curve, res,
                         (halves[1].count, halves[2].count))


def plot_fsc(path: Path, result: AverageResult, box: int, pixel_size: float,
             overwrite: bool = False) -> None:
    """Write the FSC curve with the 0.143 and 0.5 lines as a PNG (matplotlib, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from formats import atomic_path

    freq = result.shells / (box * pixel_size)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(freq, result.fsc, "o-", ms=3, label="half 1 vs half 2")
    for t, style in zip(FSC_THRESHOLDS, (":", "--")):
        r = result.resolution_angst[str(t)]
        ax.axhline(t, color="grey", ls=style, lw=1, label=f"FSC {t:g}: {r:.1f} Å")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f"{result.counts[0]} + {result.counts[1]} particles, {pixel_size:g} Å/voxel")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def centre_in_box(volume: np.ndarray, box: int) -> np.ndarray:
    """A cubic map ``[z, y, x]`` (centre at voxel ``n // 2``) padded with zeros or cropped to
    box^3 with that centre at voxel ``box // 2`` (the subtomograms' and averages' centre)."""
    vol = np.asarray(volume, dtype=np.float32)
    n = vol.shape[0]
    if vol.shape != (n, n, n):
        raise ValueError(f"expected a cubic map, got shape {vol.shape}")
    out = np.zeros((box, box, box), dtype=np.float32)
    lo = box // 2 - n // 2  # where voxel 0 of the map lands in the box
    src = slice(max(0, -lo), min(n, box - lo))
    dst = slice(max(0, lo), max(0, lo) + src.stop - src.start)
    out[dst, dst, dst] = vol[src, src, src]
    return out


def reference_agreement(average: np.ndarray, reference: np.ndarray, pixel_size: float
                        ) -> dict[str, float]:
    """How well an average matches a known reference at the same pixel size (Å).

    ``reference`` is centred into the average's box (:func:`centre_in_box`). Returns the
    Pearson correlation over the sphere inscribed in the box (``correlation``) and the
    resolution (Å) where the FSC between the two maps falls below 0.5
    (``fsc05_angst``; the usual cut-off for a map against a reference) and 0.143.
    """
    from ..picking.template.filters import sphere

    avg = np.asarray(average, dtype=np.float64)
    box = avg.shape[0]
    ref = centre_in_box(reference, box).astype(np.float64)
    inside = sphere(box, box / 2.0) > 0.5
    a, r = avg[inside] - avg[inside].mean(), ref[inside] - ref[inside].mean()
    denom = float(np.sqrt((a * a).sum() * (r * r).sum()))
    shells, curve = fsc(avg, ref)
    return {"correlation": float((a * r).sum() / denom) if denom > 0 else 0.0,
            "fsc05_angst": resolution(shells, curve, box, pixel_size, 0.5),
            "fsc0143_angst": resolution(shells, curve, box, pixel_size, 0.143)}


def place_back(shape_zyx: tuple[int, int, int], average: np.ndarray, centres_xyz: np.ndarray,
               matrices: np.ndarray) -> np.ndarray:
    """A map of ``shape_zyx`` with a copy of ``average`` (box^3, centre at ``box // 2``)
    turned by each orientation (reference -> tomogram) at each centre (voxels ``x, y, z``,
    rounded), overlapping copies summed: the particles as the average says they look."""
    from ..picking.template.filters import rotate

    out = np.zeros(shape_zyx, dtype=np.float32)
    box = average.shape[0]
    c = box // 2
    for centre, matrix in zip(np.rint(np.asarray(centres_xyz)).astype(int), matrices):
        copy = rotate(np.asarray(average, dtype=np.float32), np.asarray(matrix))
        lo = centre[::-1] - c
        dst = tuple(slice(max(0, lo[a]), min(shape_zyx[a], lo[a] + box)) for a in range(3))
        src = tuple(slice(d.start - lo[a], d.stop - lo[a]) for a, d in enumerate(dst))
        out[dst] += copy[src]
    return out
