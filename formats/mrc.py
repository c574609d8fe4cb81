"""MRC/MRC2014 volumes through mrcfile."""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np

from .atomic import atomic_path
from .errors import FormatError
from .volume import Volume

SUFFIXES = {".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali", ".ccp4"}
_MMAP_THRESHOLD = 512 * 1024**2


def read_mrc(path: Path, mmap: bool | None = None) -> Volume:
    """Read an MRC file; data ``[z, y, x]``, voxel size in Å (0.0 if the header has none)."""
    if mmap is None:
        mmap = path.stat().st_size > _MMAP_THRESHOLD
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = opener(str(path), mode="r", permissive=True)
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(path, f"not a readable MRC file ({exc})") from None
    try:
        if handle.data is None:
            raise FormatError(path, "MRC header is unreadable or the data block is truncated")
        vs = handle.voxel_size
        vsx, vsy, vsz = float(vs.x), float(vs.y), float(vs.z)
        origin = handle.header.origin
        data = handle.data if mmap else np.asarray(handle.data).copy()
        meta = {
            "mode": int(handle.header.mode),
            "header_voxel_size_xyz": (vsx, vsy, vsz),
            "nstart_xyz": (int(handle.header.nxstart), int(handle.header.nystart),
                           int(handle.header.nzstart)),
        }
    finally:
        if not mmap:
            handle.close()
    return Volume(data=data, voxel_size=vsx, origin=(float(origin.x), float(origin.y),
                  float(origin.z)), path=str(path), metadata=meta)


def write_mrc(path: Path, volume: Volume, overwrite: bool = False) -> None:
    """Write ``volume`` as MRC2014 (float32 unless the array is int8/int16/uint16/float16)."""
    data = np.asarray(volume.data)
    if data.dtype not in (np.int8, np.int16, np.uint16, np.float16, np.float32):
        data = data.astype(np.float32)
    with atomic_path(path, overwrite) as tmp:
        with mrcfile.new(str(tmp)) as m:
            m.set_data(data)
            if volume.voxel_size:
                m.voxel_size = volume.voxel_size
            m.header.origin = volume.origin
