"""Legend and scale bar drawn onto rendered images, so a figure says what it shows.

The legend (bottom left) has one colour swatch per class with its name; the scale bar
(bottom right) has a round length in nm that fits about a fifth of the image width. Both
are drawn with Pillow (a dependency of imageio) in a colour that contrasts with the
background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Lengths the scale bar may show, in nm: the largest one that fits the target width wins.
_BAR_NM = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000)


def scale_bar_nm(pixel_angst: float, width_px: int) -> float:
    """The scale-bar length (nm) for an image of ``width_px`` pixels of ``pixel_angst`` Å:
    the largest round length no longer than a fifth of the width (at least the shortest)."""
    target_nm = 0.2 * width_px * pixel_angst / 10.0
    fitting = [n for n in _BAR_NM if n <= target_nm]
    return float(fitting[-1] if fitting else _BAR_NM[0])


def annotate(image: np.ndarray, names: Sequence[str], colors: np.ndarray,
             pixel_angst: float | None, background: Sequence[float]) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 with a legend of ``names``/``colors`` (RGB in [0, 1])
    and, when ``pixel_angst`` (Å per image pixel at the volume centre) is known, a scale bar.
    """
    from PIL import Image, ImageDraw, ImageFont

    height, width = image.shape[:2]
    size = max(10, round(height / 40))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    ink = (20, 20, 20) if float(np.mean(background)) > 0.5 else (235, 235, 235)
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    margin, swatch = size, size
    y = height - margin - len(names) * round(1.5 * size)
    for name, color in zip(names, colors):
        rgb = tuple(int(round(255 * float(c))) for c in color)
        draw.rectangle([margin, y, margin + swatch, y + swatch], fill=rgb, outline=ink)
        draw.text((margin + swatch + size // 2, y + swatch // 2), name, fill=ink, font=font,
                  anchor="lm")
        y += round(1.5 * size)
    if pixel_angst is not None and pixel_angst > 0:
        nm = scale_bar_nm(pixel_angst, width)
        length = round(nm * 10.0 / pixel_angst)
        x1, y1 = width - margin, height - margin
        draw.rectangle([x1 - length, y1 - max(2, size // 4), x1, y1], fill=ink)
        draw.text((x1 - length / 2, y1 - size // 2), f"{nm:g} nm", fill=ink, font=font,
                  anchor="md")
    return np.asarray(canvas)
