"""Screen-space post-processing: background, bloom, conversion to 8-bit."""

from __future__ import annotations

import numpy as np


def over_background(premultiplied: np.ndarray, background: tuple[float, float, float]
                    ) -> np.ndarray:
    """``[H, W, 3]`` RGB of a ``[4, H, W]`` premultiplied RGB + coverage image over a colour."""
    rgb, coverage = premultiplied[:3], premultiplied[3]
    bg = np.asarray(background, dtype=np.float32)[:, None, None]
    return np.moveaxis(rgb + (1.0 - coverage)[None] * bg, 0, -1).astype(np.float32)


def bloom(rgb: np.ndarray, strength: float = 0.6, threshold: float = 0.55,
          sigma_fraction: float = 0.012) -> np.ndarray:
    """Add a glow around the brightest parts of an ``[H, W, 3]`` image in [0, 1].

    The bright part is separated by a smooth tone curve of luminance (0 below ``threshold``,
    rising quadratically to 1 at full brightness), blurred with a Gaussian of
    ``sigma_fraction`` x image diagonal pixels, scaled by ``strength`` and added back.
    """
    if strength <= 0:
        return rgb
    if not 0 <= threshold < 1:
        raise ValueError(f"bloom threshold must be in [0, 1), got {threshold}")

    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    knee = np.clip((luminance - threshold) / (1.0 - threshold), 0.0, 1.0) ** 2
    bright = rgb * knee[..., None]
    sigma = sigma_fraction * float(np.hypot(*rgb.shape[:2]))
    glow = _wide_blur(bright, sigma)
    return np.clip(rgb + np.float32(strength) * glow, 0.0, 1.0)


def _wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``[H, W, C]`` by ``sigma`` pixels (zero outside), computed on a grid
    reduced by up to ``sigma / 3`` (block means, blur, bilinear upsampling): a wide blur of a
    smooth glow loses nothing visible and costs a fraction of the full-resolution filter."""
    from scipy import ndimage

    factor = max(1, int(sigma / 3.0))
    if factor == 1:
        return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="constant")
    h, w, c = image.shape
    ph, pw = -h % factor, -w % factor
    padded = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    small = padded.reshape((h + ph) // factor, factor, (w + pw) // factor, factor, c).mean(
        axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma=(sigma / factor, sigma / factor, 0),
                                    mode="constant")
    return _upsample_axis(_upsample_axis(small, factor, h, 0), factor, w, 1)


def _upsample_axis(image: np.ndarray, factor: int, size: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``image`` onto ``size`` pixels along ``axis``, each old pixel
    covering ``factor`` new ones (pixel centres aligned, edges held)."""
    pos = (np.arange(size) + 0.5) / factor - 0.5
    n = image.shape[axis]
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    f = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = size
    f = f.reshape(shape)
    return np.take(image, i0, axis=axis) * (1 - f) + np.take(image, i1, axis=axis) * f


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` floats in [0, 1] to uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
