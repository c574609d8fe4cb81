"""RELION 5 ``tomograms.star``: tomogram names, sizes and pixel sizes.

RELION 5 stores particle positions in Å from the tomogram centre; turning them into
voxels needs, per tomogram, the size ``rlnTomoSizeX/Y/Z`` (unbinned tilt-series px) and
the tilt-series pixel size ``rlnTomoTiltSeriesPixelSize`` (Å). This module reads and
writes that table and resolves the geometry of each particle from it or from explicit
options (``tomo_size_xyz``, ``tilt_series_pixel_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from ..errors import FormatError, PathLike, warn
from ..facts import Summary, distinct_numbers
from ..text.star import read_star, write_star
from .common import parse_size_xyz, positive_or_none

COLUMNS = ["tomo_name", "size_x", "size_y", "size_z", "tilt_series_pixel_size", "binning"]
TomogramsLike = Union[PathLike, pd.DataFrame, None]
# tomograms.star microscope columns -> read_tomograms keys
MICROSCOPE = {"voltage": "rlnVoltage", "cs": "rlnSphericalAberration",
              "amplitude_contrast": "rlnAmplitudeContrast"}


def read_tomograms(path: PathLike) -> pd.DataFrame:
    """Read a RELION 5 tomograms.star (Warp 2's too).

    Returns:
        DataFrame with ``tomo_name`` (str), ``size_x, size_y, size_z`` (unbinned
        tilt-series px), ``tilt_series_pixel_size`` (Å) and ``binning``
        (rlnTomoTomogramBinning, NaN if absent), one row per tomogram; and ``voltage``
        (kV), ``cs`` (mm), ``amplitude_contrast`` (NaN if absent).
    """
    blocks = read_star(path)
    table = None
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and "rlnTomoName" in block.columns \
                and "rlnTomoSizeX" in block.columns:
            table = block
            break
    if table is None:
        raise FormatError(path, "not a RELION 5 tomograms.star (no loop with rlnTomoName "
                                "and rlnTomoSizeX/Y/Z)")
    missing = [c for c in ("rlnTomoSizeY", "rlnTomoSizeZ", "rlnTomoTiltSeriesPixelSize")
               if c not in table.columns]
    if missing:
        raise FormatError(path, f"tomograms.star lacks {missing}")
    out = pd.DataFrame({
        "tomo_name": table["rlnTomoName"].astype(str).str.strip(),
        "size_x": pd.to_numeric(table["rlnTomoSizeX"], errors="coerce"),
        "size_y": pd.to_numeric(table["rlnTomoSizeY"], errors="coerce"),
        "size_z": pd.to_numeric(table["rlnTomoSizeZ"], errors="coerce"),
        "tilt_series_pixel_size": pd.to_numeric(table["rlnTomoTiltSeriesPixelSize"],
                                                errors="coerce"),
        "binning": pd.to_numeric(table.get("rlnTomoTomogramBinning", np.nan),
                                 errors="coerce"),
        **{key: pd.to_numeric(table.get(label, np.nan), errors="coerce")
           for key, label in MICROSCOPE.items()},
    })
    bad = out[["size_x", "size_y", "size_z", "tilt_series_pixel_size"]].isna().any(axis=1)
    if bad.any():
        raise FormatError(path, f"tomogram {out['tomo_name'][bad].iloc[0]!r} has a missing or "
                                "non-numeric size or pixel size")
    twice = out["tomo_name"][out["tomo_name"].duplicated()]
    if len(twice):
        raise FormatError(path, f"tomogram {twice.iloc[0]!r} is listed twice")
    return out.reset_index(drop=True)


def write_tomograms(path: PathLike, tomograms: pd.DataFrame, overwrite: bool = False,
                    voltage: float = 300.0, cs: float = 2.7, amplitude_contrast: float = 0.1,
                    hand: float = -1.0) -> None:
    """Write a minimal RELION 5 tomograms.star from a ``read_tomograms``-style table.

    The microscope values (kV, mm, fraction) are RELION's required columns; give the real
    ones when the file is used for reconstruction rather than only for coordinates.
    """
    t = tomograms
    binning = t["binning"] if "binning" in t else pd.Series(np.nan, index=t.index)
    block = pd.DataFrame({
        "rlnTomoName": t["tomo_name"].astype(str),
        "rlnVoltage": float(voltage),
        "rlnSphericalAberration": float(cs),
        "rlnAmplitudeContrast": float(amplitude_contrast),
        "rlnMicrographOriginalPixelSize": t["tilt_series_pixel_size"].astype(float),
        "rlnTomoHand": float(hand),
        "rlnOpticsGroupName": "optics1",
        "rlnTomoTiltSeriesPixelSize": t["tilt_series_pixel_size"].astype(float),
        "rlnTomoTomogramBinning": binning.fillna(1.0).astype(float),
        "rlnTomoSizeX": t["size_x"].round().astype(np.int64),
        "rlnTomoSizeY": t["size_y"].round().astype(np.int64),
        "rlnTomoSizeZ": t["size_z"].round().astype(np.int64),
    })
    write_star(path, {"global": block}, overwrite=overwrite, version="50001")


def as_tomograms(tomograms: TomogramsLike, path: PathLike | None) -> pd.DataFrame | None:
    """A tomograms table from a path, an existing table, or None."""
    if tomograms is None:
        return None
    if isinstance(tomograms, pd.DataFrame):
        return tomograms
    p = Path(tomograms)
    if not p.exists():
        raise FormatError(p, "no such tomograms.star")
    return read_tomograms(p)


# Suffixes tools add to a tomogram's name (Warp 1: NAME.mrc.tomostar; IMOD: NAME_rec.mrc,
# NAME.st), removed repeatedly before names are compared.
_NAME_SUFFIXES = (".tomostar", ".mrc", ".st", "_rec")


def normalise_tomo_name(name: str) -> str:
    """``name`` without the usual tool suffixes: ``TS_01.mrc.tomostar`` -> ``TS_01``,
    ``TS_01_rec.mrc`` -> ``TS_01``; case and leading zeros are kept."""
    text = str(name).strip()
    changed = True
    while changed:
        changed = False
        for suffix in _NAME_SUFFIXES:
            if text.lower().endswith(suffix) and len(text) > len(suffix):
                text, changed = text[:-len(suffix)], True
    return text


def read_name_map(path: PathLike) -> dict[str, str]:
    """``{name in the particle file: name in tomograms.star}`` from a two-column text file
    (whitespace or comma separated, ``#`` comments)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(p, f"cannot read tomogram name map ({exc})") from None
    mapping: dict[str, str] = {}
    for k, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise FormatError(p, f"line {k}: a tomogram name map line is 'particle_name "
                                 f"tomograms_star_name', got {line.strip()[:60]!r}")
        mapping[parts[0]] = parts[1]
    return mapping


def match_tomo_names(names: list[str], known: list[str], path: PathLike | None,
                     name_map: PathLike | dict[str, str] | None = None) -> dict[str, str]:
    """``{particle tomogram name: tomograms.star name}`` for each of ``names`` that matches.

    A name matches through ``name_map`` first, then exactly, then after
    ``normalise_tomo_name`` on both sides (when that is unambiguous). Matches that were not
    exact are reported with a FormatWarning naming each pair.
    """
    mapping = read_name_map(name_map) if isinstance(name_map, (str, Path)) \
        else dict(name_map or {})
    known_set = set(known)
    by_norm: dict[str, list[str]] = {}
    for k in known:
        by_norm.setdefault(normalise_tomo_name(k), []).append(k)
    out: dict[str, str] = {}
    inexact: list[str] = []
    for name in names:
        if name in mapping:
            if mapping[name] not in known_set:
                raise FormatError(name_map if isinstance(name_map, (str, Path)) else path,
                                  f"maps {name!r} to {mapping[name]!r}, which tomograms.star "
                                  "does not list")
            out[name] = mapping[name]
        elif name in known_set:
            out[name] = name
        elif len(by_norm.get(normalise_tomo_name(name), [])) == 1:
            out[name] = by_norm[normalise_tomo_name(name)][0]
        else:
            continue
        if out[name] != name:
            inexact.append(f"{name!r} -> {out[name]!r}")
    if inexact:
        warn(path, f"tomogram names matched to tomograms.star: {', '.join(inexact[:8])}"
                   + (f" (and {len(inexact) - 8} more)" if len(inexact) > 8 else ""))
    return out


def tomogram_rows(names: pd.Series, tomos: pd.DataFrame, path: PathLike | None,
                  name_map: PathLike | dict[str, str] | None = None,
                  required: bool = True) -> pd.DataFrame:
    """One row of ``tomos`` per particle (NaN rows where a name does not match); its
    ``tomo_name`` is the tomograms.star name the particle's name matched.

    With ``required``, a name that matches nothing is a FormatError that lists the names
    and says how to map them.
    """
    codes, uniques = pd.factorize(names, use_na_sentinel=False)
    uniques = [str(u) for u in uniques]
    known = [str(k) for k in tomos["tomo_name"]]
    matched = match_tomo_names(uniques, known, path, name_map)
    unknown = [u for u in uniques if u not in matched]
    if unknown and required:
        raise FormatError(path, f"tomogram(s) {unknown[:5]} are not in tomograms.star (it "
                                f"lists {known[:8]}), even without the suffixes "
                                f"{', '.join(_NAME_SUFFIXES)}: pass a name map "
                                "(--tomo-name-map FILE: lines 'particle_name star_name')")
    per_unique = tomos.set_index("tomo_name").reindex([matched.get(u) for u in uniques])
    # spread column by column: DataFrame.iloc over a million rows is several times slower
    rows = {"tomo_name": np.array(per_unique.index, dtype=object)[codes]}
    rows.update({c: per_unique[c].to_numpy()[codes] for c in per_unique.columns})
    return pd.DataFrame(rows)


def geometry(names: pd.Series, path: PathLike | None, tomograms: TomogramsLike = None,
             tomo_size_xyz: Any = None, tilt_series_pixel_size: Any = None,
             need_size: bool = True, fallback_pixel: np.ndarray | None = None,
             optics_pixel: np.ndarray | None = None,
             tomo_name_map: PathLike | dict[str, str] | None = None,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle tomogram size (N, 3; unbinned px) and tilt-series pixel size (N,; Å).

    Pixel size, in RELION's order (``ParticleSet::getPosition`` uses the optics group's):
    the explicit option, else ``optics_pixel`` (the particles' optics groups), else
    tomograms.star, else ``fallback_pixel``. Where optics and tomograms.star disagree the
    optics value is used and a FormatWarning says so. Explicit sizes win over tomograms.star.
    Raises FormatError naming what is missing when a size (if ``need_size``) or a pixel size
    cannot be found.
    """
    n = len(names)
    size = np.full((n, 3), np.nan)
    # copies: the inputs may be read-only views of pandas columns (copy-on-write)
    pixel = np.full(n, np.nan) if fallback_pixel is None else np.array(fallback_pixel, float)
    optics = np.full(n, np.nan) if optics_pixel is None else np.array(optics_pixel, float)
    tomos = as_tomograms(tomograms, path)
    if tomos is not None:
        rows = tomogram_rows(names, tomos, path, tomo_name_map,
                             required=tomo_size_xyz is None)
        size[:] = rows[["size_x", "size_y", "size_z"]].to_numpy(dtype=float)
        star_px = rows["tilt_series_pixel_size"].to_numpy(dtype=float)
        both = np.isfinite(star_px) & np.isfinite(optics)
        differ = both & ~np.isclose(star_px, optics, rtol=1e-4, atol=0)
        if differ.any() and tilt_series_pixel_size is None:
            i = int(np.flatnonzero(differ)[0])
            warn(path, f"{int(differ.sum())} particle(s) have an optics pixel size "
                       f"({optics[i]:g} Å) that differs from tomograms.star's "
                       f"({star_px[i]:g} Å for {names.iloc[i]!r}); using the optics group's,"
                       " as RELION does")
        pixel = np.where(np.isfinite(star_px), star_px, pixel)
    pixel = np.where(np.isfinite(optics), optics, pixel)
    explicit_size = parse_size_xyz(tomo_size_xyz, path)
    if explicit_size is not None:
        size[:] = explicit_size
    explicit_px = positive_or_none(tilt_series_pixel_size, "tilt-series pixel size", path)
    if explicit_px is not None:
        pixel[:] = explicit_px
    if need_size and n and not np.isfinite(size).all():
        raise FormatError(path, "RELION 5 centred coordinates need the tomogram sizes "
                                "(rlnTomoSizeX/Y/Z): pass tomograms=tomograms.star "
                                "(--tomograms) or tomo_size_xyz (--tomo-size XxYxZ, unbinned "
                                "tilt-series px)")
    if n and not np.isfinite(pixel).all():
        raise FormatError(path, "the tilt-series pixel size is unknown: pass "
                                "tomograms=tomograms.star (--tomograms) or "
                                "tilt_series_pixel_size (--tilt-series-pixel-size)")
    return size, pixel


def describe_tomograms(path: PathLike, blocks: dict) -> Summary:
    """``cryovis info`` facts of a RELION 5 / Warp 2 tomograms.star from its STAR blocks."""
    table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)
                  and ("rlnTomoName" in b.columns or "rlnTomoTiltSeriesName" in b.columns)),
                 None)
    if table is None:
        raise FormatError(path, "tomograms STAR without a loop of rlnTomoName")
    name_col = "rlnTomoName" if "rlnTomoName" in table.columns else "rlnTomoTiltSeriesName"
    out: dict[str, Any] = {"kind": "tomograms", "format": "RELION 5 tomograms.star",
                           "count": len(table), "tomograms": [str(t) for t in table[name_col]]}
    for col, key in (("rlnTomoTiltSeriesPixelSize", "tilt_series_pixel_size_angst"),
                     ("rlnTomoTomogramBinning", "tomogram_binning"),
                     ("rlnVoltage", "voltage_kv"),
                     ("rlnSphericalAberration", "cs_mm"),
                     ("rlnAmplitudeContrast", "amplitude_contrast")):
        out[key] = distinct_numbers(table[col]) if col in table.columns else None
    size_cols = ["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]
    out["sizes_xyz_unbinned_px"] = sorted({"x".join(r) for r in table[size_cols].astype(str)
                                           .to_numpy()}) \
        if set(size_cols) <= set(table.columns) else None
    out["per_tilt_series_blocks"] = sum(isinstance(b, pd.DataFrame) and b is not table
                                        for b in blocks.values())
    return out  # type: ignore[return-value]
