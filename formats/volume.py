"""The Volume type and format dispatch for volume files (MRC/MRCS, EM, TIFF)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError, PathLike


@dataclasses.dataclass
class Volume:
    """A 3D (or 2D/stack) image with its physical metadata.

    Attributes:
        data: array indexed ``[z, y, x]`` (may be a read-only memory map).
        voxel_size: edge length of one voxel in Å (isotropic); 0.0 when the file does not say.
        origin: position of the first voxel, ``(x, y, z)`` in Å, as stored in the header.
        path: the file this volume was read from, if any.
        metadata: free header facts. Keys shared by all readers: ``format``,
            ``voxel_size_xyz`` (Å per axis; ``voxel_size`` is its x, and
            ``anisotropic_voxel_size`` is True when they differ) and ``warnings`` (list of
            one-line remarks about the header, e.g. an unset voxel size).
    """

    data: np.ndarray
    voxel_size: float = 0.0
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    path: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape_xyz(self) -> tuple[int, ...]:
        """Size in voxels as ``(x, y, z)`` (the reverse of ``data.shape``)."""
        return tuple(reversed(self.data.shape))

    def with_data(self, data: np.ndarray) -> Volume:
        """A new Volume with the same voxel size and origin around ``data``."""
        return dataclasses.replace(self, data=data, path=None, metadata=dict(self.metadata))


def _reader_for(path: Path):
    from . import mrc

    suffix = path.suffix.lower()
    if suffix in mrc.SUFFIXES:
        return mrc.read_mrc, mrc.write_mrc
    try:
        from . import em, tiff
    except ImportError:  # pragma: no cover - the modules ship together
        em = tiff = None
    if em is not None and suffix in em.SUFFIXES:
        return em.read_em, em.write_em
    if tiff is not None and suffix in tiff.SUFFIXES:
        return tiff.read_tiff, tiff.write_tiff
    raise FormatError(path, f"unknown volume format '{path.suffix or '(no extension)'}'"
                      " (expected .mrc, .mrcs, .map, .rec, .st, .ali, .em, .tif or .tiff)")


def read_volume(path: PathLike, mmap: bool | None = None, voxel_size: float | None = None,
                invert: bool = False) -> Volume:
    """Read a volume file, choosing the format from the extension.

    Args:
        path: MRC/MRCS/MAP/REC, EM or TIFF file.
        mmap: memory-map the data instead of loading it (MRC and EM); ``None`` maps files
            larger than 512 MiB.
        voxel_size: override the header's voxel size (Å), for files whose header is wrong.
        invert: invert the contrast (see ``invert``); this loads the data.

    Non-finite voxels (NaN/Inf) are kept; engine commands call ``check_finite``.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir():
        raise FormatError(p, "is a directory, not a volume file")
    reader, _ = _reader_for(p)
    vol = reader(p, mmap=mmap)
    if voxel_size is not None:
        if not (voxel_size > 0 and np.isfinite(voxel_size)):
            raise FormatError(p, f"voxel size override must be a positive number, got {voxel_size}")
        vol.metadata["header_voxel_size"] = vol.voxel_size
        vol.metadata["voxel_size_xyz"] = (float(voxel_size),) * 3
        vol.metadata["anisotropic_voxel_size"] = False
        vol.voxel_size = float(voxel_size)
    if invert:
        vol = dataclasses.replace(vol, data=invert_contrast(vol.data))
        vol.metadata["inverted"] = True
    return vol


def invert_contrast(data: np.ndarray) -> np.ndarray:
    """Contrast-inverted copy of ``data`` (any shape; loads a memory map).

    Floating-point data is negated (dark protein density becomes bright, the mean flips
    sign). Integer data is mirrored within its own range, ``min + max - value``, so the
    result keeps the dtype without overflow.
    """
    arr = np.asarray(data)
    if np.issubdtype(arr.dtype, np.floating):
        return np.negative(arr)
    if arr.size == 0:
        return arr.copy()
    lo, hi = int(arr.min()), int(arr.max())
    return (lo + hi - arr.astype(np.int64)).astype(arr.dtype)


def check_finite(volume: Volume, chunk_voxels: int = 2**24) -> None:
    """Raise FormatError naming the file and the number of NaN/Inf voxels, if there are any.

    Reads a memory-mapped volume slab by slab (about ``chunk_voxels`` voxels at a time), so
    a large tomogram is checked without loading it whole. Integer volumes always pass.
    """
    data = volume.data
    if not np.issubdtype(data.dtype, np.floating) or data.size == 0:
        return
    flat = data.reshape(data.shape[0], -1) if data.ndim > 1 else data.reshape(-1, 1)
    step = max(1, chunk_voxels // max(flat.shape[1], 1))
    bad = 0
    for start in range(0, flat.shape[0], step):
        bad += int(np.count_nonzero(~np.isfinite(flat[start:start + step])))
    if bad:
        raise FormatError(volume.path or "<volume>",
                          f"{bad} of {data.size} voxels are NaN or infinite")


def write_volume(path: PathLike, volume: Volume | np.ndarray, overwrite: bool = False,
                 voxel_size: float | None = None) -> None:
    """Write ``volume`` atomically; the format follows the extension.

    A bare array is accepted together with ``voxel_size`` (Å).
    """
    if not isinstance(volume, Volume):
        volume = Volume(np.asarray(volume), voxel_size=float(voxel_size or 0.0))
    elif voxel_size is not None:
        volume = dataclasses.replace(volume, voxel_size=float(voxel_size))
    p = Path(path)
    _, writer = _reader_for(p)
    writer(p, volume, overwrite=overwrite)
