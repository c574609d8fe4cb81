"""Tomogram preprocessing for segmentation (MemBrain v2, section 2.4).

Robust normalisation, pixel-size matching by Fourier cropping/padding, radially averaged
Fourier amplitude-spectrum matching to a reference (DeePiCt), Warp/IsoNet-style Wiener-like
CTF deconvolution, and a soft-edged Fourier low-pass. Arrays are ``[z, y, x]``; sizes in Å
are physical, frequencies are in cycles per voxel unless stated. Outputs are float32.
FFTs use the threads of the caller's ``scipy.fft.set_workers`` (the commands' ``--threads``).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import scipy.fft as sfft

from formats import Volume

from . import optics

Profile = tuple[np.ndarray, np.ndarray]
# MAD of a normal distribution times this is its standard deviation.
MAD_TO_SIGMA = 1.4826


def robust_stats(data: np.ndarray, max_samples: int = 2_000_000,
                 axis_step: int | None = None) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)`` of ``data`` (mean and std if the MAD is 0): the statistics
    of :func:`robust_normalize`, from the same voxels.

    The sample is gathered slab by slab along the first axis (a memory-mapped array read
    from its file: ``formats.read_rows``), so a tomogram larger than memory is sampled in
    bounded memory.
    """
    from formats import read_rows, slabs

    # Lazy arrays (memory maps, OME-Zarr) are sampled slab by slab, never loaded whole.
    arr = data if hasattr(data, "shape") and hasattr(data, "__getitem__") else np.asarray(data)
    if axis_step is not None:
        sample = np.asarray(arr[(slice(None, None, axis_step),) * arr.ndim]).reshape(-1)
    elif arr.ndim < 2:
        flat = arr.reshape(-1)
        sample = flat[::max(1, flat.size // max_samples)]
    else:
        step = max(1, arr.size // max_samples)
        plane = int(np.prod(arr.shape[1:]))
        parts = []
        for z in slabs(arr.shape):
            first = (-z.start * plane) % step
            block = read_rows(arr, z.start, z.stop) if arr.ndim == 3 else np.asarray(arr[z])
            parts.append(np.array(block.reshape(-1)[first::step]))
        sample = np.concatenate(parts)
    sample = sample.astype(np.float64)
    centre = float(np.median(sample))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(sample - centre)))
    if not scale > 0:
        centre, scale = float(sample.mean()), float(sample.std()) or 1.0
    return centre, scale


def normalize_with(data: np.ndarray, stats: tuple[float, float]) -> np.ndarray:
    """``(data - centre) / scale`` as float32, for ``stats`` from :func:`robust_stats`."""
    centre, scale = stats
    return ((np.asarray(data, dtype=np.float32) - np.float32(centre))
            / np.float32(scale)).astype(np.float32, copy=False)


def robust_normalize(data: np.ndarray, max_samples: int = 2_000_000,
                     axis_step: int | None = None) -> np.ndarray:
    """Robust z-score: ``(x - median) / (1.4826 * MAD)`` (falls back to mean/std if MAD = 0).

    The project's one robust z-score. Statistics come from at most ``max_samples`` evenly
    strided voxels so whole tomograms normalise in one pass, or, with ``axis_step``, from
    every ``axis_step``-th voxel along each axis (an even spatial grid). Returns float32.
    """
    return normalize_with(data, robust_stats(data, max_samples, axis_step))


def minmax_normalize(data: np.ndarray) -> np.ndarray:
    """Min-max normalisation of a whole volume to [0, 1] (Nano-Ötzi's per-volume rule);
    a constant volume becomes 0. Returns float32."""
    arr = np.asarray(data, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    return ((arr - np.float32(lo)) / np.float32(hi - lo if hi > lo else 1.0)).astype(
        np.float32, copy=False)


NORMALISATIONS = ("robust", "minmax")


def normalize(data: np.ndarray, method: str = "robust") -> np.ndarray:
    """``robust`` (:func:`robust_normalize`) or ``minmax`` (:func:`minmax_normalize`)."""
    if method == "robust":
        return robust_normalize(data)
    if method == "minmax":
        return minmax_normalize(data)
    raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got "
                     f"{method!r}")


def rescaled_shape(shape: tuple[int, ...], from_angst: float, to_angst: float
                   ) -> tuple[int, ...]:
    """Voxel counts after resampling from ``from_angst`` to ``to_angst`` per voxel.

    Counts are rounded, so the exact new voxel size per axis is ``from * n_old / n_new``.
    """
    if not (from_angst > 0 and to_angst > 0):
        raise ValueError(f"voxel sizes must be positive, got {from_angst} and {to_angst} Å")
    return tuple(max(1, int(round(n * from_angst / to_angst))) for n in shape)


def _resize_axis(spec: np.ndarray, axis: int, new: int) -> np.ndarray:
    """Crop or zero-pad a full (unshifted) spectrum along ``axis`` to ``new`` samples.

    An even-sized Nyquist bin is split in two when padding and folded when cropping, which
    keeps real signals real and makes crop-after-pad the identity.
    """
    old = spec.shape[axis]
    if new == old:
        return spec
    spec = np.moveaxis(spec, axis, 0)
    out = np.zeros((new,) + spec.shape[1:], dtype=spec.dtype)
    keep = min(old, new)
    pos = (keep + 1) // 2          # indices 0 .. pos-1 are non-negative frequencies
    neg = keep - pos               # the last ``neg`` are negative frequencies
    out[:pos] = spec[:pos]
    if neg:
        out[new - neg:] = spec[old - neg:]
    if keep % 2 == 0:
        nyquist = new - neg  # where frequency -keep/2 landed
        if new > old:
            out[nyquist] /= 2
            out[keep // 2] = out[nyquist]
        else:
            out[nyquist] += spec[keep // 2]
    return np.moveaxis(out, 0, axis)


def rescale_to_voxel_size(data: np.ndarray, from_angst: float, to_angst: float) -> np.ndarray:
    """Resample a volume ``[z, y, x]`` from ``from_angst`` to ``to_angst`` Å/voxel in Fourier
    space (cropping to downsample, zero-padding to upsample; Smith et al. 1997).

    Intensities keep their scale (the mean is preserved). Downsampling then upsampling data
    that is band-limited below the coarse Nyquist frequency returns it exactly. The output
    shape is :func:`rescaled_shape`.
    """
    data = np.asarray(data)
    new_shape = rescaled_shape(data.shape, from_angst, to_angst)
    if new_shape == data.shape:
        return data.astype(np.float32)
    spec = sfft.fftn(data.astype(np.float32))
    for axis, n in enumerate(new_shape):
        spec = _resize_axis(spec, axis, n)
    out = sfft.ifftn(spec).real
    out *= np.prod(new_shape) / np.prod(data.shape)
    return out.astype(np.float32)


def rescale_volume(volume: Volume, to_angst: float) -> Volume:
    """:func:`rescale_to_voxel_size` on a :class:`Volume`; its ``voxel_size`` becomes the
    achieved size along x (``from * n_old / n_new``)."""
    if not volume.voxel_size > 0:
        raise ValueError(f"{volume.path or 'volume'}: voxel size unknown, cannot rescale")
    data = rescale_to_voxel_size(volume.data, volume.voxel_size, to_angst)
    out = volume.with_data(data)
    out.voxel_size = volume.voxel_size * volume.data.shape[-1] / data.shape[-1]
    return out


def radial_frequency(shape: tuple[int, ...]) -> np.ndarray:
    """|k| in cycles/voxel on the ``rfftn`` grid of ``shape`` (sparse-broadcast to full)."""
    freqs = [sfft.fftfreq(n) for n in shape[:-1]] + [sfft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    return np.sqrt(sum(g.astype(np.float32) ** 2 for g in grids))


def _shells(shape: tuple[int, ...], n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Shell index (0 .. n_bins-1, Nyquist 0.5 at the last edge; corners clamp) and centres."""
    index = np.minimum((radial_frequency(shape) * (2 * n_bins)).astype(np.int64), n_bins - 1)
    centres = (np.arange(n_bins) + 0.5) / (2 * n_bins)
    return index, centres


def radial_amplitude(data: np.ndarray, n_bins: int | None = None) -> Profile:
    """Radially averaged Fourier amplitude ``(frequency cycles/voxel, amplitude)``.

    Amplitudes are divided by sqrt(number of voxels), so white noise of unit variance has
    amplitude ~1 whatever the volume size. ``n_bins`` defaults to ``min(shape) // 2``.
    """
    n_bins = n_bins or max(2, min(data.shape) // 2)
    amp = np.abs(sfft.rfftn(np.asarray(data, dtype=np.float32)))
    index, centres = _shells(data.shape, n_bins)
    index = np.broadcast_to(index, amp.shape)
    sums = np.bincount(index.ravel(), weights=amp.ravel(), minlength=n_bins)
    counts = np.bincount(index.ravel(), minlength=n_bins)
    profile = sums / np.maximum(counts, 1) / math.sqrt(data.size)
    return centres, profile


def match_amplitude_spectrum(data: np.ndarray, reference: Union[np.ndarray, Profile],
                             n_bins: int | None = None) -> np.ndarray:
    """Give ``data`` the radially averaged amplitude spectrum of ``reference``.

    ``reference`` is a volume or a :func:`radial_amplitude` profile (frequency, amplitude).
    Each frequency shell of ``data`` is scaled by reference/own amplitude (phases unchanged,
    the DC term kept), so ``radial_amplitude`` of the result equals the reference profile
    interpolated at this volume's shells.
    """
    data = np.asarray(data, dtype=np.float32)
    n_bins = n_bins or max(2, min(data.shape) // 2)
    ref_freq, ref_amp = (radial_amplitude(reference) if isinstance(reference, np.ndarray)
                         else reference)
    centres, own = radial_amplitude(data, n_bins)
    target = np.interp(centres, ref_freq, ref_amp)
    gain = np.where(own > 0, target / np.where(own > 0, own, 1.0), 0.0)
    index, _ = _shells(data.shape, n_bins)
    spec = sfft.rfftn(data)
    dc = spec[(0,) * data.ndim]
    spec *= gain[index].astype(np.float32)
    spec[(0,) * data.ndim] = dc
    return sfft.irfftn(spec, s=data.shape).astype(np.float32)


def ctf_1d(frequency: np.ndarray, defocus_um: float, voltage_kv: float = 300.0,
           cs_mm: float = 2.7, amplitude_contrast: float = 0.07,
           phase_shift_deg: float = 0.0) -> np.ndarray:
    """CTF at spatial ``frequency`` (1/Å); ``defocus_um`` > 0 is underfocus.

    :func:`optics.ctf` of :func:`optics.ctf_phase` plus a phase shift (positive at low
    frequency).
    """
    k = np.asarray(frequency, dtype=np.float64)
    chi = optics.ctf_phase(k, defocus_um * 1e4, voltage_kv, cs_mm * 1e7)
    return optics.ctf(chi + math.radians(phase_shift_deg), amplitude_contrast)


def wiener_filter_1d(voxel_size_angst: float, defocus_um: float, voltage_kv: float = 300.0,
                     cs_mm: float = 2.7, amplitude_contrast: float = 0.07,
                     snr_falloff: float = 1.0, strength: float = 1.0,
                     highpass_nyquist: float = 0.02, phase_flipped: bool = False,
                     phase_shift_deg: float = 0.0, samples: int = 2048) -> Profile:
    """Warp's Wiener-like deconvolution filter: ``(fraction of Nyquist 0..1, gain)``.

    The assumed SNR is ``10**(3 strength) * exp(-100 snr_falloff f / voxel_size)`` (f in
    fractions of Nyquist) times a cosine high-pass reaching 1 at ``highpass_nyquist``; the
    gain is ``ctf / (ctf^2 + 1/snr)``.
    """
    f = np.linspace(0.0, 1.0, samples, endpoint=False)
    highpass = 1 - np.cos(np.minimum(1.0, f / highpass_nyquist) * math.pi)
    snr = np.exp(-f * snr_falloff * 100 / voxel_size_angst) * 10 ** (3 * strength) * highpass
    ctf = ctf_1d(f / (2 * voxel_size_angst), defocus_um, voltage_kv, cs_mm,
                 amplitude_contrast, phase_shift_deg)
    if phase_flipped:
        ctf = np.abs(ctf)
    with np.errstate(divide="ignore"):
        gain = np.where(snr > 0, ctf / (ctf * ctf + 1 / np.where(snr > 0, snr, 1.0)), 0.0)
    return f, gain


def wiener_deconvolve(data: np.ndarray, voxel_size_angst: float, defocus_um: float,
                      voltage_kv: float = 300.0, cs_mm: float = 2.7,
                      amplitude_contrast: float = 0.07, snr_falloff: float = 1.0,
                      strength: float = 1.0, highpass_nyquist: float = 0.02,
                      phase_flipped: bool = False, phase_shift_deg: float = 0.0) -> np.ndarray:
    """Wiener-like deconvolution of a tomogram ``[z, y, x]`` (Warp; IsoNet/MemBrain "deconv").

    The 1D filter of :func:`wiener_filter_1d` is applied as an isotropic 3D radial filter
    (frequencies beyond Nyquist in the corners take the last value). Parameters: voxel size
    in Å, defocus in µm (underfocus positive), voltage in kV, Cs in mm.
    """
    f, gain = wiener_filter_1d(voxel_size_angst, defocus_um, voltage_kv, cs_mm,
                               amplitude_contrast, snr_falloff, strength, highpass_nyquist,
                               phase_flipped, phase_shift_deg)
    data = np.asarray(data, dtype=np.float32)
    radius = radial_frequency(data.shape) * 2  # fraction of Nyquist
    spec = sfft.rfftn(data)
    spec *= np.interp(radius, f, gain).astype(np.float32)
    return sfft.irfftn(spec, s=data.shape).astype(np.float32)


def lowpass_filter(data: np.ndarray, resolution_angst: float, voxel_size_angst: float,
                   edge_width: float = 0.02) -> np.ndarray:
    """Fourier low-pass to ``resolution_angst`` with a raised-cosine edge.

    The gain is 1 below ``fc - edge_width/2`` and 0 above ``fc + edge_width/2``, where
    ``fc = voxel_size / resolution`` cycles/voxel and ``edge_width`` is in cycles/voxel.
    """
    if not (resolution_angst > 0 and voxel_size_angst > 0):
        raise ValueError("resolution and voxel size must be positive (Å)")
    data = np.asarray(data, dtype=np.float32)
    fc = voxel_size_angst / resolution_angst
    radius = radial_frequency(data.shape)
    if edge_width > 0:
        t = np.clip((radius - (fc - edge_width / 2)) / edge_width, 0.0, 1.0)
        gain = 0.5 * (1 + np.cos(math.pi * t))
    else:
        gain = (radius <= fc).astype(np.float32)
    spec = sfft.rfftn(data)
    spec *= gain.astype(np.float32)
    return sfft.irfftn(spec, s=data.shape).astype(np.float32)
