"""STOPGAP motive lists (STAR, block ``data_stopgap_motivelist``).

Columns: motl_idx, tomo_num, object, subtomo_num, halfset (A/B), orig_x/y/z (px of the
tomogram, MATLAB 1-based like the TOM/AV3 lists STOPGAP descends from), score,
x/y/z_shift (px, added), phi, psi, the (TOM convention: R = zxz(phi, the, psi)
extrinsic, not inverted), class. Position = orig + shift - 1 (0-based voxel centres).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FormatError, PathLike
from ..text.star import read_star, write_star
from . import euler
from .common import (
    apply_binning,
    class_ids,
    file_positions,
    ids_for_names,
    positive_or_none,
    recompute_angst,
)
from .registry import ParticleFormat, register
from .table import make_table, orientations

BLOCK = "stopgap_motivelist"
REQUIRED = ["tomo_num", "orig_x", "orig_y", "orig_z"]


def read_stopgap(path: PathLike, voxel_size: float | None = None,
                 binning: float | None = None) -> pd.DataFrame:
    """Read a STOPGAP motive list; ``voxel_size`` (Å) is not stored in the file."""
    p = Path(path)
    blocks = read_star(p, str_columns=["halfset"])
    df = blocks.get(BLOCK)
    if not isinstance(df, pd.DataFrame):
        raise FormatError(p, f"no data_{BLOCK} loop (not a STOPGAP motive list)")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FormatError(p, f"STOPGAP motive list lacks columns {missing}")
    num = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
           if c in df.columns else np.zeros(len(df))
           for c in ("orig_x", "orig_y", "orig_z", "x_shift", "y_shift", "z_shift",
                     "phi", "psi", "the", "score")}
    xyz = np.stack([num["orig_x"] + num["x_shift"], num["orig_y"] + num["y_shift"],
                    num["orig_z"] + num["z_shift"]], axis=1) - 1.0
    matrices = euler.tom_to_matrix(np.stack([num["phi"], num["psi"], num["the"]], axis=1))
    tomo = pd.to_numeric(df["tomo_num"], errors="coerce")
    if tomo.isna().any():
        raise FormatError(p, "non-numeric tomo_num")
    names = [str(int(t)) for t in tomo]
    classes = [str(c) for c in df["class"]] if "class" in df.columns else None
    keep = [c for c in ("motl_idx", "object", "subtomo_num", "halfset") if c in df.columns]
    extra = df[keep].rename(columns={c: f"stopgap_{c}" for c in keep})
    vs = positive_or_none(voxel_size, "voxel size", p)
    table = make_table(xyz, vs, matrices, names, classes,
                       num["score"] if "score" in df.columns else None, extra)
    table.attrs["format"] = "stopgap"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_stopgap(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
                  binning: float | None = None,
                  class_numbers: Mapping[str, int] | None = None) -> None:
    """Write a STOPGAP motive list (tomogram names must be integers or are numbered 1..k;
    classes as ``class_numbers`` ``{name: number}`` gives, else numbered 1..k)."""
    p = Path(path)
    n = len(table)
    xyz, _ = file_positions(table, positive_or_none(binning, "binning", p))
    tomo_ids, _, _ = ids_for_names(table["tomo_name"])
    angles = euler.matrix_to_tom(orientations(table))
    classes = class_ids(table["class"], class_numbers, p)[0]
    score = np.nan_to_num(table["score"].to_numpy(dtype=float))

    def carried(name: str, default):
        col = f"stopgap_{name}"
        return table[col].to_numpy() if col in table.columns else default

    df = pd.DataFrame({
        "motl_idx": np.arange(1, n + 1),
        "tomo_num": tomo_ids,
        "object": carried("object", np.ones(n, dtype=np.int64)),
        "subtomo_num": carried("subtomo_num", np.arange(1, n + 1)),
        "halfset": carried("halfset", np.where(np.arange(n) % 2 == 0, "A", "B")),
        "orig_x": xyz[:, 0] + 1.0, "orig_y": xyz[:, 1] + 1.0, "orig_z": xyz[:, 2] + 1.0,
        "score": score,
        "x_shift": 0.0, "y_shift": 0.0, "z_shift": 0.0,
        "phi": angles[:, 0], "psi": angles[:, 1], "the": angles[:, 2],
        "class": classes,
    })
    write_star(p, {BLOCK: df}, overwrite=overwrite)


def _sniff(path: Path) -> bool:
    from .relion import flavour

    return flavour(path) == "stopgap"


register(ParticleFormat("stopgap", (".star",), read_stopgap, write_stopgap,
                        "STOPGAP motive list STAR (px, 1-based, TOM angles)", sniff=_sniff))
