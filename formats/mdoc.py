"""SerialEM .mdoc metadata files: a small tolerant parser (no pydantic dependency).

An mdoc is ``Key = Value`` lines: global keys first, then one ``[ZValue = n]`` section per
image (tilt) with its own keys; ``[T = ...]`` lines are free-text titles. Values are kept
as strings except where ``tilt_table`` converts the well-known numeric keys.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .errors import FormatError

_SECTION = re.compile(r"^\[\s*(\w+)\s*=\s*(.*?)\s*\]$")
_NUMERIC = ("TiltAngle", "ExposureDose", "PixelSpacing", "Defocus", "TargetDefocus",
            "ExposureTime", "PriorRecordDose", "Magnification", "RotationAngle")


def read_mdoc(path: Path) -> tuple[dict[str, str], list[str], pd.DataFrame]:
    """Parse an mdoc into ``(global_keys, titles, sections)``.

    ``sections`` has one row per ``[ZValue = n]`` section, in file order, with a ``ZValue``
    column and one string column per key seen; numeric keys listed in ``_NUMERIC`` are
    converted to floats (first number of the value). Raises FormatError if the file has no
    ZValue section or a line that is neither a section header, ``Key = Value``, nor blank.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise FormatError(path, "not a text file (invalid UTF-8): not a SerialEM mdoc") from None
    glob: dict[str, str] = {}
    titles: list[str] = []
    rows: list[dict[str, str]] = []
    current = glob
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        section = _SECTION.match(line)
        if section:
            key, value = section.groups()
            if key == "T":
                titles.append(value)
            elif key == "ZValue":
                current = {"ZValue": value}
                rows.append(current)
            else:  # frame-set or montage sections ([FrameSet = 0], [MontSection = 0])
                current = {}
            continue
        if "=" not in line:
            raise FormatError(path, f"line {number} is not 'Key = Value': {line[:60]!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        current[key] = value
    if not rows:
        raise FormatError(path, "no [ZValue = n] section: not a SerialEM tilt-series mdoc")
    table = pd.DataFrame(rows)
    for key in _NUMERIC:
        if key in table.columns:
            table[key] = pd.to_numeric(table[key].str.split().str[0], errors="coerce")
    return glob, titles, table
