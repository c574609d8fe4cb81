"""EM volumes (TOM / AV3 / cryoCAT format) through emfile.

The EM header (512 bytes) has no pixel-size field, so a volume read from EM has
``voxel_size`` 0.0 (unknown; pass ``voxel_size=`` to ``read_volume``) and writing an EM file
drops the voxel size and origin. Motive lists (MOTL) are EM files too (20 x N float32); they
read as volumes here and as particles through ``formats.read_particles``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import emfile
import numpy as np

from ..atomic import atomic_path
from ..errors import FormatError
from .volume import Volume

SUFFIXES = {".em"}
HEADER_BYTES = 512
_MMAP_THRESHOLD = 512 * 1024**2
_DTYPES = {1: "i1", 2: "i2", 4: "i4", 5: "f4", 9: "f8"}
_COMPLEX = {8: "complex64", 10: "complex128"}
# Machine byte: 6 = PC (little-endian); 0 OS-9, 3 SGI, 5 Mac are big-endian; 1 VAX and
# 2 Convex store integers little-endian (their floats differ, but such files are not seen).
_BIG_ENDIAN_MACHINES = {0, 3, 5}
_KNOWN_MACHINES = {0, 1, 2, 3, 5, 6}
_WRITABLE = (np.int8, np.int16, np.int32, np.float32, np.float64)


def read_em_header(path: Path) -> dict:
    """Parse and validate the EM header: machine, data type, dims (x, y, z), byte order.

    Raises FormatError for a file shorter than the header, an unknown machine byte or data
    type, complex data, non-positive dimensions, or a data block shorter than the header
    promises.
    """
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise FormatError(path, f"file is {size} bytes, shorter than the {HEADER_BYTES}-byte"
                                " EM header (empty or truncated)")
    with open(path, "rb") as f:
        raw = f.read(16)
    machine, _, _, code = raw[0], raw[1], raw[2], raw[3]
    if machine not in _KNOWN_MACHINES:
        raise FormatError(path, f"unknown EM machine byte {machine} (expected 0, 1, 2, 3, 5"
                                " or 6): not an EM file")
    order = ">" if machine in _BIG_ENDIAN_MACHINES else "<"
    if code in _COMPLEX:
        raise FormatError(path, f"EM data type {code} ({_COMPLEX[code]}) is complex;"
                                " only real-valued volumes are read")
    if code not in _DTYPES:
        raise FormatError(path, f"unknown EM data type code {code} (known: 1 int8, 2 int16,"
                                " 4 int32, 5 float32, 9 float64)")
    nx, ny, nz = struct.unpack(f"{order}3i", raw[4:16])
    if min(nx, ny, nz) < 1:
        raise FormatError(path, f"EM dimensions x, y, z = {nx}, {ny}, {nz} are invalid"
                                " (each must be at least 1)")
    dtype = np.dtype(_DTYPES[code]).newbyteorder(order)
    nbytes = nx * ny * nz * dtype.itemsize
    if size - HEADER_BYTES < nbytes:
        raise FormatError(path, f"data block truncated: header says {nx}x{ny}x{nz} voxels of"
                                f" {dtype.name} ({nbytes} bytes) but the file has only"
                                f" {size - HEADER_BYTES} after the header")
    warnings = []
    if size - HEADER_BYTES > nbytes:
        warnings.append(f"{size - HEADER_BYTES - nbytes} bytes after the data block ignored")
    return {"machine": machine, "dtype": dtype, "shape_xyz": (nx, ny, nz), "byte_order": order,
            "data_bytes": nbytes, "warnings": warnings}


def read_em(path: Path, mmap: bool | None = None) -> Volume:
    """Read an EM file; data ``[z, y, x]``, ``voxel_size`` 0.0 (EM stores none).

    Args:
        path: the .em file.
        mmap: memory-map the data; ``None`` maps files over 512 MiB.
    """
    hdr = read_em_header(path)
    if mmap is None:
        mmap = hdr["data_bytes"] > _MMAP_THRESHOLD
    nx, ny, nz = hdr["shape_xyz"]
    if hdr["byte_order"] == "<":
        _, data = emfile.read(str(path), mmap=bool(mmap))
        data = data if mmap else np.ascontiguousarray(data)
    else:  # emfile assumes a little-endian file
        data = np.fromfile(path, dtype=hdr["dtype"], count=nx * ny * nz, offset=HEADER_BYTES)
        data = data.reshape(nz, ny, nx).astype(hdr["dtype"].newbyteorder("="))
    meta = {
        "format": "EM",
        "machine": hdr["machine"],
        "dtype": hdr["dtype"].name,
        "voxel_size_xyz": (0.0, 0.0, 0.0),
        "anisotropic_voxel_size": False,
        "warnings": ["EM files store no voxel size"] + hdr["warnings"],
    }
    return Volume(data=data, voxel_size=0.0, path=str(path), metadata=meta)


def write_em(path: Path, volume: Volume, overwrite: bool = False) -> None:
    """Write ``volume`` as a little-endian EM file (voxel size and origin are not stored).

    int8/int16/int32/float32/float64 keep their type; anything else is stored as float32.
    A 2D array is written as one section (z = 1).
    """
    data = np.asarray(volume.data)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise FormatError(path, f"cannot write a {data.ndim}D array as EM (need 2D or 3D)")
    if data.dtype.type not in _WRITABLE:
        data = data.astype(np.float32)
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    blank = {"comment": "", "username": "", "date": "", "userdata": ""}
    with atomic_path(path, overwrite) as tmp:
        emfile.write(str(tmp), data, header_params=blank, overwrite=True)
