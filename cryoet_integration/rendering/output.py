"""Image files: PNG through imageio when installed, else Pillow; always atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_png(path: str | Path, image: np.ndarray, overwrite: bool = False) -> None:
    """Write an ``[H, W, 3]`` (or ``[H, W]``) uint8 image as PNG, atomically.

    Raises:
        FormatError: the file exists and ``overwrite`` is False, or its folder is missing.
    """
    from formats import atomic_path

    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG image must be uint8, got {image.dtype}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            import imageio.v3 as iio
        except ImportError:
            from PIL import Image

            Image.fromarray(image).save(tmp, format="PNG")
        else:
            iio.imwrite(tmp, image, extension=".png")
