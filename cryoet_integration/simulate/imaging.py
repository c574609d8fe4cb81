"""Image formation: tilt series of the scene with CTF, dose, radiation damage and noise.

Per tilt (projection approximation of the SHREC 2021 multislice simulator, which is too slow
here): the excess potential is projected along the beam, misaligned (residual shifts,
in-plane rotation, tilt-angle error), damaged by the dose received so far, turned into an
exit wave ``exp(i sigma phi - mu)`` with the ice slab's inelastic loss, imaged through the CTF
(defocus varying across the tilted specimen, astigmatism, Cs, temporal and spatial coherence
envelopes, B-factor), integrated over pixels and counted with Poisson noise at the per-tilt
dose. Images are returned as relative intensity ``counts / mean - 1`` (dense matter dark).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import optics
from ..optics import ELECTRON_REST_ENERGY_EV, electron_wavelength
from .config import SimulationConfig
from .projector import forward_project

CC_MM = 2.7  # chromatic aberration
ENERGY_SPREAD_EV = 0.7
ILLUMINATION_SEMIANGLE_RAD = 2e-5
ICE_INELASTIC_MFP_ANGST_300KV = 3500.0
DEFOCUS_STRIP_UM = 0.2  # largest defocus step between CTF strips of a tilted image


@dataclasses.dataclass
class TiltSeries:
    """A simulated tilt series and what was done to it.

    Attributes:
        images: (n, Y, X) float32 relative intensities (noisy; phase-flipped if configured).
        clean: (n, Y, X) float32 the same without noise, or None.
        angles_deg: nominal tilt angles (what reconstruction assumes).
        true_angles_deg: angles actually used (nominal + tilt error).
        shifts_voxels: (n, 2) residual x, y shifts applied to each image.
        rotations_deg: (n,) residual in-plane rotations.
        dose_before: (n,) e/Å² received before each image (dose-symmetric order).
        ice_path_angst: (n,) beam path through the ice slab.
    """

    images: np.ndarray
    clean: np.ndarray | None
    angles_deg: np.ndarray
    true_angles_deg: np.ndarray
    shifts_voxels: np.ndarray
    rotations_deg: np.ndarray
    dose_before: np.ndarray
    ice_path_angst: np.ndarray


def interaction_constant(voltage_kv: float) -> float:
    """sigma (rad per V·Å): phase shift per projected potential."""
    v = voltage_kv * 1e3
    lam = electron_wavelength(voltage_kv)
    return 2 * np.pi / (lam * v) * (ELECTRON_REST_ENERGY_EV + v) / (
        2 * ELECTRON_REST_ENERGY_EV + v)


def dose_symmetric_order(angles_deg: np.ndarray) -> np.ndarray:
    """Acquisition rank of each angle in a Hagen dose-symmetric scheme from the lowest |tilt|."""
    start = int(np.argmin(np.abs(angles_deg)))
    order = [start]
    lo, hi = start - 1, start + 1
    side = 1
    while lo >= 0 or hi < len(angles_deg):
        for _ in range(2):  # two images per side before switching (groups of 2)
            if side > 0 and hi < len(angles_deg):
                order.append(hi)
                hi += 1
            elif side < 0 and lo >= 0:
                order.append(lo)
                lo -= 1
        side = -side
    rank = np.empty(len(angles_deg), int)
    rank[np.array(order)] = np.arange(len(order))
    return rank


def _freqs(ny: int, nx: int, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """|k| (1/Å) and azimuth (rad) on an rfft2 grid of an (ny, nx) image."""
    ky = np.fft.fftfreq(ny, d=voxel_size)[:, None]
    kx = np.fft.rfftfreq(nx, d=voxel_size)[None, :]
    return np.hypot(kx, ky), np.arctan2(ky, kx)


def _full_freqs(ny: int, nx: int, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    ky = np.fft.fftfreq(ny, d=voxel_size)[:, None]
    kx = np.fft.fftfreq(nx, d=voxel_size)[None, :]
    return np.hypot(kx, ky), np.arctan2(ky, kx)


def ctf_phase(k: np.ndarray, azimuth: np.ndarray, defocus_angst: float,
              cfg: SimulationConfig) -> np.ndarray:
    """Wave aberration chi(k) (rad); underfocus positive, astigmatism from the config."""
    df = defocus_angst + 0.5 * cfg.astigmatism_angst * np.cos(
        2 * (azimuth - np.deg2rad(cfg.astigmatism_angle_deg)))
    return optics.ctf_phase(k, df, cfg.voltage_kv, cfg.cs_angst)


def envelope(k: np.ndarray, defocus_angst: float, cfg: SimulationConfig) -> np.ndarray:
    """Temporal and spatial coherence envelopes times the B-factor decay."""
    lam = electron_wavelength(cfg.voltage_kv)
    delta = CC_MM * 1e7 * ENERGY_SPREAD_EV / (cfg.voltage_kv * 1e3)
    cs = cfg.cs_angst
    temporal = np.exp(-((np.pi * lam * delta * k ** 2) ** 2) / (16 * np.log(2)))
    spatial = np.exp(-((np.pi * ILLUMINATION_SEMIANGLE_RAD / lam) ** 2)
                     * (cs * lam ** 3 * k ** 3 - defocus_angst * lam * k) ** 2)
    return temporal * spatial * np.exp(-cfg.bfactor_angst2 * k ** 2 / 4)


def exposure_attenuation(k: np.ndarray, dose: float, voltage_kv: float) -> np.ndarray:
    """Radiation-damage attenuation after ``dose`` e/Å² (Grant & Grigorieff 2015)."""
    kk = np.maximum(k, 1e-6)
    critical = (0.245 * kk ** -1.665 + 2.81) * (1.0 if voltage_kv >= 250 else 0.8)
    return np.exp(-dose / (2 * critical))


def _strip_blend(image_fn, defocus_per_column: np.ndarray) -> np.ndarray:
    """Evaluate ``image_fn(defocus)`` at a few defocus values and blend them per column."""
    lo, hi = float(defocus_per_column.min()), float(defocus_per_column.max())
    n = max(2, int(np.ceil((hi - lo) / (DEFOCUS_STRIP_UM * 1e4))) + 1) if hi > lo else 1
    if n == 1:
        return image_fn(lo)
    nodes = np.linspace(lo, hi, n)
    pos = np.interp(defocus_per_column, nodes, np.arange(n))
    i0 = np.clip(np.floor(pos).astype(int), 0, n - 2)
    w = (pos - i0)[None, :]
    images = [image_fn(d) for d in nodes]
    stack = np.stack(images)  # (n, Y, X)
    cols = np.arange(len(defocus_per_column))
    return stack[i0, :, cols].T * (1 - w) + stack[i0 + 1, :, cols].T * w


def _misalign(img: np.ndarray, shift_xy: np.ndarray, rot_deg: float) -> np.ndarray:
    """Rotate ``img`` (Y, X) about its centre by ``rot_deg`` and shift by ``shift_xy`` px."""
    from scipy import ndimage

    ny, nx = img.shape
    a = np.deg2rad(rot_deg)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # (y, x) rows
    centre = np.array([(ny - 1) / 2, (nx - 1) / 2])
    shift = np.array([shift_xy[1], shift_xy[0]])
    offset = centre - m @ (centre + shift)
    return ndimage.affine_transform(img, m, offset=offset, order=1, mode="constant", cval=0.0)


def ice_path_length(slab_normal: np.ndarray, thickness_angst: float, angle_deg: float) -> float:
    """Beam path (Å) through an infinite ice slab at tilt ``angle_deg`` about y."""
    a = np.deg2rad(angle_deg)
    beam = np.array([-np.sin(a), 0.0, np.cos(a)])
    return float(thickness_angst / max(abs(float(np.dot(slab_normal, beam))), 0.05))


def simulate_tilt_series(potential: np.ndarray, absorption: np.ndarray, slab: dict,
                         cfg: SimulationConfig, rng: np.random.Generator,
                         keep_clean: bool = True) -> TiltSeries:
    """Image the scene (potential/absorption ``[z, y, x]`` V at ``cfg.voxel_size`` Å).

    ``slab`` holds ``normal`` and ``thickness_angst`` of the ice slab.
    """
    vs = float(cfg.voxel_size)
    angles = cfg.tilt_angles()
    n = len(angles)
    true_angles = angles + rng.normal(0.0, cfg.tilt_error_deg, n)
    shifts = rng.normal(0.0, cfg.misalign_shift_angst / vs, (n, 2))
    rotations = rng.normal(0.0, cfg.misalign_rotation_deg, n)
    dose_tilt = cfg.dose_total / n
    dose_before = dose_symmetric_order(angles) * dose_tilt
    sigma = interaction_constant(cfg.voltage_kv)
    mfp = ICE_INELASTIC_MFP_ANGST_300KV * np.sqrt(cfg.voltage_kv / 300.0)
    normal = np.asarray(slab["normal"], float)

    proj = forward_project(np.stack([potential, absorption]), true_angles) * np.float32(vs)
    _, ny, nx = potential.shape
    k_r, _ = _freqs(ny, nx, vs)
    k_f, az_f = _full_freqs(ny, nx, vs)
    pixel_mtf = (np.sinc(np.fft.fftfreq(ny)[:, None]) * np.sinc(np.fft.rfftfreq(nx)[None, :]))
    u_angst = (np.arange(nx) - (nx - 1) / 2) * vs
    images = np.empty((n, ny, nx), np.float32)
    clean = np.empty((n, ny, nx), np.float32) if keep_clean else None
    ice_paths = np.empty(n)
    for i in range(n):
        phi = [_misalign(proj[i, c], shifts[i], rotations[i]) for c in range(2)]
        damage = exposure_attenuation(k_r, dose_before[i], cfg.voltage_kv)
        phi = [np.fft.irfft2(np.fft.rfft2(p) * damage, s=(ny, nx)) for p in phi]
        ice_paths[i] = ice_path_length(normal, slab["thickness_angst"], true_angles[i])
        amplitude = np.exp(-ice_paths[i] / (2 * mfp) - sigma * phi[1])
        wave_k = np.fft.fft2(amplitude * np.exp(1j * sigma * phi[0]))
        defocus_cols = cfg.defocus_angst + u_angst * np.tan(np.deg2rad(true_angles[i]))

        def image(defocus: float, wave_k=wave_k) -> np.ndarray:
            h = np.exp(1j * ctf_phase(k_f, az_f, defocus, cfg)) * envelope(k_f, defocus, cfg)
            return np.abs(np.fft.ifft2(wave_k * h)) ** 2

        intensity = _strip_blend(image, defocus_cols)
        intensity = np.maximum(np.fft.irfft2(np.fft.rfft2(intensity) * pixel_mtf, s=(ny, nx)),
                               0.0)
        expected = intensity * dose_tilt * vs * vs
        counts = rng.poisson(expected).astype(np.float64)
        images[i] = counts / max(counts.mean(), 1e-9) - 1.0
        if clean is not None:
            clean[i] = expected / max(expected.mean(), 1e-9) - 1.0
    if cfg.phase_flip:
        images = phase_flip(images, angles, cfg)
        if clean is not None:
            clean = phase_flip(clean, angles, cfg)
    return TiltSeries(images, clean, angles, true_angles, shifts, rotations, dose_before,
                      ice_paths)


def phase_flip(images: np.ndarray, angles_deg: np.ndarray, cfg: SimulationConfig) -> np.ndarray:
    """Correct the CTF's sign (strip-wise along the defocus gradient) with nominal geometry."""
    n, ny, nx = images.shape
    vs = float(cfg.voxel_size)
    k_r, az_r = _freqs(ny, nx, vs)
    a = cfg.amplitude_contrast
    u_angst = (np.arange(nx) - (nx - 1) / 2) * vs
    out = np.empty_like(images)
    for i in range(n):
        spec = np.fft.rfft2(images[i])

        def flipped(defocus: float, spec=spec) -> np.ndarray:
            chi = ctf_phase(k_r, az_r, defocus, cfg)
            sign = np.sign(np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi))
            return np.fft.irfft2(spec * sign, s=(ny, nx))

        cols = cfg.defocus_angst + u_angst * np.tan(np.deg2rad(angles_deg[i]))
        out[i] = _strip_blend(flipped, cols)
    return out
