"""The Volume type and format dispatch for volume files (MRC/MRCS, EM, TIFF)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError, PathLike
from ..facts import VolumeSummary, number
from .pages import SLAB_VOXELS, read_rows, release_pages, slabs


@dataclasses.dataclass
class Volume:
    """A 3D (or 2D/stack) image with its physical metadata.

    Attributes:
        data: array indexed ``[z, y, x]`` (may be a read-only memory map, or a lazy
            ``zarr`` array for OME-Zarr: slice it, or ``np.asarray`` it to load it).
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
    from . import mrc, omezarr

    suffix = path.suffix.lower()
    if suffix in omezarr.SUFFIXES:
        return omezarr.read_ome_zarr, omezarr.write_ome_zarr
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
                      " (expected .mrc, .mrcs, .map, .rec, .st, .ali, .em, .tif, .tiff or "
                      "an OME-Zarr .zarr folder)")


def read_volume(path: PathLike, mmap: bool | None = None, voxel_size: float | None = None,
                invert: bool = False, target_voxel_size: float | None = None) -> Volume:
    """Read a volume file, choosing the format from the extension.

    Args:
        path: MRC/MRCS/MAP/REC, EM or TIFF file, or an OME-Zarr ``.zarr`` folder (read
            lazily).
        mmap: memory-map the data instead of loading it (MRC and EM); ``None`` maps files
            larger than 512 MiB.
        voxel_size: override the header's voxel size (Å), for files whose header is wrong.
        invert: invert the contrast (see ``invert``); this loads the data.
        target_voxel_size: for multiscale OME-Zarr, read the level whose voxel size is
            nearest this (Å), e.g. a model's; other formats have one level.

    Non-finite voxels (NaN/Inf) are kept; engine commands call ``check_finite``.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir() and p.suffix.lower() != ".zarr":
        raise FormatError(p, "is a directory, not a volume file")
    reader, _ = _reader_for(p)
    if p.suffix.lower() == ".zarr":
        vol = reader(p, mmap=mmap, target_voxel_size=target_voxel_size)
    else:
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


def check_finite(volume: Volume, chunk_voxels: int = SLAB_VOXELS) -> None:
    """Raise FormatError naming the file and the number of NaN/Inf voxels, if there are any.

    Reads a memory-mapped volume slab by slab (about ``chunk_voxels`` voxels at a time,
    from its file: ``read_rows``), so a large tomogram is checked without loading it
    whole. Integer volumes always pass.
    """
    data = volume.data
    if not np.issubdtype(data.dtype, np.floating) or data.size == 0:
        return
    bad = 0
    for z in slabs(data.shape, chunk_voxels):
        block = read_rows(data, z.start, z.stop) if data.ndim == 3 else np.asarray(data[z])
        bad += int(np.count_nonzero(~np.isfinite(block)))
        release_pages(data)
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


# Volumes larger than this are described from the header's statistics, not scanned.
STATS_LIMIT_BYTES = 1024**3


def describe_volume(path: PathLike, voxel_size: float | None = None) -> VolumeSummary:
    """``cryovis info`` facts of a volume: shape x, y, z, voxel size (Å), layout, header
    fields and min/max/mean (scanned slab by slab up to ``STATS_LIMIT_BYTES``)."""
    vol = read_volume(path, mmap=True, voxel_size=voxel_size)
    meta, data = vol.metadata, vol.data
    out: VolumeSummary = {
        "kind": "volume",
        "format": meta.get("format", Path(path).suffix.lstrip(".").upper()),
        "shape_xyz": [int(n) for n in vol.shape_xyz],
        "dtype": str(data.dtype.newbyteorder("=").name),
        "mrc_mode": meta.get("mode"), "mrc_mode_name": meta.get("mode_name"),
        "layout": _layout(data, meta.get("ispg")),
        "voxel_size_angst": vol.voxel_size or None,
        "voxel_size_xyz_angst": [float(v) for v in meta.get("voxel_size_xyz",
                                                             (vol.voxel_size,) * 3)],
        "physical_size_xyz_angst": [round(n * vol.voxel_size, 3) for n in vol.shape_xyz]
        if vol.voxel_size else None,
        "origin_xyz_angst": [float(v) for v in vol.origin],
    }
    if "levels" in meta:  # OME-Zarr multiscale levels: (x, y, z) voxels at Å per voxel
        out["levels"] = [f"{lv['path']}: {'x'.join(map(str, lv['shape_zyx'][::-1]))} at "
                         f"{lv['voxel_size_zyx'][-1]:g} Å" for lv in meta["levels"]]
    for key in ("nstart_xyz", "mapcrs", "ispg", "nversion", "exttyp",
                "extended_header_bytes", "byte_order", "labels", "axes"):
        if key in meta and meta[key] not in ("", [], None):
            out[key] = list(meta[key]) if isinstance(meta[key], tuple) else meta[key]
    out.update(_volume_stats(data, meta))
    out["warnings"] = list(meta.get("warnings", []))
    return out


def _layout(data: np.ndarray, ispg: int | None) -> str:
    # MRC space group 0 marks a stack of 2D images (tilt series, particle stacks), 401 a
    # stack of volumes; other formats carry no such flag.
    if data.ndim == 2:
        return "single image"
    if ispg == 0:
        return f"stack of {data.shape[0]} images"
    if ispg == 401:
        return "stack of volumes"
    return "volume"


def _volume_stats(data: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    if data.nbytes > STATS_LIMIT_BYTES and "header_stats" in meta:
        stats = meta["header_stats"]
        return {"stats_source": "header (file too large to scan)",
                "min": number(stats["min"]), "max": number(stats["max"]),
                "mean": number(stats["mean"])}
    lo, hi, total, count, bad = math.inf, -math.inf, 0.0, 0, 0
    for z in slabs(data.shape, 2**24):
        slab = np.asarray(data[z], dtype=np.float64)
        release_pages(data)
        finite = np.isfinite(slab)
        bad += int(slab.size - np.count_nonzero(finite))
        good = slab[finite]
        if good.size:
            lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
            total += float(good.sum())
            count += int(good.size)
    return {"stats_source": "data", "min": lo if count else None,
            "max": hi if count else None, "mean": total / count if count else None,
            "non_finite_voxels": bad}
