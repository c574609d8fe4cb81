"""TOM/AV3 (and cryoCAT) motive lists: EM files holding a 20 x N float32 "image".

Rows (1-based, cryoCAT names): 1 score, 2-3 geom, 4 subtomo_id, 5 tomo_id, 6 object_id,
7 subtomo_mean, 8-10 x y z (px of the tomogram, MATLAB 1-based), 11-13 shift x y z (px,
added), 14-16 geom, 17 phi, 18 psi, 19 theta (R = zxz(phi, theta, psi) extrinsic, not
inverted), 20 class. The canonical position is xyz + shift - 1.

The file is float32. The writer stores the integer part of each coordinate in rows 8-10
and the remainder in the shift rows 11-13, so positions survive to ~1e-7 px instead of
float32's 1e-3 px at coordinates in the thousands.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path, check_writable
from ..errors import FormatError, PathLike
from . import euler
from .common import (
    apply_binning,
    class_ids,
    class_map_path,
    class_names,
    file_positions,
    ids_for_names,
    index_map_text,
    positive_or_none,
    recompute_angst,
)
from .registry import ParticleFormat, register
from .table import make_table, orientations

EM_HEADER = 512
_DTYPES = {1: np.int8, 2: np.int16, 4: np.int32, 5: np.float32, 9: np.float64}


def _byte_order(machine: int) -> str:
    # EM machine codes 0 (OS-9), 3 (SGI) and 5 (Mac) are big endian; PC (6) and VAX little.
    return ">" if machine in (0, 3, 5) else "<"


def em_dims(path: PathLike) -> tuple[int, int, int, int] | None:
    """``(data type code, xdim, ydim, zdim)`` from an EM header, or None if unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if len(head) < 16:
        return None
    x, y, z = struct.unpack(_byte_order(head[0]) + "3i", head[4:16])
    return head[3], x, y, z


def is_motive_list(path: PathLike) -> bool:
    """True for an EM file shaped like a motive list (20 x N x 1)."""
    dims = em_dims(path)
    return dims is not None and dims[1] == 20 and dims[3] == 1 and dims[2] >= 1


def read_motl(path: PathLike, voxel_size: float | None = None,
              binning: float | None = None) -> pd.DataFrame:
    """Read a TOM/AV3 motive list (.em); ``voxel_size`` (Å) is not stored in the file."""
    p = Path(path)
    dims = em_dims(p)
    if dims is None:
        raise FormatError(p, "too short for an EM file")
    code, x, y, z = dims
    if code not in _DTYPES:
        raise FormatError(p, f"EM data type code {code} is not a real-number type")
    if x != 20 or z != 1 or y < 1:
        raise FormatError(p, f"EM image is {x}x{y}x{z}; a motive list is 20xNx1 "
                             "(a volume belongs to read_volume)")
    raw = p.read_bytes()
    dtype = np.dtype(_DTYPES[code]).newbyteorder(_byte_order(raw[0]))
    need = EM_HEADER + 20 * y * dtype.itemsize
    if len(raw) < need:
        raise FormatError(p, f"truncated motive list: {len(raw)} bytes, header says {need}")
    motl = np.frombuffer(raw, dtype=dtype, count=20 * y, offset=EM_HEADER)
    motl = motl.reshape(y, 20).astype(np.float64)
    if not np.isfinite(motl[:, 7:13]).all():
        raise FormatError(p, "non-finite positions or shifts in the motive list")
    xyz = motl[:, 7:10] + motl[:, 10:13] - 1.0
    matrices = euler.tom_to_matrix(motl[:, 16:19])
    extra = pd.DataFrame({"motl_subtomo_id": motl[:, 3], "motl_object_id": motl[:, 5]})
    vs = positive_or_none(voxel_size, "voxel size", p)
    table = make_table(xyz, vs, matrices, motl[:, 4], class_names(p, motl[:, 19]),
                       motl[:, 0], extra)
    table.attrs["format"] = "motl"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_motl(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
               binning: float | None = None,
               class_numbers: Mapping[str, int] | None = None) -> None:
    """Write a TOM/AV3 motive list (.em, float32, little endian).

    Tomogram names that are not integers are numbered 1..k in order of appearance, and
    class names likewise unless ``class_numbers`` (``{name: number}``) fixes them (the
    format stores numbers only); the class names then go to a
    class map ``<stem>_classes.doc`` beside it, which the reader picks up again.
    """
    p = Path(path)
    n = len(table)
    if n == 0:
        raise FormatError(p, "a motive list cannot be empty (EM images need ydim >= 1)")
    xyz, _ = file_positions(table, positive_or_none(binning, "binning", p))
    one_based = xyz + 1.0
    whole = np.round(one_based)
    motl = np.zeros((n, 20))
    motl[:, 0] = np.nan_to_num(table["score"].to_numpy(dtype=float))
    motl[:, 3] = table["motl_subtomo_id"].to_numpy() if "motl_subtomo_id" in table.columns \
        else np.arange(1, n + 1)
    motl[:, 4] = ids_for_names(table["tomo_name"])[0]
    motl[:, 5] = table["motl_object_id"].to_numpy() if "motl_object_id" in table.columns \
        else 1
    motl[:, 7:10] = whole
    motl[:, 10:13] = one_based - whole
    motl[:, 16:19] = euler.matrix_to_tom(orientations(table))
    motl[:, 19], names, plain = class_ids(table["class"], class_numbers, p)
    header = bytearray(EM_HEADER)
    header[0] = 6  # PC, little endian
    header[3] = 5  # float32
    header[4:16] = struct.pack("<3i", 20, n, 1)
    class_map = None if plain else class_map_path(p)
    if class_map is not None:
        check_writable(class_map, overwrite)
    with atomic_path(p, overwrite) as tmp:
        tmp.write_bytes(bytes(header) + motl.astype("<f4").tobytes())
        if class_map is not None:
            with atomic_path(class_map, overwrite) as tmp_map:
                tmp_map.write_text(index_map_text(names), encoding="utf-8")


register(ParticleFormat("motl", (".em",), read_motl, write_motl,
                        "TOM/AV3 motive list (.em, 20xN, px 1-based, TOM angles)",
                        sniff=is_motive_list))
