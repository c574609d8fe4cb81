"""A readable summary of any cryo-ET file: volumes, particle sets, STAR files, mdoc, ...

``summarize(path)`` returns a JSON-serialisable dict (``kind``, ``format`` and facts of that
kind); ``render(summary)`` turns it into the text ``cryovis info`` prints. Only the base
install is used (numpy, pandas, starfile, mrcfile, emfile, tifffile): never torch or scipy.
Volumes are opened memory-mapped; their statistics are computed slab by slab up to
``STATS_LIMIT_BYTES`` and taken from the header beyond that.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import em, mrc, tiff
from .errors import FormatError, PathLike
from .mdoc import read_mdoc
from .particle_io import FORMATS, _load_formats, detect_format, read_particles
from .particles import CORE, MATRIX
from .volume import read_volume

STATS_LIMIT_BYTES = 1024**3
_TEXT_SUFFIXES = {".star", ".mdoc", ".cbox", ".box", ".doc", ".csv", ".tbl", ".json", ".xml",
                  ".md", ".txt", ".coords", ".tlt", ".rawtlt"}
_PARTICLE_COLUMN = re.compile(
    r"^(rln(Centered)?Coordinate[XYZ]|rlnAngle(Rot|Tilt|Psi)|rlnOrigin[XYZ]|"
    r"rlnTomoParticleName|orig_[xyz]|CoordinateX)")
_SHOWN = 10  # items of a long list or mapping shown in the text output
Options = dict  # reader options given by the user: voxel_size (Å), tomograms (path)


def summarize(path: PathLike, voxel_size: float | None = None,
              tomograms: PathLike | None = None) -> dict[str, Any]:
    """Describe ``path``; raises FormatError (naming the file) for unknown or bad files.

    Args:
        path: any file of the formats in ``formats`` (see ``docs/formats.md``).
        voxel_size: Å per voxel overriding the file's, for volumes and particle files.
        tomograms: RELION 5 tomograms.star giving tomogram sizes and pixel sizes, for
            particle files in centred Å (without it their positions are shown in Å only).
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "no such file")
    if p.is_dir():
        raise FormatError(p, "is a directory, not a file")
    if p.stat().st_size == 0:
        raise FormatError(p, "empty file (0 bytes)")
    suffix = p.suffix.lower()
    if suffix in _TEXT_SUFFIXES:
        _require_text(p)
    handler = _HANDLERS.get(suffix)
    if handler is None and (suffix in mrc.SUFFIXES or suffix in tiff.SUFFIXES):
        handler = _volume
    if handler is None:
        handler = _particles_by_registry
    summary = {"path": str(p), "size_bytes": p.stat().st_size}
    opts = {k: v for k, v in (("voxel_size", voxel_size), ("tomograms", tomograms))
            if v is not None}
    summary.update(handler(p, opts))
    return summary


