"""IMOD models (.mod): big-endian chunked binary, read and written without IMOD.

Layout (IMOD binspec): ``IMODV1.2``, a 232-byte model header (name, image size,
pixel size and units, ...), then per object an ``OBJT`` chunk (176 bytes) followed by its
``CONT`` chunks (point count, flags, time, surface, then float32 x y z triples), optional
``MESH`` and size-prefixed chunks (SIZE, SLAN, MINX, IMAT, ...; skipped), and ``IEOF``.

Points are 0-based px of the volume the model was drawn on (corner origin), which is the
canonical convention, so positions pass unchanged. The class of a point is its object's
name (or its 1-based object number when unnamed). Pixel size comes from the header
(``pixsize`` in ``units``: 0 px (unknown), -10 Å, -9 nm, -6 µm ...).

Oriented particles (PEET style) are slicer-angle records (``SLAN``: x/y/z rotation and a
centre). With ``slicer_angles=True`` the reader returns one particle per SLAN record, at
its centre, with R = from_euler('xyz', [-x, -y, -z]) as the CZ cryoET Data Portal imports
them; the writer then adds one SLAN record per particle. Otherwise contour points are
read with identity orientation. The MINX model-to-image transform is not applied.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import FormatError, PathLike
from . import euler
from .common import (
    apply_binning,
    file_positions,
    parse_size_xyz,
    positive_or_none,
    recompute_angst,
    single_tomogram,
    single_value,
)
from .registry import ParticleFormat, register
from .table import make_table, orientations

MAGIC = b"IMODV1.2"
_MODEL = struct.Struct(">128s4iI4i6f5i f2i3f")
_OBJECT = struct.Struct(">64s16I4i3fi8B2i")
_CONT = struct.Struct(">iIii")
_MESH = struct.Struct(">iiIhh")
_SLAN = struct.Struct(">i3f3f32s")
OBJ_OPEN = 1 << 3
OBJ_SCATTERED = 1 << 9
UNITS_A = -10


def _units_to_angst(pixsize: float, units: int) -> float:
    if units == 0 or not np.isfinite(pixsize) or pixsize <= 0:
        return float("nan")
    return float(pixsize) * 10.0 ** (units + 10)


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(self.path, f"truncated IMOD model (needs {n} bytes at offset "
                                         f"{self.pos}, file has {len(self.data)})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))


def read_imod(path: PathLike, voxel_size: float | None = None, binning: float | None = None,
              tomo_name: str | None = None, slicer_angles: bool = False) -> pd.DataFrame:
    """Read an IMOD model: its contour points, or its slicer-angle records (oriented).

    Args:
        path: the .mod file.
        voxel_size: Å per px, overriding the header.
        binning: table voxel size / model px.
        tomo_name: tomogram name (default: the file stem).
        slicer_angles: read the SLAN records as oriented particles (see module doc).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(p, f"cannot read ({exc.strerror or exc})") from None
    if not data.startswith(b"IMOD"):
        raise FormatError(p, "not an IMOD model (no IMOD magic)")
    r = _Reader(data, p)
    r.take(8)
    header = r.unpack(_MODEL)
    pixsize, units = header[21], header[22]
    objects: list[str] = []
    points: list[np.ndarray] = []
    obj_of_point: list[np.ndarray] = []
    contour_of_point: list[np.ndarray] = []
    n_cont = 0
    slan: list[tuple] = []
    while True:
        tag = r.take(4)
        if tag == b"IEOF":
            break
        if tag == b"OBJT":
            obj = r.unpack(_OBJECT)
            objects.append(obj[0].split(b"\x00")[0].decode("latin-1").strip())
        elif tag == b"CONT":
            if not objects:
                raise FormatError(p, "contour before any object")
            psize = r.unpack(_CONT)[0]
            if psize < 0 or psize * 12 > len(data):
                raise FormatError(p, f"contour with an impossible point count {psize}")
            pts = np.frombuffer(r.take(12 * psize), dtype=">f4").reshape(-1, 3)
            points.append(pts.astype(np.float64))
            obj_of_point.append(np.full(psize, len(objects) - 1))
            contour_of_point.append(np.full(psize, n_cont))
            n_cont += 1
        elif tag == b"SLAN":
            (size,) = struct.unpack(">i", r.take(4))
            chunk = r.take(size)
            if size < _SLAN.size:
                raise FormatError(p, f"SLAN chunk of {size} bytes (needs {_SLAN.size})")
            slan.append(_SLAN.unpack(chunk[:_SLAN.size]))
        elif tag == b"MESH":
            vsize, lsize = r.unpack(_MESH)[:2]
            r.take(12 * vsize + 4 * lsize)
        elif tag.isalnum():
            (size,) = struct.unpack(">i", r.take(4))
            r.take(size)
        else:
            raise FormatError(p, f"corrupt IMOD model: unknown chunk {tag!r} at offset "
                                 f"{r.pos - 4}")
    vs = positive_or_none(voxel_size, "voxel size", p)
    if vs is None:
        vs = _units_to_angst(pixsize, units)
    name = tomo_name if tomo_name is not None else p.stem
    if slicer_angles:
        if not slan:
            raise FormatError(p, "the model has no slicer-angle (SLAN) records")
        rec = np.array([s[1:7] for s in slan], dtype=float)
        if not np.isfinite(rec).all():
            raise FormatError(p, "non-finite slicer angles or centres")
        labels = [s[7].split(b"\x00")[0].decode("latin-1").strip() or None for s in slan]
        table = make_table(rec[:, 3:6], vs, euler.imod_slicer_to_matrix(rec[:, 0:3]), name,
                           labels)
    else:
        xyz = np.concatenate(points) if points else np.zeros((0, 3))
        if not np.isfinite(xyz).all():
            raise FormatError(p, "non-finite point coordinates")
        obj_idx = np.concatenate(obj_of_point) if obj_of_point else np.zeros(0, dtype=int)
        classes = [objects[i] or str(i + 1) for i in obj_idx]
        extra = pd.DataFrame({"imod_object": obj_idx + 1,
                              "imod_contour": np.concatenate(contour_of_point) + 1
                              if contour_of_point else np.zeros(0, dtype=int)})
        table = make_table(xyz, vs, None, name, classes, None, extra)
    table.attrs["format"] = "imod"
    return recompute_angst(apply_binning(table, positive_or_none(binning, "binning", p)))


