"""MRC/MRC2014 volumes: a validating header parser and reader, and an MRC2014 writer (mrcfile).

The 1024-byte header is decoded with mrcfile's own header dtype and checked field by field
before any data is touched, so a bad file fails with a message naming the field that is
wrong. The data block is then mapped (``numpy.memmap``) or read at the offset and in the byte
order the header analysis established: mrcfile itself trusts the machine stamp, which real
files sometimes get wrong. Writing goes through ``mrcfile.new`` (MRC2014).

Only mrcfile APIs present in 1.4.3 are used (Scipion pins ``mrcfile<=1.4.3``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from ..atomic import atomic_path
from ..errors import FormatError
from .pages import release_pages, slabs
from .volume import Volume

SUFFIXES = {".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali", ".ccp4"}
HEADER_BYTES = 1024
_MMAP_THRESHOLD = 512 * 1024**2
_MODE_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
_MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 3: "complex int16", 4: "complex float32",
               6: "uint16", 12: "float16", 101: "4-bit packed"}
_IMOD_STAMP = 1146047817  # 'IMOD' as int32: marks IMOD's use of the spare header words
_MAX_DIM = 2**24  # 16.7 M voxels along one axis: anything larger is a corrupt header


@dataclasses.dataclass
class MrcHeader:
    """The facts of an MRC header that reading needs, already validated.

    ``shape_file`` is the data block's shape in file order ``(sections, rows, columns)``;
    ``axes`` maps those three to spatial axes (1 = x, 2 = y, 3 = z), i.e. (MAPS, MAPR, MAPC).
    Voxel size and origin are ``(x, y, z)`` in Å.
    """

    path: Path
    byte_order: str
    mode: int
    shape_file: tuple[int, int, int]
    axes: tuple[int, int, int]
    voxel_size_xyz: tuple[float, float, float]
    origin: tuple[float, float, float]
    nstart_xyz: tuple[int, int, int]
    data_offset: int
    data_bytes: int
    file_size: int
    ispg: int
    nsymbt: int
    exttyp: str
    nversion: int
    stats: tuple[float, float, float, float]
    labels: list[str]
    unsigned_bytes: bool
    warnings: list[str]

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of one stored voxel (uint8 for 4-bit data, unpacked on reading)."""
        if self.mode == 101 or self.unsigned_bytes:
            return np.dtype("u1")
        return np.dtype(_MODE_DTYPES[self.mode]).newbyteorder(self.byte_order)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """The data shape after reordering to ``[z, y, x]``."""
        size = dict(zip(self.axes, self.shape_file))
        return size[3], size[2], size[1]


def _decode(raw: bytes, order: str) -> np.recarray:
    dtype = HEADER_DTYPE.newbyteorder(order)
    return np.frombuffer(raw, dtype=dtype).reshape(()).view(np.recarray)


def _plausible(h: np.recarray) -> bool:
    dims_ok = all(0 < int(n) < _MAX_DIM for n in (h.nx, h.ny, h.nz))
    return dims_ok and int(h.mode) in _MODE_NAMES


def _stamp_order(machst: np.ndarray) -> str | None:
    first = int(machst[0])
    if first in (0x44, 0x41):  # 0x41: little-endian stamp written by some older programs
        return "<"
    if first == 0x11:
        return ">"
    return None


