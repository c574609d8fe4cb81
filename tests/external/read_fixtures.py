"""Read every fixture with ``formats`` and write a JSON summary; runs inside foreign Pythons.

    python read_fixtures.py FIXTURES_DIR OUT_JSON
    python -m chimerax.core --nogui --offscreen --exit \
        --script "read_fixtures.py FIXTURES_DIR OUT_JSON"

Standard library + ``formats`` only, so that it runs in Scipion's and ChimeraX's Pythons as
well as in the project's own venv; ``tests/test_external_pythons.py`` compares the three.
Every file goes through ``formats.read_volume`` (a ``FormatError`` there means "not a
volume"); every file that ``formats.detect_format`` recognises goes through
``formats.read_particles``. Only the top-level ``formats`` API is used. A failure is
recorded as ``{"error": ...}`` rather than raised: the comparison shows whether a foreign
env reads a file differently; whether a reader is right is the format tests' business.
Not guarded by ``if __name__ == "__main__"``: ChimeraX runs scripts under another name.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

# RELION 5 particle files give centred Å: reading them needs their tomograms.star (SOURCES.md).
WITH_TOMOGRAMS = {
    "relion/relion5_tutorial_run_data_first120.star": "relion/relion5_tutorial_tomograms.star",
    "relion/cylindra_relion5_class3d_run_it025_data.star": "relion/cylindra_relion5_tomograms.star",
    "relion/cylindra_relion5_picks_particles.star": "relion/cylindra_relion5_tomograms.star",
}


def _clean(message: str, root: Path) -> str:
    return message.replace(str(root), "<fixtures>")


def _float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def summarise_volume(path: Path) -> dict:
    """Shape ``[z, y, x]``, dtype, voxel size (Å), origin ``(x, y, z)`` (Å), data digest."""
    import numpy as np

    import formats

    vol = formats.read_volume(path, mmap=False)
    data = np.ascontiguousarray(vol.data)
    return {
        "shape_zyx": list(data.shape),
        "dtype": data.dtype.str,
        "voxel_size": _float(vol.voxel_size),
        "origin_xyz": [_float(v) for v in vol.origin],
        "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
    }


def summarise_particles(path: Path, **options) -> dict:
    """Particle count, columns, voxel sizes (Å), tomogram names and per-column sums."""
    import numpy as np
    import pandas as pd

    import formats

    table = formats.read_particles(path, **options)
    sums = {}
    for col in table.columns:
        if pd.api.types.is_numeric_dtype(table[col]):
            values = table[col].to_numpy(dtype=np.float64)
            sums[col] = [_float(np.nansum(values)), int(np.isnan(values).sum())]
    return {
        "count": len(table),
        "columns": [str(c) for c in table.columns],
        "voxel_sizes": sorted({_float(v) for v in table["voxel_size"]}, key=str),
        "tomo_names": sorted({str(v) for v in table["tomo_name"]}),
        "sums": sums,
    }


def _attempt(func, path: Path, root: Path, **options) -> dict:
    try:
        return func(path, **options)
    except Exception as exc:  # recorded, not raised: see the module docstring
        return {"error": f"{type(exc).__name__}: {_clean(str(exc), root)}"}


def summarise_fixtures(root: Path) -> dict:
    """``{relative path: {"volume": ..., "particles": ...}}`` for every file under ``root``."""
    import formats

    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        entry = {}
        try:
            entry["volume"] = summarise_volume(path)
        except formats.FormatError:
            pass  # not a volume file (or one that reads nowhere: the other env's entry shows it)
        except Exception as exc:  # recorded, not raised: see the module docstring
            entry["volume"] = {"error": f"{type(exc).__name__}: {_clean(str(exc), root)}"}
        try:
            entry["particle_format"] = formats.detect_format(path)
        except formats.FormatError:
            pass
        else:
            entry["particles"] = _attempt(summarise_particles, path, root)
        tomograms = WITH_TOMOGRAMS.get(path.relative_to(root).as_posix())
        if tomograms is not None:
            entry["particles_with_tomograms"] = _attempt(summarise_particles, path, root,
                                                         tomograms=root / tomograms)
        if entry:
            files[path.relative_to(root).as_posix()] = entry
    return files


def main(argv: list[str]) -> None:
    """Write the summary of ``argv[0]`` (fixtures folder) to ``argv[1]`` (JSON)."""
    import numpy

    import formats

    root, out = Path(argv[0]).resolve(), Path(argv[1])
    files = summarise_fixtures(root)  # first: it fills the lazily loaded registry
    report = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "numpy": numpy.__version__,
        "formats_file": formats.__file__,
        "in_chimerax_session": "session" in globals(),
        "registry": sorted(formats.FORMATS),
        "files": files,
    }
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


main(sys.argv[1:])