def write_imod(path: PathLike, table: pd.DataFrame, overwrite: bool = False,
               binning: float | None = None, tomo_size_xyz: Any = None,
               slicer_angles: bool = False) -> None:
    """Write an IMOD model: one scattered-point object per class, one contour each.

    ``tomo_size_xyz`` (px) fills the header's image size; otherwise the extent of the
    points is used. The pixel size is written in Å (units -10) when known. With
    ``slicer_angles=True`` each particle also gets a SLAN record (centre = position,
    angles from its orientation; label = class), in table order.
    """
    p = Path(path)
    xyz, pixel = file_positions(table, positive_or_none(binning, "binning", p))
    size = parse_size_xyz(tomo_size_xyz, p)
    if size is None:
        size = tuple(float(np.ceil(xyz[:, i].max() + 1)) if len(xyz) else 1.0
                     for i in range(3))
    vs = single_value(pixel, "pixel size", p) if len(pixel) else float("nan")
    names = table["class"].where(table["class"].notna(), "").astype(str).to_numpy()
    order = list(pd.unique(names)) or [""]
    name = single_tomogram(table, p, "an IMOD model")
    out = bytearray(MAGIC)
    out += _MODEL.pack(name.encode("latin-1", "replace")[:127], *(int(s) for s in size),
                       len(order), 0, 1, 1, 0, 255, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0,
                       0, 0, -1, 3, 128,
                       vs if np.isfinite(vs) else 1.0, UNITS_A if np.isfinite(vs) else 0,
                       0, 0.0, 0.0, 0.0)
    palette = [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0)]
    for k, cls in enumerate(order):
        pts = xyz[names == cls] if len(xyz) else np.zeros((0, 3))
        red, green, blue = palette[k % len(palette)]
        out += b"OBJT" + _OBJECT.pack(cls.encode("latin-1", "replace")[:63], *([0] * 16),
                                      1, OBJ_OPEN | OBJ_SCATTERED, 0, 1, red, green, blue,
                                      5, 1, 3, 1, 1, 0, 0, 0, 0, 0, 0)
        out += b"CONT" + _CONT.pack(len(pts), 0, 0, 0) + pts.astype(">f4").tobytes()
    if slicer_angles:
        angles = euler.matrix_to_imod_slicer(orientations(table))
        labels = table["class"].where(table["class"].notna(), "").astype(str).to_numpy()
        for i in range(len(xyz)):
            out += b"SLAN" + struct.pack(">i", _SLAN.size) + _SLAN.pack(
                1, *angles[i], *xyz[i], labels[i].encode("latin-1", "replace")[:31])
    out += b"IEOF"
    with atomic_path(p, overwrite) as tmp:
        tmp.write_bytes(bytes(out))


register(ParticleFormat("imod", (".mod",), read_imod, write_imod,
                        "IMOD model (points, px, 0-based; no orientation)"))
