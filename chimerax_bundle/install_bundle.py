"""Build the bundle's wheel with a ChimeraX Python's own pip and install it there.

    python chimerax_bundle/install_bundle.py PYTHON_OF_CHIMERAX [--wheel-dir DIR]

The build runs in a copy of this folder (ChimeraX's bundle builder writes build/ and dist/
beside pyproject.toml) and installs with ``--no-deps``: the bundle needs only the base
``cryoet-integration`` distribution, which is installed separately without moving
ChimeraX's numpy. Used by tests/test_chimerax_bundle.py and
benchmarks/bench_chimerax_render.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_and_install(python: str | Path, wheel_dir: Path | None = None) -> Path:
    """Build ChimeraX-Cryovis with ``python -m pip wheel`` and install it; returns the wheel.

    Raises:
        RuntimeError: the build or the install failed (with pip's last output lines).
    """
    work = Path(tempfile.mkdtemp(prefix="cryovis-bundle-"))
    try:
        src = work / "bundle"
        shutil.copytree(HERE, src, ignore=shutil.ignore_patterns(
            "__pycache__", "build", "dist", "*.egg-info", "tests", "install_bundle.py"))
        out = Path(wheel_dir) if wheel_dir else work / "dist"
        _pip(python, ["wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(out),
                      str(src)], cwd=src)
        wheels = sorted(out.glob("ChimeraX_Cryovis-*.whl"), key=lambda p: p.stat().st_mtime)
        if not wheels:
            raise RuntimeError(f"{out}: no ChimeraX_Cryovis wheel was built")
        _pip(python, ["install", "-q", "--no-deps", "--force-reinstall", str(wheels[-1])])
        if wheel_dir:
            return wheels[-1]
        kept = Path(tempfile.gettempdir()) / wheels[-1].name
        shutil.copy2(wheels[-1], kept)
        return kept
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pip(python, args: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run([str(python), "-m", "pip", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"pip {args[0]} failed (exit {proc.returncode}):\n{tail}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("python", help="ChimeraX's Python (e.g. the 'python' of a ChimeraX "
                        "venv, or ChimeraX.app/Contents/bin/python3.11)")
    parser.add_argument("--wheel-dir", type=Path, help="keep the wheel in this folder")
    args = parser.parse_args()
    print(build_and_install(args.python, args.wheel_dir))
