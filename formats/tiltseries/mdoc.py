"""SerialEM .mdoc metadata files: a small tolerant parser (no pydantic dependency).

An mdoc is ``Key = Value`` lines: global keys first, then sections. SerialEM writes three
kinds, and this module tells them apart:

* tilt series: one ``[ZValue = n]`` section per tilt image (TiltAngle, ExposureDose, ...);
* montage: ``Montage = 1``, ``[MontSection = n]`` sections and one ``[ZValue = n]`` per
  piece, each with ``PieceCoordinates = x y z`` (the tilt angle repeats on every piece);
* frames: the mdoc beside a movie, one ``[FrameSet = n]`` section per saved frame stack
  (NumSubFrames, FrameDosesAndNumber, ...), no ZValue section.

``[T = ...]`` lines are free-text titles.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FormatError, PathLike
from ..facts import MdocSummary, number, value_range

_SECTION = re.compile(r"^\[\s*(\w+)\s*=\s*(.*?)\s*\]$")
_NUMERIC = ("TiltAngle", "ExposureDose", "PixelSpacing", "Defocus", "TargetDefocus",
            "ExposureTime", "PriorRecordDose", "Magnification", "RotationAngle",
            "NumSubFrames")


@dataclasses.dataclass
class Mdoc:
    """A parsed mdoc: global keys, titles, and one table per kind of section."""

    globals: dict[str, str]
    titles: list[str]
    images: pd.DataFrame  # [ZValue] sections: tilts, or montage pieces
    frame_sets: pd.DataFrame  # [FrameSet] sections
    montage_sections: pd.DataFrame  # [MontSection] sections

    @property
    def kind(self) -> str:
        """``tilt series``, ``montage`` or ``frames``."""
        if len(self.frame_sets) and not len(self.images):
            return "frames"
        if self.globals.get("Montage", "0").strip() not in ("", "0") \
                or len(self.montage_sections) or "PieceCoordinates" in self.images.columns:
            return "montage"
        return "tilt series"


def read_mdoc(path: PathLike) -> Mdoc:
    """Parse an mdoc. Numeric keys listed in ``_NUMERIC`` become floats (first number).

    Raises FormatError if the file has neither a ZValue nor a FrameSet section, or a line
    that is neither a section header, ``Key = Value``, nor blank.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise FormatError(p, "not a text file (invalid UTF-8): not a SerialEM mdoc") from None
    glob: dict[str, str] = {}
    titles: list[str] = []
    sections: dict[str, list[dict[str, str]]] = {"ZValue": [], "FrameSet": [],
                                                 "MontSection": []}
    current = glob
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        section = _SECTION.match(line)
        if section:
            key, value = section.groups()
            if key == "T":
                titles.append(value)
                continue
            current = {key: value}
            sections.setdefault(key, []).append(current)
            continue
        if "=" not in line:
            raise FormatError(p, f"line {line_no} is not 'Key = Value': {line[:60]!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        current[key] = value
    if not sections["ZValue"] and not sections["FrameSet"]:
        raise FormatError(p, "no [ZValue = n] or [FrameSet = n] section: not a SerialEM mdoc")
    images, frames, mont = (_table(sections[k]) for k in ("ZValue", "FrameSet", "MontSection"))
    return Mdoc(glob, titles, images, frames, mont)


def _table(rows: list[dict[str, str]]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for key in _NUMERIC:
        if key in table.columns:
            table[key] = pd.to_numeric(table[key].str.split().str[0], errors="coerce")
    return table


def describe_mdoc(path: PathLike) -> MdocSummary:
    """``cryovis info`` facts of an mdoc: what kind it is, tilts (or montage pieces, or
    frame sets), tilt range, pixel size (Å), dose (e/Å²), voltage (kV), tilt axis."""
    doc = read_mdoc(path)
    kind = doc.kind
    rows = doc.frame_sets if kind == "frames" else doc.images
    out: MdocSummary = {"kind": "mdoc", "format": f"SerialEM mdoc ({kind})", "mdoc_type": kind}
    angles = rows["TiltAngle"].dropna() if "TiltAngle" in rows.columns else pd.Series([])
    if kind == "montage":
        pieces = rows.get("PieceCoordinates", pd.Series([], dtype=object)).dropna()
        coords = np.array([[float(v) for v in s.split()[:3]] for s in pieces]).reshape(-1, 3)
        out["pieces"] = len(rows)
        out["montage_sections"] = int(len(np.unique(coords[:, 2]))) if len(coords) else None
        out["piece_grid_xy"] = [int(len(np.unique(coords[:, 0]))),
                                int(len(np.unique(coords[:, 1])))] if len(coords) else None
        out["tilt_angles_deg"] = sorted({round(float(a), 2) for a in angles})
    elif kind == "frames":
        out["frame_sets"] = len(rows)
        out["frames"] = int(rows["NumSubFrames"].sum()) \
            if "NumSubFrames" in rows.columns and rows["NumSubFrames"].notna().any() else None
        out["tilt_range_deg"] = value_range(angles)
    else:
        out["tilts"] = len(rows)
        out["tilt_range_deg"] = value_range(angles)
        out["median_tilt_step_deg"] = round(float(np.median(np.diff(np.sort(
            angles.to_numpy())))), 3) if len(angles) > 1 else None
    pixel = rows["PixelSpacing"].dropna() if "PixelSpacing" in rows.columns else []
    out["pixel_size_angst"] = number(pixel.iloc[0]) if len(pixel) \
        else number(doc.globals.get("PixelSpacing"))
    if len(pixel) and pixel.nunique() > 1:
        out["warnings"] = [f"pixel spacing varies between sections: "
                           f"{sorted(set(float(v) for v in pixel))}"]
    dose = rows["ExposureDose"].dropna() if "ExposureDose" in rows.columns else []
    out["dose_per_tilt_e_per_a2"] = round(float(dose.mean()), 4) if len(dose) else None
    out["total_dose_e_per_a2"] = round(float(dose.sum()), 3) if len(dose) else None
    out["voltage_kv"] = number(doc.globals.get("Voltage"))
    out["image_file"] = doc.globals.get("ImageFile")
    size = doc.globals.get("ImageSize")
    out["image_size_xy"] = [int(v) for v in size.split()[:2]] \
        if size and all(v.isdigit() for v in size.split()[:2]) else None
    axis = next((m.group(1) for t in doc.titles
                 for m in [re.search(r"Tilt axis angle\s*=\s*([-\d.]+)", t)] if m), None)
    out["tilt_axis_angle_deg"] = number(axis)
    out["titles"] = doc.titles
    return out
