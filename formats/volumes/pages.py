"""Keep the memory of a memory-mapped volume bounded while it is read or written in slabs.

Pages of a ``numpy.memmap`` that were touched stay resident (and count in the process's
RSS) until the mapping is closed, so scanning a 2 GB map would hold 2 GB. Telling the
kernel they are not needed (``MADV_DONTNEED``) drops them from this process; the data stays
in the file (and the page cache, dirty pages included, for writable shared maps) and is
read back in if touched again.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np

# Voxels per slab of the slab-wise loops (16 MiB of float32).
SLAB_VOXELS = 2**22


def release_pages(array: np.ndarray) -> None:
    """Drop the resident pages of ``array``'s memory map (no-op for in-memory arrays and on
    systems without ``madvise``)."""
    mapped = getattr(array, "_mmap", None)
    if mapped is None or not hasattr(mmap, "MADV_DONTNEED") or mapped.closed:
        return
    mapped.madvise(mmap.MADV_DONTNEED)


def slabs(shape: tuple[int, ...], voxels: int = SLAB_VOXELS) -> Iterator[slice]:
    """Slices along the first axis of ``shape`` holding about ``voxels`` voxels each."""
    plane = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    step = max(1, voxels // max(plane, 1))
    for start in range(0, int(shape[0]), step):
        yield slice(start, min(start + step, int(shape[0])))


def file_map(data: np.ndarray) -> np.memmap | None:
    """``data`` itself when it is a whole C-ordered 3D file map (a ``numpy.memmap`` over its
    own mmap, as ``read_volume(..., mmap=True)`` returns it), else None."""
    if isinstance(data, np.memmap) and isinstance(data.base, mmap.mmap) and data.ndim == 3 \
            and data.filename is not None and data.flags.c_contiguous:
        return data
    return None


def read_rows(data: np.ndarray, z0: int, z1: int, y0: int = 0, y1: int | None = None,
              fd: int | None = None) -> np.ndarray:
    """A new array of the rows ``data[z0:z1, y0:y1, :]`` of a volume ``[z, y, x]``.

    A whole file map (:func:`file_map`) is read from its file with one ``preadv`` per
    z-slice (``fd``: the file already open for reading, else it is opened here), so its
    pages never enter this process: touched pages of a map stay resident while the map
    lives, and the kernel maps page-cache pages in large folios, so even reading through a
    short-lived map costs a hundred MiB at a time. Other arrays (in memory, OME-Zarr) are
    sliced.
    """
    ny = int(data.shape[1])
    y1 = ny if y1 is None else y1
    root = file_map(data)
    if root is None:
        rows = np.array(data[z0:z1, y0:y1])
        release_pages(data)
        return rows
    nx = int(root.shape[2])
    out = np.empty((z1 - z0, y1 - y0, nx), dtype=root.dtype)
    row = nx * root.dtype.itemsize
    own = fd is None
    if own:
        fd = os.open(root.filename, os.O_RDONLY)
    try:
        for k in range(z1 - z0):
            offset = root.offset + ((z0 + k) * ny + y0) * row
            want = (y1 - y0) * row
            got = os.preadv(fd, [memoryview(out[k]).cast("B")], offset)
            if got != want:
                raise OSError(f"{root.filename}: short read ({got} of {want} bytes at "
                              f"{offset})")
    finally:
        if own:
            os.close(fd)
    return out
