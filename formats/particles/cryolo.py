"""crYOLO CBOX files, 3D (STAR syntax: data_global, data_cryolo, data_cryolo_include).

``CoordinateX/Y`` are the lower-left corner of a ``Width x Height`` box (EMAN box
convention) and ``CoordinateZ`` is the particle's slice, so the centre is
``(X + Width/2, Y + Height/2, Z)`` in px of the tomogram (as napari-boxmanager reads
them). ``Confidence`` is the score; ``<NA>`` marks missing values. The include block
lists the slices that hold particles. 2D CBOX files (no CoordinateZ) are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FormatError, PathLike
from ..facts import Summary, distinct_numbers, value_range
from ..text.star import read_star, write_star
from .common import (
    apply_binning,
    file_positions,
    positive_or_none,
    recompute_angst,
    single_tomogram,
)
from .registry import ParticleFormat, register
from .table import make_table

COLUMNS = ["CoordinateX", "CoordinateY", "CoordinateZ", "Width", "Height", "Depth",
           "EstWidth", "EstHeight", "Confidence", "NumBoxes", "Angle"]


def read_cbox(path: PathLike, voxel_size: float | None = None, binning: float | None = None,
              tomo_name: str | None = None) -> pd.DataFrame:
    """Read a 3D crYOLO CBOX; the tomogram name is the file stem unless ``tomo_name``."""
    p = Path(path)
    blocks = read_star(p)
    df = blocks.get("cryolo")
    if not isinstance(df, pd.DataFrame):
        raise FormatError(p, "no data_cryolo loop (not a crYOLO CBOX file)")
    missing = [c for c in ("CoordinateX", "CoordinateY", "Width", "Height") if c not in df]
    if missing:
        raise FormatError(p, f"CBOX lacks columns {missing}")
    if "CoordinateZ" not in df.columns or (len(df) and df["CoordinateZ"].isna().any()):
        raise FormatError(p, "2D CBOX (no CoordinateZ): only 3D particle CBOX files are "
                             "particle sets")
    num = df[["CoordinateX", "CoordinateY", "CoordinateZ", "Width", "Height"]]\
        .apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if np.isnan(num).any():
        raise FormatError(p, "non-numeric or missing coordinates/box sizes")
    xyz = np.stack([num[:, 0] + num[:, 3] / 2, num[:, 1] + num[:, 4] / 2, num[:, 2]], axis=1)
    score = pd.to_numeric(df["Confidence"], errors="coerce").to_numpy(dtype=float) \
        if "Confidence" in df.columns else None
    keep = [c for c in ("Width", "Height", "Depth", "EstWidth", "EstHeight", "NumBoxes")
            if c in df.columns]
    extra = df[keep].apply(pd.to_numeric, errors="coerce")\
        .rename(columns={c: f"cryolo_{c}" for c in keep})
    vs = positive_or_none(voxel_size, "voxel size", p)
    table = make_table(xyz, vs, None, tomo_name if tomo_name is not None else p.stem,
                       None, score, extra)
    table.attrs["format"] = "cryolo"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_cbox(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
               binning: float | None = None, box_size: float | None = None) -> None:
    """Write a 3D crYOLO CBOX (box size: ``box_size`` px, else the carried Width, else 37)."""
    p = Path(path)
    n = len(table)
    single_tomogram(table, p, "a crYOLO CBOX file")
    xyz, _ = file_positions(table, positive_or_none(binning, "binning", p))
    size = positive_or_none(box_size, "box size", p)
    if size is not None:
        width = np.full(n, size)
    elif "cryolo_Width" in table.columns:
        width = pd.to_numeric(table["cryolo_Width"], errors="coerce").fillna(37.0).to_numpy()
    else:
        width = np.full(n, 37.0)

    def carried(name: str) -> np.ndarray:
        col = f"cryolo_{name}"
        return table[col].to_numpy(dtype=float) if col in table.columns else np.full(n, np.nan)

    df = pd.DataFrame({
        "CoordinateX": xyz[:, 0] - width / 2, "CoordinateY": xyz[:, 1] - width / 2,
        "CoordinateZ": xyz[:, 2], "Width": width, "Height": width, "Depth": width,
        "EstWidth": carried("EstWidth"), "EstHeight": carried("EstHeight"),
        "Confidence": table["score"].to_numpy(dtype=float), "NumBoxes": carried("NumBoxes"),
        "Angle": np.full(n, np.nan)})
    include = pd.DataFrame({"slice_index": np.unique(np.round(xyz[:, 2]))})
    blocks = {"global": {"cbox_format_version": "1.0"}, "cryolo": df,
              "cryolo_include": include}
    write_star(p, blocks, overwrite=overwrite, na_rep="<NA>")


register(ParticleFormat("cryolo", (".cbox",), read_cbox, write_cbox,
                        "crYOLO 3D CBOX (px, box lower-left corner in x/y)"))


def describe_cbox(path: PathLike, blocks: dict) -> Summary:
    """``cryovis info`` facts of a crYOLO CBOX (2D or 3D) from its parsed STAR blocks."""
    box = blocks.get("cryolo")
    if not isinstance(box, pd.DataFrame):
        raise FormatError(path, "no data_cryolo loop: not a crYOLO CBOX file")
    missing = [c for c in ("CoordinateX", "CoordinateY") if c not in box.columns]
    if missing:
        raise FormatError(path, f"crYOLO CBOX lacks columns {missing}")
    numeric = box.apply(pd.to_numeric, errors="coerce")
    xy = ["CoordinateX", "CoordinateY"]
    if (box[xy].notna() & numeric[xy].isna()).to_numpy().any():
        raise FormatError(path, "non-numeric value in CoordinateX/CoordinateY")
    three_d = "CoordinateZ" in box.columns and bool(numeric["CoordinateZ"].notna().any())
    out: dict[str, Any] = {"kind": "cbox", "format": "crYOLO CBOX",
                           "dimensionality": "3D" if three_d else "2D", "count": len(box)}
    for col in ("Width", "Height", "Depth"):
        values = numeric[col] if col in numeric.columns else pd.Series([], dtype=float)
        out[f"box_{col.lower()}_px"] = distinct_numbers(values)
    out["z_range_px"] = value_range(numeric["CoordinateZ"]) if three_d else None
    out["confidence_range"] = value_range(numeric.get("Confidence", []))
    out["filaments"] = int(numeric["filamentid"].nunique()) \
        if "filamentid" in numeric.columns else None
    include = blocks.get("cryolo_include")
    out["include_slices"] = len(include) if isinstance(include, pd.DataFrame) \
        and "slice_index" in include.columns else None
    return out  # type: ignore[return-value]
