"""Keep the memory of a memory-mapped volume bounded while it is read or written in slabs.

Pages of a ``numpy.memmap`` that were touched stay resident (and count in the process's
RSS) until the mapping is closed, so scanning a 2 GB map would hold 2 GB. Telling the
kernel they are not needed (``MADV_DONTNEED``) drops them from this process; the data stays
in the file (and the page cache, dirty pages included, for writable shared maps) and is
read back in if touched again.
"""

from __future__ import annotations

import mmap
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
