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
    from scipy import ndimage

    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    knee = np.clip((luminance - threshold) / (1.0 - threshold), 0.0, 1.0) ** 2
    bright = rgb * knee[..., None]
    sigma = sigma_fraction * float(np.hypot(*rgb.shape[:2]))
    glow = ndimage.gaussian_filter(bright, sigma=(sigma, sigma, 0), mode="constant")
    return np.clip(rgb + np.float32(strength) * glow, 0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` floats in [0, 1] to uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
