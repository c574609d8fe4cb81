"""EMAN2 particle files: e2spt ``info/<tomogram>_info.json`` and EMAN ``.box`` files.

info json: ``"boxes_3d": [[x, y, z, "method", score, class_index], ...]`` with x, y, z in
pixels of ``apix_unbin`` (Å) measured from the tomogram CENTRE, ``"class_list": {"0":
{"name", "boxsize"}}``. Converting to corner voxels needs the tomogram size in the same
unbinned pixels (``tomo_size_xyz``, ``"XxYxZ"``): position = xyz + size / 2.
EMAN2 stores no particle orientation here.

.box: whitespace columns ``x y w h`` per particle, (x, y) the lower-left corner of a
w x h box (centre = x + w/2, y + h/2), px of the image; an optional 5th column is read as
z (px), which is what the writer puts there for 3D particles.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import FormatError, PathLike
from ..facts import distinct_numbers
from ..text.raw import read_text_bytes
from .common import (
    apply_binning,
    file_positions,
    load_json,
    parse_size_xyz,
    positive_or_none,
    recompute_angst,
    single_tomogram,
)
from .registry import ParticleFormat, register
from .table import make_table

DEFAULT_BOX = 64


def is_info_json(path: PathLike) -> bool:
    """True for a JSON file mentioning ``boxes_3d`` (an e2spt info file)."""
    try:
        return b'"boxes_3d"' in Path(path).read_bytes()
    except OSError:
        return False


def _need_size(tomo_size_xyz: Any, path: Path) -> np.ndarray:
    size = parse_size_xyz(tomo_size_xyz, path)
    if size is None:
        raise FormatError(path, "EMAN2 boxes_3d are centred on the tomogram: pass its size "
                                "in unbinned px (tomo_size_xyz / --tomo-size XxYxZ)")
    return np.asarray(size, dtype=float)


def read_eman2_json(path: PathLike, voxel_size: float | None = None,
                    tomo_size_xyz: Any = None, binning: float | None = None,
                    tomo_name: str | None = None) -> pd.DataFrame:
    """Read the boxes of an e2spt info json (needs the tomogram size, see module doc)."""
    p = Path(path)
    doc = load_json(p)
    boxes = doc.get("boxes_3d") if isinstance(doc, dict) else None
    if not isinstance(boxes, list):
        raise FormatError(p, "no 'boxes_3d' list (not an EMAN2 info json)")
    size = _need_size(tomo_size_xyz, p)
    try:
        xyz = np.array([[float(b[0]), float(b[1]), float(b[2])] for b in boxes]).reshape(-1, 3)
        scores = np.array([float(b[4]) if len(b) > 4 else np.nan for b in boxes])
        cls_idx = [str(int(b[5])) if len(b) > 5 else None for b in boxes]
        methods = [str(b[3]) if len(b) > 3 else "" for b in boxes]
    except (TypeError, ValueError, IndexError) as exc:
        raise FormatError(p, f"malformed boxes_3d entry ({exc})") from None
    class_list = doc.get("class_list") or {}
    names = [None if c is None else str(class_list.get(c, {}).get("name", c)) for c in cls_idx]
    apix = positive_or_none(voxel_size, "voxel size", p) \
        or positive_or_none(doc.get("apix_unbin"), "apix_unbin", p)
    name = tomo_name if tomo_name is not None else p.stem.removesuffix("_info")
    table = make_table(xyz + size / 2.0, apix, None, name, names, scores,
                       pd.DataFrame({"eman2_method": methods}))
    table.attrs["format"] = "eman2"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_eman2_json(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
                     tomo_size_xyz: Any = None, binning: float | None = None,
                     box_size: float | None = None) -> None:
    """Write an e2spt info json holding ``boxes_3d``, ``class_list`` and ``apix_unbin``."""
    p = Path(path)
    b = positive_or_none(binning, "binning", p)
    single_tomogram(table, p, "an EMAN2 info json")
    xyz, pixel = file_positions(table, b)
    size = _need_size(tomo_size_xyz, p)
    apix = np.unique(pixel[np.isfinite(pixel)])
    if len(apix) > 1:
        raise FormatError(p, "EMAN2 info json stores one apix_unbin; particles have several")
    classes = table["class"].where(table["class"].notna(), "particle").astype(str)
    names = list(pd.unique(classes))
    index = {name: i for i, name in enumerate(names)}
    box = positive_or_none(box_size, "box size", p) or DEFAULT_BOX
    scores = table["score"].to_numpy(dtype=float)
    centred = xyz - size / 2.0
    boxes = [[float(centred[i, 0]), float(centred[i, 1]), float(centred[i, 2]), "cryovis",
              float(scores[i]) if np.isfinite(scores[i]) else 0.0, index[classes.iloc[i]]]
             for i in range(len(table))]
    doc: dict[str, Any] = {"boxes_3d": boxes,
                           "class_list": {str(i): {"name": n, "boxsize": int(box)}
                                          for i, n in enumerate(names)}}
    if len(apix):
        doc["apix_unbin"] = float(apix[0])
    with atomic_path(p, overwrite) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def read_box(path: PathLike, voxel_size: float | None = None, binning: float | None = None,
             tomo_name: str | None = None) -> pd.DataFrame:
    """Read an EMAN .box file (``x y w h [z]``, lower-left corners, px)."""
    p = Path(path)
    data = read_text_bytes(p, "box file")
    try:
        df = pd.read_csv(io.BytesIO(data), sep=r"\s+", header=None, dtype=float,
                         index_col=False, comment="#", engine="c")
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError):
        raise FormatError(p, "not a numeric box file (expected 'x y w h' rows)") from None
    v = df.to_numpy(dtype=float)
    if v.shape[1] < 4 or np.isnan(v[:, :4]).any():
        raise FormatError(p, "box rows need 4 numbers 'x y w h'")
    z = v[:, 4] if v.shape[1] > 4 else np.zeros(len(v))
    xyz = np.stack([v[:, 0] + v[:, 2] / 2, v[:, 1] + v[:, 3] / 2, np.nan_to_num(z)], axis=1)
    vs = positive_or_none(voxel_size, "voxel size", p)
    table = make_table(xyz, vs, None, tomo_name if tomo_name is not None else p.stem,
                       extra=pd.DataFrame({"box_width": v[:, 2]}))
    table.attrs["format"] = "eman2box"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_box(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
              binning: float | None = None, box_size: float | None = None) -> None:
    """Write an EMAN .box file with z as a 5th column (lower-left corners, px)."""
    p = Path(path)
    if len(table) == 0:
        raise FormatError(p, "no particles to write (an empty .box file is not readable)")
    single_tomogram(table, p, "a .box file")
    xyz, _ = file_positions(table, positive_or_none(binning, "binning", p))
    box = positive_or_none(box_size, "box size", p)
    if box is not None:
        width = np.full(len(table), box)
    elif "box_width" in table.columns:
        width = table["box_width"].to_numpy(dtype=float)
    else:
        width = np.full(len(table), float(DEFAULT_BOX))
    out = pd.DataFrame({"x": xyz[:, 0] - width / 2, "y": xyz[:, 1] - width / 2,
                        "w": width, "h": width, "z": xyz[:, 2]})
    with atomic_path(p, overwrite) as tmp:
        out.to_csv(tmp, sep="\t", header=False, index=False, float_format="%.6f")


register(ParticleFormat("eman2", (".json",), read_eman2_json, write_eman2_json,
                        "EMAN2 e2spt info json boxes_3d (px at apix_unbin, centred)",
                        sniff=is_info_json))
def describe_box(path: PathLike, table: pd.DataFrame) -> dict[str, Any]:
    """The box sizes (px) ``cryovis info`` adds for an EMAN .box file."""
    return {"box_sizes_px": distinct_numbers(table["box_width"])}


register(ParticleFormat("eman2box", (".box",), read_box, write_box,
                        "EMAN .box (x y w h [z], lower-left corner, px)",
                        describe=describe_box))