def _require_text(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(65536)
    if b"\x00" in head:
        raise FormatError(path, "binary data (NUL bytes) in what should be a text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the 64 KiB boundary
            raise FormatError(path, f"not a text file (invalid UTF-8 at byte {exc.start})"
                              ) from None


# ----------------------------------------------------------------------------- volumes


def _volume(path: Path, opts: Options) -> dict[str, Any]:
    vol = read_volume(path, mmap=True, voxel_size=opts.get("voxel_size"))
    meta = vol.metadata
    data = vol.data
    out: dict[str, Any] = {
        "kind": "volume",
        "format": meta.get("format", path.suffix.lstrip(".").upper()),
        "shape_xyz": [int(n) for n in vol.shape_xyz],
        "dtype": str(data.dtype.newbyteorder("=").name),
        "voxel_size_angst": vol.voxel_size,
    }
    if "mode" in meta:
        out["mrc_mode"] = f"{meta['mode']} ({meta['mode_name']})"
    out["layout"] = _layout(data, meta.get("ispg"))
    if meta.get("anisotropic_voxel_size"):
        out["voxel_size_xyz_angst"] = list(meta["voxel_size_xyz"])
    if vol.voxel_size:
        out["physical_size_xyz_angst"] = [round(n * vol.voxel_size, 3) for n in vol.shape_xyz]
    out["origin_xyz_angst"] = list(vol.origin)
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
                "min": stats["min"], "max": stats["max"], "mean": stats["mean"]}
    flat = data.reshape(data.shape[0], -1) if data.ndim > 1 else data.reshape(-1, 1)
    step = max(1, 2**24 // max(flat.shape[1], 1))
    lo, hi, total, count, bad = math.inf, -math.inf, 0.0, 0, 0
    for start in range(0, flat.shape[0], step):
        slab = np.asarray(flat[start:start + step], dtype=np.float64)
        finite = np.isfinite(slab)
        bad += int(slab.size - np.count_nonzero(finite))
        good = slab[finite]
        if good.size:
            lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
            total += float(good.sum())
            count += int(good.size)
    out: dict[str, Any] = {"stats_source": "data",
                           "min": lo if count else None, "max": hi if count else None,
                           "mean": total / count if count else None}
    if bad:
        out["non_finite_voxels"] = bad
    return out


def _em(path: Path, opts: Options) -> dict[str, Any]:
    hdr = em.read_em_header(path)
    nx, _, nz = hdr["shape_xyz"]
    if nx == 20 and nz == 1 and any(".em" in f.suffixes for f in _formats()):
        return _particles(path, opts)  # a TOM/AV3 motive list, 20 x N
    return _volume(path, opts)


# ---------------------------------------------------------------------------- particles


def _formats() -> list[Any]:
    _load_formats()  # the registry fills lazily, on first use
    return list(FORMATS.values())


def _particles_by_registry(path: Path, opts: Options) -> dict[str, Any]:
    try:
        detect_format(path)
    except FormatError:
        raise FormatError(path, f"unknown file type '{path.suffix or '(no extension)'}':"
                                " not a volume, STAR, mdoc or particle file") from None
    return _particles(path, opts)


def _particles(path: Path, opts: Options) -> dict[str, Any]:
    name = detect_format(path)
    table = read_particles(path, format=name, **opts)
    out: dict[str, Any] = {"kind": "particles", "format": name, "count": len(table)}
    desc = FORMATS[name].description if name in FORMATS else ""
    if desc:
        out["format_description"] = desc
    out["tomograms"] = _counts(table["tomo_name"].fillna("").astype(str).replace("", "(none)"))
    classes = table["class"].dropna().astype(str)
    if len(classes):
        out["classes"] = _counts(classes)
    sizes = sorted({round(float(v), 4) for v in table["voxel_size"] if np.isfinite(v)})
    out["voxel_sizes_angst"] = sizes or "unknown"
    if len(table):
        xyz = table[["x", "y", "z"]].to_numpy(dtype=float)
        out["position_min_xyz_voxels"] = [round(float(v), 3) for v in xyz.min(axis=0)]
        out["position_max_xyz_voxels"] = [round(float(v), 3) for v in xyz.max(axis=0)]
        mats = table[[f"r{i}{j}" for i in range(3) for j in range(3)]].to_numpy(float)
        out["oriented"] = bool(np.abs(mats - np.eye(3).ravel()).max() > 1e-9)
        scores = table["score"].to_numpy(dtype=float)
        if np.isfinite(scores).any():
            out["score_range"] = [float(np.nanmin(scores)), float(np.nanmax(scores))]
    extra = [c for c in table.columns if c not in CORE and c not in MATRIX]
    if extra:
        out["extra_columns"] = extra
    return out


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts(sort=False).items()}


# ---------------------------------------------------------------------------- STAR files


def _read_star(path: Path) -> dict[str, Any]:
    import starfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # noqa: BLE001 - starfile raises many types on malformed text
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise FormatError(path, f"not a readable STAR file ({type(exc).__name__}: {msg})"
                          ) from None
    if not blocks:
        raise FormatError(path, "no data_ block: not a STAR file")
    return blocks


def _block_facts(blocks: dict[str, Any]) -> list[dict[str, Any]]:
    facts = []
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            facts.append({"block": f"data_{name}", "type": "loop", "rows": len(block),
                          "columns": [str(c) for c in block.columns]})
        else:
            facts.append({"block": f"data_{name}", "type": "key/value",
                          "keys": {str(k): _plain(v) for k, v in dict(block).items()}})
    return facts


def _columns(blocks: dict[str, Any]) -> set[str]:
    cols: set[str] = set()
    for block in blocks.values():
        cols.update(str(c) for c in (block.columns if isinstance(block, pd.DataFrame)
                                     else dict(block)))
    return cols


def _star(path: Path, opts: Options) -> dict[str, Any]:
    blocks = _read_star(path)
    cols = _columns(blocks)
    if {"rlnTomoParticlesFile", "rlnTomoTomogramsFile"} & cols:
        out = _optimisation_set(path, blocks)
    elif {"rlnTomoSizeX", "rlnTomoTiltSeriesStarFile", "rlnTomoTiltSeriesName"} & cols:
        out = _tomograms_star(path, blocks)
    elif "cryolo" in blocks:
        out = _cbox_summary(path, blocks)
    elif any(_PARTICLE_COLUMN.match(c) for c in cols):
        centred = "rlnCenteredCoordinateXAngst" in cols and "rlnTomoSizeX" not in cols
        try:
            out = _particles(path, opts)
        except FormatError as exc:
            if not centred or "tomograms" in opts:
                raise
            out = _centred_summary(path, blocks, exc)
    elif {"rlnTomoNominalStageTiltAngle", "rlnMicrographMovieName", "rlnTomoProjX"} & cols:
        out = _tilt_series_star(blocks)
    else:
        out = {"kind": "star", "format": "STAR (unrecognised content)"}
    out["blocks"] = _block_facts(blocks)
    return out


def _centred_summary(path: Path, blocks: dict[str, Any], exc: FormatError
                     ) -> dict[str, Any]:
    """RELION 5 particles in centred Å whose voxel positions need tomograms.star."""
    axes = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
    table = next(b for b in blocks.values()
                 if isinstance(b, pd.DataFrame) and set(axes) <= set(b.columns))
    xyz = table[axes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(xyz).all():
        raise exc
    out: dict[str, Any] = {"kind": "particles", "format": "relion5 (centred Å)",
                           "count": len(table)}
    if "rlnTomoName" in table.columns:
        out["tomograms"] = _counts(table["rlnTomoName"].astype(str))
    if "rlnClassNumber" in table.columns:
        out["classes"] = _counts(table["rlnClassNumber"].astype(str))
    pixel = {_plain(v) for b in blocks.values() if isinstance(b, pd.DataFrame)
             for c in ("rlnTomoTiltSeriesPixelSize", "rlnImagePixelSize") if c in b.columns
             for v in b[c]}
    if pixel:
        out["pixel_sizes_angst"] = sorted(pixel)
    if len(xyz):
        out["centred_min_xyz_angst"] = [round(float(v), 3) for v in xyz.min(axis=0)]
        out["centred_max_xyz_angst"] = [round(float(v), 3) for v in xyz.max(axis=0)]
    out["note"] = ("positions are centred Å; voxel positions need the tomogram sizes"
                   " (cryovis info FILE --tomograms tomograms.star)")
    return out


def _optimisation_set(path: Path, blocks: dict[str, Any]) -> dict[str, Any]:
    keys: dict[str, str] = {}
    for block in blocks.values():
        if isinstance(block, pd.DataFrame):
            if len(block):
                keys.update({str(c): str(block[c].iloc[0]) for c in block.columns})
        else:
            keys.update({str(k): str(v) for k, v in dict(block).items()})
    form = "loop" if any(isinstance(b, pd.DataFrame) for b in blocks.values()) else "key/value"
    files = {k.removeprefix("rlnTomo"): v for k, v in keys.items() if v and v != '""'}
    missing = [v for v in files.values() if not (path.parent / v).exists()]
    out: dict[str, Any] = {"kind": "optimisation_set", "format": f"RELION optimisation set"
                           f" ({form} form)", "files": files}
    if missing:
        out["not_found_next_to_this_file"] = missing
    return out


def _tomograms_star(path: Path, blocks: dict[str, Any]) -> dict[str, Any]:
    table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)
                  and ("rlnTomoName" in b.columns or "rlnTomoTiltSeriesName" in b.columns)),
                 None)
    out: dict[str, Any] = {"kind": "tomograms", "format": "RELION 5 tomograms.star"}
    if table is None:
        raise FormatError(path, "tomograms STAR without a loop of rlnTomoName")
    name_col = "rlnTomoName" if "rlnTomoName" in table.columns else "rlnTomoTiltSeriesName"
    out["count"] = len(table)
    out["tomograms"] = [str(t) for t in table[name_col]]
    for col, key in (("rlnTomoTiltSeriesPixelSize", "tilt_series_pixel_size_angst"),
                     ("rlnTomoTomogramBinning", "tomogram_binning"),
                     ("rlnVoltage", "voltage_kv")):
        if col in table.columns:
            out[key] = sorted({_plain(v) for v in table[col]})
    if {"rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"} <= set(table.columns):
        sizes = table[["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].astype(str)
        out["sizes_xyz_unbinned_px"] = sorted({"x".join(r) for r in sizes.to_numpy()})
    per_tilt = [n for n, b in blocks.items() if isinstance(b, pd.DataFrame) and b is not table]
    if per_tilt:
        out["per_tilt_series_blocks"] = len(per_tilt)
    return out


def _tilt_series_star(blocks: dict[str, Any]) -> dict[str, Any]:
    series = []
    for name, block in blocks.items():
        if not isinstance(block, pd.DataFrame):
            continue
        facts: dict[str, Any] = {"name": name or "(unnamed)", "tilts": len(block)}
        if "rlnTomoNominalStageTiltAngle" in block.columns:
            tilts = pd.to_numeric(block["rlnTomoNominalStageTiltAngle"], errors="coerce")
            facts["tilt_range_deg"] = [float(tilts.min()), float(tilts.max())]
        if "rlnMicrographPreExposure" in block.columns:
            dose = pd.to_numeric(block["rlnMicrographPreExposure"], errors="coerce")
            facts["max_pre_exposure_e_per_a2"] = float(dose.max())
        aligned = {"rlnTomoXTilt", "rlnTomoProjX"} & set(block.columns)
        facts["alignment"] = "yes" if aligned else "no"
        series.append(facts)
    return {"kind": "tilt_series", "format": "RELION tilt-series STAR", "tilt_series": series}


# ------------------------------------------------------------- crYOLO, box, maps, mdoc, csv


def _cbox(path: Path, opts: Options) -> dict[str, Any]:
    blocks = _read_star(path)
    if "cryolo" not in blocks or not isinstance(blocks["cryolo"], pd.DataFrame):
        raise FormatError(path, "no data_cryolo loop: not a crYOLO CBOX file")
    out = _cbox_summary(path, blocks)
    if out["dimensionality"] == "3D" and any(".cbox" in f.suffixes for f in _formats()):
        out["particles"] = _particles(path, opts)
    out["blocks"] = _block_facts(blocks)
    return out


def _cbox_summary(path: Path, blocks: dict[str, Any]) -> dict[str, Any]:
    box = blocks["cryolo"]
    missing = [c for c in ("CoordinateX", "CoordinateY") if c not in box.columns]
    if missing:
        raise FormatError(path, f"crYOLO CBOX lacks columns {missing}")
    numeric = box.apply(pd.to_numeric, errors="coerce")
    bad = box[["CoordinateX", "CoordinateY"]].notna() & numeric[["CoordinateX",
                                                                 "CoordinateY"]].isna()
    if bad.to_numpy().any():
        raise FormatError(path, "non-numeric value in CoordinateX/CoordinateY")
    three_d = "CoordinateZ" in box.columns and numeric["CoordinateZ"].notna().any()
    out: dict[str, Any] = {"kind": "cbox", "format": "crYOLO CBOX",
                           "dimensionality": "3D" if three_d else "2D", "count": len(box)}
    for col in ("Width", "Height", "Depth"):
        if col in box.columns and numeric[col].notna().any():
            out[f"box_{col.lower()}_px"] = sorted({_plain(v) for v in numeric[col].dropna()})
    if three_d:
        z = numeric["CoordinateZ"]
        out["z_range_px"] = [float(z.min()), float(z.max())]
    if "Confidence" in box.columns and numeric["Confidence"].notna().any():
        out["confidence_range"] = [float(numeric["Confidence"].min()),
                                   float(numeric["Confidence"].max())]
    if "filamentid" in box.columns:
        out["filaments"] = int(numeric["filamentid"].nunique())
    include = blocks.get("cryolo_include")
    if isinstance(include, pd.DataFrame) and len(include) and "slice_index" in include.columns:
        out["include_slices"] = len(include)
    return out


def _box(path: Path, opts: Options) -> dict[str, Any]:
    del opts
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise FormatError(path, f"not an EMAN .box file ({str(exc).splitlines()[0]})") from None
    values = table.apply(pd.to_numeric, errors="coerce")
    if table.shape[1] < 4 or values.iloc[:, :4].isna().to_numpy().any():
        raise FormatError(path, "EMAN .box rows must be at least 4 numbers: x y width height")
    w, h = values[2], values[3]
    return {"kind": "box2d", "format": "EMAN .box (2D, lower-left corner)", "count": len(table),
            "box_sizes_px": sorted({f"{_plain(a)}x{_plain(b)}" for a, b in zip(w, h)}),
            "x_range_px": [float(values[0].min()), float(values[0].max())],
            "y_range_px": [float(values[1].min()), float(values[1].max())],
            "columns": int(table.shape[1])}


def _table_map(path: Path, opts: Options) -> dict[str, Any]:
    del opts
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(("#", "%")):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
            raise FormatError(path, f"line {number} of a Dynamo table map must be"
                                    f" 'index path': {line.strip()[:60]!r}")
        entries[parts[0]] = parts[1].strip()
    if not entries:
        raise FormatError(path, "no 'index path' lines: empty Dynamo table map")
    return {"kind": "table_map", "format": "Dynamo table map (.doc)", "count": len(entries),
            "tomograms": entries}


def _mdoc(path: Path, opts: Options) -> dict[str, Any]:
    del opts
    glob, titles, tilts = read_mdoc(path)
    out: dict[str, Any] = {"kind": "mdoc", "format": "SerialEM mdoc", "tilts": len(tilts)}
    if "TiltAngle" in tilts.columns:
        angles = tilts["TiltAngle"].dropna()
        if len(angles):
            out["tilt_range_deg"] = [float(angles.min()), float(angles.max())]
            if len(angles) > 1:
                steps = np.diff(np.sort(angles.to_numpy()))
                out["median_tilt_step_deg"] = round(float(np.median(steps)), 3)
    pixel = tilts["PixelSpacing"].dropna() if "PixelSpacing" in tilts.columns else []
    if len(pixel):
        out["pixel_size_angst"] = sorted({float(v) for v in pixel})
    elif "PixelSpacing" in glob:
        out["pixel_size_angst"] = glob["PixelSpacing"]
    if "ExposureDose" in tilts.columns and tilts["ExposureDose"].notna().any():
        dose = tilts["ExposureDose"].dropna()
        out["dose_per_tilt_e_per_a2"] = round(float(dose.mean()), 4)
        out["total_dose_e_per_a2"] = round(float(dose.sum()), 3)
    for key in ("Voltage", "ImageFile", "ImageSize"):
        if key in glob:
            out[key.lower()] = glob[key]
    axis = next((m.group(1) for t in titles
                 for m in [re.search(r"Tilt axis angle\s*=\s*([-\d.]+)", t)] if m), None)
    if axis is not None:
        out["tilt_axis_angle_deg"] = float(axis)
    if titles:
        out["titles"] = titles
    return out


def _csv(path: Path, opts: Options) -> dict[str, Any]:
    try:
        head = pd.read_csv(path, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise FormatError(path, f"not a readable CSV file ({str(exc).splitlines()[0]})"
                          ) from None
    cols = {str(c).strip() for c in head.columns}
    if cols & {"x", "y", "z", "x_angst", "y_angst", "z_angst"}:
        return _particles(path, opts)
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, ValueError) as exc:
        raise FormatError(path, f"not a readable CSV file ({str(exc).splitlines()[0]})"
                          ) from None
    return {"kind": "csv", "format": "CSV (not a cryovis particle CSV: no x, y, z columns)",
            "rows": len(table), "columns": [str(c) for c in table.columns],
            "numeric_columns": [str(c) for c in table.columns
                                if pd.api.types.is_numeric_dtype(table[c])]}


def _text(path: Path, opts: Options) -> dict[str, Any]:
    del opts
    lines = path.read_text(encoding="utf-8").splitlines()
    title = next((ln.lstrip("# ").strip() for ln in lines if ln.strip()), "")
    return {"kind": "text", "format": "text document", "lines": len(lines), "title": title}


_HANDLERS: dict[str, Callable[[Path, Options], dict[str, Any]]] = {
    ".em": _em,
    ".star": _star,
    ".cbox": _cbox,
    ".box": _box,
    ".doc": _table_map,
    ".mdoc": _mdoc,
    ".csv": _csv,
    ".md": _text,
    ".txt": _text,
}


# ----------------------------------------------------------------------------- rendering


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar for numpy/pandas values."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` with numpy/pandas scalars, tuples and non-finite floats made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return _plain(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        items = [f"{k}: {_fmt(v)}" for k, v in list(value.items())[:_SHOWN]]
        more = f", ... ({len(value) - _SHOWN} more)" if len(value) > _SHOWN else ""
        return ", ".join(items) + more
    if isinstance(value, (list, tuple)):
        items = [_fmt(v) for v in list(value)[:_SHOWN]]
        more = f", ... ({len(value) - _SHOWN} more)" if len(value) > _SHOWN else ""
        return ", ".join(items) + more
    return str(value)


def render(summary: dict[str, Any]) -> str:
    """The human-readable text of a ``summarize`` result (one fact per line)."""
    lines = []
    for key, value in summary.items():
        if key == "blocks":
            lines.append("blocks:")
            for block in value:
                detail = (f"{block['rows']} rows; columns: {_fmt(block['columns'])}"
                          if block["type"] == "loop" else f"key/value: {_fmt(block['keys'])}")
                lines.append(f"  {block['block']}: {detail}")
        elif key == "particles" and isinstance(value, dict):
            lines.append("as particles:")
            lines.extend(f"  {k.replace('_', ' ')}: {_fmt(v)}" for k, v in value.items())
        elif key == "tilt_series":
            lines.append("tilt series:")
            lines.extend(f"  {_fmt(s)}" for s in value)
        elif key == "warnings":
            lines.extend(f"warning: {w}" for w in value)
        else:
            lines.append(f"{key.replace('_', ' ')}: {_fmt(value)}")
    return "\n".join(lines)
