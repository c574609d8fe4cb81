"""Gradient-free object-space illumination: local ambient occlusion and soft shadows.

Both terms are view independent, so they are computed once per volume (a correlation of the
opacity field with a fixed kernel, done by FFT) and reused for every frame:

- local ambient occlusion (Hernell et al. 2010, as used in Nano-Ötzi section 5.2): the mean
  opacity inside a sphere around each voxel whose centre is offset towards the light
  ("upwards"), so open faces turned to the light stay bright and cavities darken;
- soft shadows: the optical depth towards a spherical light, averaged over the cone of
  directions the light subtends, each distance shell weighted equally over its directions
  (the expectation of the paper's Monte Carlo cone sampling) and faded out with distance.
"""

from __future__ import annotations

import numpy as np


def unit(vector: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """The vector ``(x, y, z)`` scaled to unit length (raises on a zero vector)."""
    v = np.asarray(vector, dtype=np.float64)
    n = float(np.linalg.norm(v))
    if v.shape != (3,) or not np.isfinite(n) or n == 0:
        raise ValueError(f"light direction must be three numbers x,y,z, not all zero; got {vector}")
    return v / n


def _offsets(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    vz, vy, vx = np.meshgrid(r, r, r, indexing="ij")
    return vx, vy, vz


def ao_kernel(radius: float, offset: float, light_dir: np.ndarray) -> np.ndarray:
    """Uniform weights (sum 1) over a ball of ``radius`` voxels centred ``offset`` voxels
    along ``light_dir`` (x, y, z); array ``[z, y, x]`` centred on the voxel being shaded."""
    half = int(np.ceil(radius + offset))
    vx, vy, vz = _offsets(half)
    cx, cy, cz = offset * light_dir
    inside = (vx - cx) ** 2 + (vy - cy) ** 2 + (vz - cz) ** 2 <= radius ** 2
    k = inside.astype(np.float64)
    return k / k.sum()


def shadow_kernel(length: float, half_angle_deg: float, light_dir: np.ndarray) -> np.ndarray:
    """Cone weights towards the light: voxels within ``half_angle_deg`` of ``light_dir`` at
    distance 1..``length`` voxels. Each one-voxel distance shell sums to a linear fade
    ``1 - d / (length + 1)``, so the correlation with an opacity field is the mean optical
    depth (per voxel of path) over the cone's directions; array ``[z, y, x]``."""
    half = int(np.ceil(length))
    vx, vy, vz = _offsets(half)
    d = np.sqrt(vx ** 2 + vy ** 2 + vz ** 2)
    cos = (vx * light_dir[0] + vy * light_dir[1] + vz * light_dir[2]) / np.maximum(d, 1e-9)
    inside = (d >= 1.0) & (d <= length) & (cos >= np.cos(np.radians(half_angle_deg)))
    shell = np.rint(d).astype(np.int64)
    k = np.zeros_like(d)
    for s in np.unique(shell[inside]):
        members = inside & (shell == s)
        k[members] = (1.0 - s / (length + 1.0)) / members.sum()
    return k


def correlate_many(field: np.ndarray, kernels: list[np.ndarray]) -> list[np.ndarray]:
    """``out[x] = sum_v K[v] field[x + v]`` for each kernel (zero outside the volume), via one
    forward FFT of ``field``; kernels are odd-sized and centred, arrays ``[z, y, x]``."""
    from scipy import fft

    size = max(max(k.shape) for k in kernels)
    shape = [fft.next_fast_len(n + size - 1, real=True) for n in field.shape]
    # FFT threads come from the caller's ``use_threads`` (``--threads``), not from here
    f_hat = fft.rfftn(field.astype(np.float32), shape)
    outs = []
    for k in kernels:
        pad = (size - k.shape[0]) // 2
        full = np.pad(k[::-1, ::-1, ::-1], pad).astype(np.float32)  # flip: correlation
        res = fft.irfftn(f_hat * fft.rfftn(full, shape), shape)
        c = (size - 1) // 2
        region = tuple(slice(c, c + n) for n in field.shape)
        outs.append(np.ascontiguousarray(res[region], dtype=np.float32))
    return outs


def illumination(opacity: np.ndarray, light_dir: tuple[float, float, float] = (-0.4, 0.8, 0.45),
                 ao_strength: float = 0.9, shadow_strength: float = 0.75,
                 ao_radius: float = 5.0, ao_offset: float = 2.5, shadow_length: float = 24.0,
                 shadow_angle_deg: float = 20.0, shadow_density: float = 1.0,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Local ambient occlusion ``lao`` and soft-shadow ``ssc`` factors in [0, 1], ``[z, y, x]``.

    Args:
        opacity: per-voxel opacity in [0, 1] (all classes together), ``[z, y, x]``.
        light_dir: direction towards the light, ``(x, y, z)`` in the volume's frame.
        ao_strength, shadow_strength: 0 (no effect) .. 1 (full darkening).
        ao_radius, ao_offset: AO sphere radius and its shift towards the light, voxels.
        shadow_length, shadow_angle_deg: cone length (voxels) and half angle (the light's size).
        shadow_density: scales optical depth (per voxel of fully opaque material).

    Returns:
        ``lao = 1 - ao_strength * mean opacity in the offset sphere`` and
        ``ssc = 1 - shadow_strength * (1 - exp(-shadow_density * cone optical depth))``.
    """
    for name, value in (("ao_strength", ao_strength), ("shadow_strength", shadow_strength)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    light = unit(light_dir)
    kernels = []
    if ao_strength > 0:
        kernels.append(ao_kernel(ao_radius, ao_offset, light))
    if shadow_strength > 0:
        kernels.append(shadow_kernel(shadow_length, shadow_angle_deg, light))
    results = correlate_many(opacity, kernels) if kernels else []
    ones = np.ones(opacity.shape, dtype=np.float32)
    lao = ssc = ones
    if ao_strength > 0:
        occ = np.clip(results.pop(0), 0.0, 1.0)
        lao = (1.0 - np.float32(ao_strength) * occ).astype(np.float32)
    if shadow_strength > 0:
        depth = np.maximum(results.pop(0), 0.0)
        ssc = (1.0 - np.float32(shadow_strength) * (1.0 - np.exp(-shadow_density * depth))
               ).astype(np.float32)
    return lao, ssc