def read_header(path: Path) -> MrcHeader:
    """Parse and validate the MRC header of ``path`` without reading the data.

    Raises FormatError naming the wrong field: file shorter than the header, neither byte
    order giving a plausible header, zero/negative/huge dimensions, unknown or complex mode,
    MAPC/MAPR/MAPS not a permutation of 1,2,3, negative extended-header size, or a data block
    shorter than NX*NY*NZ voxels of the mode. Recoverable oddities (wrong machine stamp,
    unset or anisotropic voxel size, missing 'MAP ' id) are listed in ``warnings``.
    """
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise FormatError(path, f"file is {size} bytes, shorter than the {HEADER_BYTES}-byte"
                                " MRC header (empty or truncated)")
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    notes: list[str] = []
    stamp = _stamp_order(np.frombuffer(raw[212:216], dtype="u1"))
    order = stamp or "<"
    h = _decode(raw, order)
    if not _plausible(h):
        other = ">" if order == "<" else "<"
        flipped = _decode(raw, other)
        if _plausible(flipped):
            h, order = flipped, other
    if stamp is None:
        notes.append(f"machine stamp {bytes(raw[212:216]).hex()} is not a known byte order;"
                        f" header reads as {'little' if order == '<' else 'big'}-endian")
    elif stamp != order:
        notes.append(f"machine stamp says {'little' if stamp == '<' else 'big'}-endian but"
                        f" the header is {'little' if order == '<' else 'big'}-endian")
    has_map_id = bytes(h.map)[:3] == b"MAP"
    if not has_map_id:
        notes.append("no 'MAP ' identifier in the header (pre-2000 format or not MRC)")

    nx, ny, nz, mode = int(h.nx), int(h.ny), int(h.nz), int(h.mode)
    if not all(0 < n < _MAX_DIM for n in (nx, ny, nz)):
        if not has_map_id:
            raise FormatError(path, "not an MRC file: no 'MAP ' identifier and impossible"
                                    f" dimensions NX, NY, NZ = {nx}, {ny}, {nz}")
        raise FormatError(path, f"header dimensions NX, NY, NZ = {nx}, {ny}, {nz} are invalid"
                                f" (each must be between 1 and {_MAX_DIM - 1})")
    if mode in (3, 4):
        raise FormatError(path, f"MRC mode {mode} ({_MODE_NAMES[mode]}) is a complex-valued"
                                " map (Fourier transform); only real-valued volumes are read")
    if mode not in _MODE_NAMES:
        raise FormatError(path, f"unknown MRC mode {mode} (known: 0 int8, 1 int16,"
                                " 2 float32, 6 uint16, 12 float16, 101 4-bit)")
    axes = (int(h.maps), int(h.mapr), int(h.mapc))
    if sorted(axes) != [1, 2, 3]:
        raise FormatError(path, f"MAPC, MAPR, MAPS = {axes[2]}, {axes[1]}, {axes[0]} is not a"
                                " permutation of 1, 2, 3")
    nsymbt = int(h.nsymbt)
    if nsymbt < 0:
        raise FormatError(path, f"negative extended header size NSYMBT = {nsymbt}")
    if mode == 101:
        data_bytes = (nx + 1) // 2 * ny * nz
    else:
        data_bytes = nx * ny * nz * np.dtype(_MODE_DTYPES[mode]).itemsize
    offset = HEADER_BYTES + nsymbt
    if offset > size:
        raise FormatError(path, f"extended header size NSYMBT = {nsymbt} runs past the end of"
                                f" the {size}-byte file")
    if size < offset + data_bytes:
        raise FormatError(path, f"data block truncated: header says {nx}x{ny}x{nz} voxels of"
                                f" mode {mode} ({data_bytes} bytes after the {offset}-byte"
                                f" header) but the file has only {max(size - offset, 0)}")
    if size > offset + data_bytes:
        notes.append(f"{size - offset - data_bytes} bytes after the data block ignored")

    cella = np.asarray(h.cella.tolist(), dtype=float)
    mxyz = np.array([int(h.mx), int(h.my), int(h.mz)], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        vs = np.where(mxyz > 0, cella / np.where(mxyz > 0, mxyz, 1), 0.0)
    if not np.all(np.isfinite(vs)) or np.any(vs < 0):
        notes.append(f"cell size {tuple(cella)} / sampling {tuple(mxyz)} gives an invalid"
                        " voxel size; treated as unknown")
        vs = np.zeros(3)
    elif np.all(vs == 0):
        notes.append("voxel size not set in the header (CELLA = 0)")
    elif not np.allclose(vs, vs[0], rtol=1e-4):
        notes.append(f"anisotropic voxel size x, y, z = {tuple(round(v, 4) for v in vs)} Å;"
                        " using x")
    origin = tuple(float(v) if np.isfinite(v) else 0.0 for v in h.origin.tolist())
    imod = np.frombuffer(raw[152:160], dtype=f"{order}i4")
    unsigned = mode == 0 and int(imod[0]) == _IMOD_STAMP and not int(imod[1]) & 1
    if unsigned:
        notes.append("IMOD mode-0 file flagged as unsigned bytes: read as uint8")
    nlabl = min(max(int(h.nlabl), 0), 10)
    labels = [bytes(lab).decode("ascii", "replace").strip() for lab in h.label[:nlabl]]
    return MrcHeader(
        path=path, byte_order=order, mode=mode, shape_file=(nz, ny, nx), axes=axes,
        voxel_size_xyz=tuple(float(v) for v in vs), origin=origin,
        nstart_xyz=(int(h.nxstart), int(h.nystart), int(h.nzstart)),
        data_offset=offset, data_bytes=data_bytes, file_size=size, ispg=int(h.ispg),
        nsymbt=nsymbt, exttyp=bytes(h.exttyp).decode("ascii", "replace").strip("\x00 "),
        nversion=int(h.nversion),
        stats=(float(h.dmin), float(h.dmax), float(h.dmean), float(h.rms)),
        labels=labels, unsigned_bytes=unsigned, warnings=notes)


def _unpack_4bit(packed: np.ndarray, nx: int) -> np.ndarray:
    # Mode 101 stores two voxels per byte, the first in the low nibble; odd rows are padded.
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out[..., :nx]


def _to_zyx(data: np.ndarray, axes: tuple[int, int, int]) -> np.ndarray:
    # File axis j holds spatial axis axes[j]; output axis k must hold spatial axis 3 - k.
    if axes == (3, 2, 1):
        return data
    return data.transpose([axes.index(3 - k) for k in range(3)])


def read_mrc(path: Path, mmap: bool | None = None) -> Volume:
    """Read an MRC file into a Volume with data ``[z, y, x]`` and voxel size in Å.

    Args:
        path: the MRC/MRCS/MAP/REC file.
        mmap: memory-map the data (read-only ``numpy.memmap``, nothing is loaded until
            sliced); ``None`` maps files over 512 MiB. 4-bit (mode 101) files are always
            loaded because they must be unpacked.

    ``voxel_size`` is the x voxel size (0.0 when unset); ``metadata`` holds the mode, the
    per-axis voxel size, NXSTART/NYSTART/NZSTART, the axis mapping, extended header type
    and size, header statistics, labels, and ``warnings`` (anisotropy, wrong machine stamp).
    Single images (NZ = 1) are returned 2D ``[y, x]``.
    """
    hdr = read_header(path)
    if mmap is None:
        mmap = hdr.data_bytes > _MMAP_THRESHOLD
    nz, ny, nx = hdr.shape_file
    if hdr.mode == 101:
        raw = np.fromfile(path, dtype=np.uint8, count=hdr.data_bytes, offset=hdr.data_offset)
        data = _unpack_4bit(raw.reshape(nz, ny, (nx + 1) // 2), nx)
    elif mmap:
        data = np.memmap(path, dtype=hdr.dtype, mode="r", offset=hdr.data_offset,
                         shape=hdr.shape_file)
    else:
        count = nx * ny * nz
        data = np.fromfile(path, dtype=hdr.dtype, count=count, offset=hdr.data_offset)
        data = data.reshape(hdr.shape_file).astype(hdr.dtype.newbyteorder("="), copy=False)
    data = _to_zyx(data, hdr.axes)
    if data.shape[0] == 1:
        data = data[0]
    vs = hdr.voxel_size_xyz
    meta: dict[str, Any] = {
        "format": "MRC",
        "mode": hdr.mode,
        "mode_name": _MODE_NAMES[hdr.mode],
        "voxel_size_xyz": vs,
        "anisotropic_voxel_size": bool(any(vs) and not np.allclose(vs, vs[0], rtol=1e-4)),
        "nstart_xyz": hdr.nstart_xyz,
        "mapcrs": (hdr.axes[2], hdr.axes[1], hdr.axes[0]),
        "ispg": hdr.ispg,
        "extended_header_bytes": hdr.nsymbt,
        "exttyp": hdr.exttyp,
        "nversion": hdr.nversion,
        "header_stats": dict(zip(("min", "max", "mean", "rms"), hdr.stats)),
        "labels": hdr.labels,
        "byte_order": "little" if hdr.byte_order == "<" else "big",
        "warnings": list(hdr.warnings),
    }
    return Volume(data=data, voxel_size=vs[0], origin=hdr.origin, path=str(path), metadata=meta)


def write_mrc(path: Path, volume: Volume, overwrite: bool = False) -> None:
    """Write ``volume`` as MRC2014 with its voxel size (Å, isotropic) and origin (x, y, z Å).

    int8, int16, uint16 and float16 arrays keep their type (modes 0, 1, 6, 12); anything
    else is stored as float32 (mode 2). A 2D array is written as a single image. The
    statistics in the header are computed from the data. ORIGIN holds ``volume.origin``
    (the position of the first voxel), NXSTART/NYSTART/NZSTART are 0. Per-axis voxel sizes
    read from an anisotropic file (``metadata['voxel_size_xyz']``) are written back as such.
    """
    data = volume.data
    if data.ndim not in (2, 3):
        raise FormatError(path, f"cannot write a {data.ndim}D array as MRC (need 2D or 3D)")
    # A memory-mapped volume (a large result) is copied slab by slab, never loaded whole.
    streamed = isinstance(data, np.memmap) and data.ndim == 3 and data.dtype in _MODE_OF
    if not streamed:
        data = np.asarray(data)
        if data.dtype not in (np.int8, np.int16, np.uint16, np.float16, np.float32):
            data = data.astype(np.float32)
    with atomic_path(path, overwrite) as tmp:
        opened = (mrcfile.new_mmap(str(tmp), data.shape, mrc_mode=_MODE_OF[data.dtype])
                  if streamed else mrcfile.new(str(tmp)))
        with opened as m, warnings.catch_warnings():
            # NaN voxels are allowed here (see volume.check_finite); mrcfile warns about them.
            warnings.simplefilter("ignore", RuntimeWarning)
            if streamed:
                _copy_in_slabs(data, m)
            else:
                m.set_data(np.ascontiguousarray(data))
            per_axis = volume.metadata.get("voxel_size_xyz")
            if per_axis and len(per_axis) == 3 and per_axis[0] == volume.voxel_size:
                m.voxel_size = tuple(float(v) for v in per_axis)
            elif volume.voxel_size:
                m.voxel_size = float(volume.voxel_size)
            m.header.origin = tuple(float(v) for v in volume.origin)


_MODE_OF = {np.dtype(np.int8): 0, np.dtype(np.int16): 1, np.dtype(np.float32): 2,
            np.dtype(np.uint16): 6, np.dtype(np.float16): 12}


def _copy_in_slabs(source: np.memmap, m: Any) -> None:
    """Copy a memory-mapped volume into the mapped new file ``m`` slab by slab, with the
    header statistics computed on the way, so neither map is resident as a whole."""
    lo, hi, total, squares = np.inf, -np.inf, 0.0, 0.0
    for z in slabs(source.shape):
        block = np.asarray(source[z])
        m.data[z] = block
        wide = block.astype(np.float64)
        lo, hi = min(lo, float(np.nanmin(wide))), max(hi, float(np.nanmax(wide)))
        total += float(np.nansum(wide))
        squares += float(np.nansum(wide * wide))
        release_pages(source)
        release_pages(m.data)
    n = source.size
    mean = total / n if n else 0.0
    m.header.dmin, m.header.dmax = (lo, hi) if np.isfinite(lo) else (0.0, 0.0)
    m.header.dmean = mean
    m.header.rms = float(np.sqrt(max(squares / n - mean * mean, 0.0))) if n else 0.0


class MrcBlockWriter:
    """An MRC2014 file of known shape ``[z, y, x]`` written block by block, in any order,
    without holding the volume: ``with MrcBlockWriter(path, shape, dtype, voxel_size,
    origin) as w: w.write(z0, y0, block)``.

    The file is staged beside ``path`` (``atomic_path``), pre-sized with its header
    (``mrcfile.new_mmap``, never touched through the map), and each ``block``
    ``[dz, dy, nx]`` (whole rows) goes to its place with one ``os.pwrite`` per z-slice, so
    written pages never count in this process's memory. The header statistics are gathered
    on the way; the staged file replaces ``path`` only when the block ends without error.
    ``dtype``: int8, int16, uint16, float16 or float32 (MRC modes 0, 1, 6, 12, 2); voxel
    size Å, origin ``(x, y, z)`` Å as :func:`write_mrc`.
    """

    def __init__(self, path: Path, shape_zyx: tuple[int, int, int], dtype: Any,
                 voxel_size: float, origin: tuple[float, float, float],
                 overwrite: bool = False) -> None:
        self.path, self.shape = Path(path), tuple(int(n) for n in shape_zyx)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _MODE_OF:
            raise FormatError(self.path, f"cannot stream {self.dtype} voxels as MRC")
        self._voxel_size, self._origin, self._overwrite = voxel_size, origin, overwrite
        self._lo, self._hi, self._sum, self._squares = np.inf, -np.inf, 0.0, 0.0

    def __enter__(self) -> MrcBlockWriter:
        self._staging = atomic_path(self.path, self._overwrite)
        tmp = self._staging.__enter__()
        try:
            self._mrc = mrcfile.new_mmap(str(tmp), self.shape, mrc_mode=_MODE_OF[self.dtype])
            if self._voxel_size:
                self._mrc.voxel_size = float(self._voxel_size)
            self._mrc.header.origin = tuple(float(v) for v in self._origin)
            self._offset = HEADER_BYTES + int(self._mrc.header.nsymbt)
            self._fd = os.open(tmp, os.O_WRONLY)
        except BaseException:
            self._staging.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, z0: int, y0: int, block: np.ndarray) -> None:
        """Write ``block`` ``[dz, dy, nx]`` at z-slice ``z0``, row ``y0``."""
        _, ny, nx = self.shape
        data = np.ascontiguousarray(block, dtype=self.dtype.newbyteorder("<"))
        if data.ndim != 3 or data.shape[2] != nx or z0 + data.shape[0] > self.shape[0] \
                or y0 + data.shape[1] > ny:
            raise ValueError(f"block {data.shape} at z {z0}, y {y0} does not fit {self.shape}")
        row = nx * self.dtype.itemsize
        for k, plane in enumerate(data):
            os.pwrite(self._fd, plane, self._offset + ((z0 + k) * ny + y0) * row)
        wide = data.astype(np.float64)
        self._lo = min(self._lo, float(np.nanmin(wide)))
        self._hi = max(self._hi, float(np.nanmax(wide)))
        self._sum += float(np.nansum(wide))
        self._squares += float(np.nansum(wide * wide))

    def __exit__(self, *exc: Any) -> None:
        os.close(self._fd)
        try:
            n = int(np.prod(self.shape))
            mean = self._sum / n
            header = self._mrc.header
            header.dmin, header.dmax = (self._lo, self._hi) if np.isfinite(self._lo) \
                else (0.0, 0.0)
            header.dmean = mean
            header.rms = float(np.sqrt(max(self._squares / n - mean * mean, 0.0)))
            self._mrc.close()
        except BaseException:
            self._staging.__exit__(*sys.exc_info())
            raise
        self._staging.__exit__(*exc)
