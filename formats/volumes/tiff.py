"""TIFF stacks through tifffile; written as ImageJ hyperstacks that carry the voxel size.

The pixel size of a TIFF is trusted only from ImageJ metadata (``unit`` plus XResolution /
YResolution in pixels per unit, and ``spacing`` for z): the plain TIFF resolution tags of EM
data are usually printer defaults (72 dpi), so without an ImageJ unit the voxel size is 0.0
(unknown). TIFF data is always loaded (no memory map).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..atomic import atomic_path
from ..errors import FormatError
from .volume import Volume

SUFFIXES = {".tif", ".tiff"}
# Length of one unit in Å, for the unit names ImageJ and other tools write.
_UNIT_ANGSTROM = {"a": 1.0, "å": 1.0, "angstrom": 1.0, "\\u00c5": 1.0, "nm": 10.0,
                  "nanometer": 10.0, "um": 1e4, "µm": 1e4, "\\u00b5m": 1e4, "micron": 1e4,
                  "microns": 1e4, "mm": 1e7}
_IMAGEJ_TYPES = (np.uint8, np.uint16, np.float32)


def _pixels_per_unit(page: Any, tag: str) -> float:
    value = page.tags[tag].value if tag in page.tags else None
    if not value or len(value) != 2 or not value[1]:
        return 0.0
    return value[0] / value[1]


def read_tiff(path: Path, mmap: bool | None = None) -> Volume:
    """Read a TIFF image or stack; data ``[z, y, x]`` (pages are z), voxel size in Å.

    ``mmap`` is accepted for a uniform interface and ignored. Multi-channel or time-lapse
    files are rejected: a volume has one value per voxel.
    """
    del mmap
    # tifffile logs its complaints about corrupt files; the FormatError below says it once.
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(str(path)) as tif:
            if not tif.series:
                raise FormatError(path, "TIFF file contains no images (corrupt or truncated)")
            series = tif.series[0]
            axes, data = series.axes, series.asarray()
            ij = tif.imagej_metadata or {}
            page = tif.pages[0]
            ppu = (_pixels_per_unit(page, "XResolution"), _pixels_per_unit(page, "YResolution"))
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types on corrupt files
        raise FormatError(path, f"not a readable TIFF file ({type(exc).__name__}:"
                                f" {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        logger.setLevel(level)
    keep = [i for i, (a, n) in enumerate(zip(axes, data.shape)) if n > 1 or a in "YX"]
    extra = [f"{axes[i]}={data.shape[i]}" for i in keep if axes[i] not in "ZYXIQ"]
    if extra:
        raise FormatError(path, f"TIFF has more than one channel/time point ({', '.join(extra)},"
                                f" axes {axes}); export a single-channel z stack")
    data = data.reshape([data.shape[i] for i in keep])
    if data.ndim > 3:
        raise FormatError(path, f"TIFF series has {data.ndim} non-trivial axes ({axes});"
                                " expected a 2D image or a z stack")
    if np.iscomplexobj(data):
        raise FormatError(path, "complex-valued TIFF data is not supported")
    warnings: list[str] = []
    unit = str(ij.get("unit", "")).strip().lower()
    scale = _UNIT_ANGSTROM.get(unit)
    vs_xyz = (0.0, 0.0, 0.0)
    if scale is None or not all(ppu):
        warnings.append("TIFF pixel size unknown (no ImageJ unit and resolution)")
    else:
        sx, sy = scale / ppu[0], scale / ppu[1]
        sz = float(ij.get("spacing", sx / scale)) * scale
        vs_xyz = (sx, sy, sz if data.ndim == 3 else sx)
        if not np.allclose(vs_xyz, vs_xyz[0], rtol=1e-4):
            warnings.append(f"anisotropic voxel size x, y, z = "
                            f"{tuple(round(v, 4) for v in vs_xyz)} Å; using x")
    meta = {
        "format": "TIFF",
        "axes": axes,
        "dtype": data.dtype.name,
        "imagej": bool(ij),
        "voxel_size_xyz": vs_xyz,
        "anisotropic_voxel_size": bool(any(vs_xyz) and not np.allclose(vs_xyz, vs_xyz[0],
                                                                        rtol=1e-4)),
        "warnings": warnings,
    }
    return Volume(data=data, voxel_size=vs_xyz[0], path=str(path), metadata=meta)


def write_tiff(path: Path, volume: Volume, overwrite: bool = False) -> None:
    """Write ``volume`` as an ImageJ hyperstack (z slices as pages) with its voxel size.

    The voxel size is stored in nm (XResolution/YResolution = pixels per nm, ``spacing`` =
    z step in nm), the unit ImageJ/Fiji show. ImageJ stores only uint8, uint16 and float32:
    other types are written as float32. The origin is not stored.
    """
    data = np.asarray(volume.data)
    if data.ndim not in (2, 3):
        raise FormatError(path, f"cannot write a {data.ndim}D array as TIFF (need 2D or 3D)")
    if data.dtype.type not in _IMAGEJ_TYPES:
        data = data.astype(np.float32)
    kwargs: dict[str, Any] = {"imagej": True,
                              "metadata": {"axes": "ZYX" if data.ndim == 3 else "YX"}}
    if volume.voxel_size and volume.voxel_size > 0:
        per_axis = volume.metadata.get("voxel_size_xyz")
        if not (per_axis and len(per_axis) == 3 and per_axis[0] == volume.voxel_size):
            per_axis = (volume.voxel_size,) * 3
        sx, sy, sz = (float(v) / 10.0 for v in per_axis)
        kwargs["resolution"] = (1.0 / sx, 1.0 / sy)
        kwargs["metadata"].update({"unit": "nm", "spacing": sz})
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(str(tmp), np.ascontiguousarray(data), **kwargs)
