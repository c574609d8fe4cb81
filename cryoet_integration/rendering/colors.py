"""Material colours: parsing of names and ``#rrggbb``, and colour-blind-safe defaults."""

from __future__ import annotations

import numpy as np

# Okabe & Ito (2008) palette, distinguishable under the common colour-vision deficiencies.
# Ordered so that the first classes (usually membrane, particles, lumen) get well-separated hues.
OKABE_ITO = {
    "orange": "#E69F00",
    "skyblue": "#56B4E9",
    "bluishgreen": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddishpurple": "#CC79A7",
}
DEFAULT_ORDER = ["skyblue", "orange", "bluishgreen", "reddishpurple", "yellow", "vermillion",
                 "blue"]

# A small set of common names that works without matplotlib; other CSS/X11 names are looked up
# in matplotlib when it is importable.
_BASIC = {
    "black": "#000000", "white": "#FFFFFF", "grey": "#808080", "gray": "#808080",
    "lightgrey": "#D3D3D3", "lightgray": "#D3D3D3", "darkgrey": "#A9A9A9",
    "darkgray": "#A9A9A9", "red": "#FF0000", "green": "#008000", "lime": "#00FF00",
    "cyan": "#00FFFF", "magenta": "#FF00FF", "pink": "#FFC0CB", "purple": "#800080",
    "brown": "#A52A2A", "gold": "#FFD700", "navy": "#000080", "teal": "#008080",
    "olive": "#808000", "maroon": "#800000", "violet": "#EE82EE", "salmon": "#FA8072",
    "tan": "#D2B48C", "silver": "#C0C0C0", "turquoise": "#40E0D0", "coral": "#FF7F50",
}


def parse_color(text: str) -> tuple[float, float, float]:
    """RGB in [0, 1] from a colour name (``orange``, ``skyblue``, CSS names) or ``#rrggbb``.

    Raises:
        ValueError: the text is not a known colour (one line, names the text).
    """
    key = text.strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    hex_text = OKABE_ITO.get(key) or _BASIC.get(key)
    if hex_text is None and key.startswith("#"):
        hex_text = key
    if hex_text is None:
        try:
            from matplotlib import colors as mcolors
        except ImportError:
            raise ValueError(f"unknown colour '{text}' (use #rrggbb or a basic name)") from None
        try:
            return tuple(float(c) for c in mcolors.to_rgb(text.strip()))  # type: ignore[return-value]
        except ValueError:
            raise ValueError(f"unknown colour '{text}' (use #rrggbb or a colour name)") from None
    digits = hex_text.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"bad colour '{text}' (expected #rrggbb)")
    return tuple(int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def default_colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinct colour-blind-safe colours (Okabe-Ito, cycled beyond seven)."""
    return [parse_color(OKABE_ITO[DEFAULT_ORDER[i % len(DEFAULT_ORDER)]]) for i in range(n)]


def resolve_colors(colors: list | None, n: int) -> np.ndarray:
    """An ``(n, 3)`` float array of RGB in [0, 1]; strings are parsed, ``None`` gives defaults.

    Raises:
        ValueError: wrong number of colours or an unparsable colour.
    """
    if colors is None:
        return np.asarray(default_colors(n), dtype=np.float32)
    if len(colors) != n:
        raise ValueError(f"{len(colors)} colours given for {n} classes (one per class)")
    rgb = [parse_color(c) if isinstance(c, str) else tuple(float(v) for v in c) for c in colors]
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.shape != (n, 3) or not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError("colours must be RGB triples in [0, 1]")
    return arr
