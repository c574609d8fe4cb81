"""OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on zarr v3) multiscale volumes, read lazily.

An OME-Zarr image is a folder (``NAME.zarr``) whose group attributes hold ``multiscales``:
axes (``z, y, x``, optionally with units) and datasets, one per resolution level, each
with a ``scale`` coordinate transformation (the voxel size per axis in the axes' unit).
This is the layout of copick projects and the cryoET Data Portal. Reading returns the
chosen level as a ``zarr`` array, so only the chunks that are sliced are read. Needs the
``zarr`` package (``pip install "cryoet-integration[batch]"``); the rest of ``formats``
does not.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .volume import Volume

SUFFIXES = frozenset({".zarr"})
# Length units of OME-NGFF axes, in Å.
_UNIT_ANGST = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7,
               "meter": 1e10, "picometer": 0.01}


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise FormatError("OME-Zarr", 'reading .zarr needs zarr: pip install '
                          '"cryoet-integration[batch]"') from None
    return zarr


def is_ome_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding OME-Zarr multiscale image metadata."""
    p = Path(path)
    return p.is_dir() and ((p / ".zattrs").exists() or (p / "zarr.json").exists())


def _multiscale(group: Any, path: Path) -> dict[str, Any]:
    attrs = dict(group.attrs)
    scales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not scales:
        raise FormatError(path, "a zarr group without OME-Zarr 'multiscales' metadata")
    return scales[0]


def levels(path: str | Path) -> list[dict[str, Any]]:
    """The resolution levels of an OME-Zarr image, finest first: dataset ``path``, voxel
    size per axis ``voxel_size_zyx`` (Å) and ``shape_zyx``."""
    p = Path(path)
    group = _open_group(p)
    ms = _multiscale(group, p)
    axes = ms.get("axes", [])
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes] or ["z", "y", "x"]
    if [n.lower() for n in names[-3:]] != ["z", "y", "x"]:
        raise FormatError(p, f"OME-Zarr axes {names}: expected the last three to be z, y, x")
    unit = (axes[-1].get("unit") if axes and isinstance(axes[-1], dict) else None) or \
        "angstrom"
    if unit not in _UNIT_ANGST:
        raise FormatError(p, f"OME-Zarr axis unit '{unit}' is not a length unit")
    out = []
    for dataset in ms.get("datasets", []):
        scale = [1.0] * 3
        for transform in dataset.get("coordinateTransformations", []):
            if transform.get("type") == "scale":
                scale = [float(v) for v in transform["scale"][-3:]]
        array = group[dataset["path"]]
        out.append({"path": dataset["path"],
                    "voxel_size_zyx": [v * _UNIT_ANGST[unit] for v in scale],
                    "shape_zyx": [int(n) for n in array.shape[-3:]]})
    if not out:
        raise FormatError(p, "OME-Zarr multiscales list no datasets")
    return sorted(out, key=lambda lv: lv["voxel_size_zyx"][-1])


def _open_group(path: Path) -> Any:
    zarr = _zarr()
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many kinds for a bad store
        raise FormatError(path, f"not a readable zarr group ({type(exc).__name__}: "
                          f"{exc})") from None


def choose_level(found: list[dict[str, Any]], target_voxel_size: float | None) -> int:
    """The level whose voxel size is nearest ``target_voxel_size`` Å (on a log scale; the
    finer of two equally near), or the finest level when no target is given."""
    if not target_voxel_size or target_voxel_size <= 0:
        return 0
    return min(range(len(found)), key=lambda i: (
        round(abs(math.log(found[i]["voxel_size_zyx"][-1] / target_voxel_size)), 6), i))


def read_ome_zarr(path: Path, mmap: bool | None = None,
                  target_voxel_size: float | None = None) -> Volume:
    """Read one level of an OME-Zarr image lazily (``data`` is a ``zarr`` array
    ``[z, y, x]``; slicing reads only the chunks it needs).

    ``target_voxel_size`` (Å) picks the level nearest it (e.g. a model's voxel size);
    otherwise the finest. ``mmap`` is accepted for a uniform interface (always lazy).
    """
    del mmap
    found = levels(path)
    index = choose_level(found, target_voxel_size)
    level = found[index]
    data = _open_group(path)[level["path"]]
    if data.ndim > 3:
        if any(n != 1 for n in data.shape[:-3]):
            raise FormatError(path, f"OME-Zarr image of shape {tuple(data.shape)}: only "
                              "single-channel, single-time-point volumes are supported")
        data = data[(0,) * (data.ndim - 3)]  # small leading axes: loaded
    vz, vy, vx = level["voxel_size_zyx"]
    warnings = [] if np.allclose([vz, vy], vx, rtol=1e-4) else \
        [f"anisotropic voxel size {vx:g} x {vy:g} x {vz:g} Å (x, y, z)"]
    meta = {"format": "OME-Zarr", "level": index, "levels": found,
            "voxel_size_xyz": (vx, vy, vz), "chunks_zyx": list(data.chunks[-3:]),
            "warnings": warnings}
    return Volume(data=data, voxel_size=float(vx), origin=(0.0, 0.0, 0.0), path=str(path),
                  metadata=meta)


def write_ome_zarr(path: Path, volume: Volume, overwrite: bool = False,
                   levels_count: int = 3, chunk: int = 64) -> None:
    """Write ``volume`` as OME-Zarr 0.4 (zarr v2) with ``levels_count`` levels, each
    binned 2x from the previous (voxel sizes in Å, axes z, y, x in angstrom).

    The folder is written beside the target and renamed onto it when complete.
    """
    zarr = _zarr()
    target = Path(path)
    if target.exists() and not overwrite:
        raise FormatError(target, "exists (pass overwrite=True / --force to replace it)")
    if not target.parent.is_dir():
        raise FormatError(target, f"output directory {target.parent} does not exist")
    data = volume.data
    if data.ndim != 3:
        raise FormatError(target, f"OME-Zarr output needs a 3D volume, got {data.ndim}D")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        group = zarr.open_group(str(tmp), mode="w", **_v2(zarr))
        vs = float(volume.voxel_size or 1.0)
        datasets, level = [], np.asarray(data)
        for i in range(levels_count):
            if i and min(level.shape) < 2:
                break
            if i:
                level = _bin2(level)
            group.create_dataset(str(i), data=level, chunks=(chunk,) * 3)
            datasets.append({"path": str(i), "coordinateTransformations": [
                {"type": "scale", "scale": [vs * 2**i] * 3}]})
        group.attrs["multiscales"] = [{
            "version": "0.4", "name": target.stem,
            "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"],
            "datasets": datasets}]
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _v2(zarr: Any) -> dict[str, Any]:
    """Keyword that makes zarr 3 write the v2 format OME-Zarr 0.4 uses (zarr 2: none)."""
    return {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}


def _bin2(data: np.ndarray) -> np.ndarray:
    """Mean of 2x2x2 blocks (odd trailing planes dropped), in the input's float type."""
    nz, ny, nx = (n // 2 * 2 for n in data.shape)
    d = data[:nz, :ny, :nx].astype(np.float32)
    binned = d.reshape(nz // 2, 2, ny // 2, 2, nx // 2, 2).mean(axis=(1, 3, 5))
    return binned.astype(data.dtype) if data.dtype.kind == "f" else binned
