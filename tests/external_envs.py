"""Cached foreign Pythons for the integration tests: real Scipion 3 and real ChimeraX 1.7.1.

The later Scipion-plugin and ChimeraX-bundle suites stand on these::

    from external_envs import chimerax_env, install_project, scipion_env
    env = scipion_env()          # creates it the first time (minutes), then reuses it
    install_project(env)         # this checkout's wheel, never moving the env's numpy

Environments live outside the clone, in ``$CRYOVIS_ENV_CACHE`` (default
``~/.cache/cryovis/envs``), as ``scipion-<key>`` and ``chimerax-<key>``: ``key`` hashes
what defines the env (requirement lines, the ChimeraX headless kit's files, the Python
version), so a change to any of them builds a fresh env next to the old one. Creation
holds a lock and writes a completion marker last; a directory without the marker is the
remains of an interrupted build and is rebuilt from scratch. (Venvs hard-code their own
path in their scripts, so "build in a temp dir, then rename" would leave a broken env.)

``install_project`` stamps the env with a digest of the sources it installed and does
nothing when they have not changed since.

Build them ahead of a test run with ``.venv/bin/python tests/external_envs.py [scipion]
[chimerax]``. Environment variables: ``CRYOVIS_ENV_CACHE`` (cache root),
``CRYOVIS_EXTERNAL_PYTHON`` (the interpreter the envs are made from; default ``python3.11``),
``CRYOVIS_SHARED`` (the shared folder holding ``chimerax-headless/``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CRYOVIS_SHARED", REPO.parent / "shared"))
CHIMERAX_KIT = SHARED / "chimerax-headless"

# Scipion 3 core and its tomography plugin, as docs/scipion-headless.md installs them.
SCIPION_REQUIREMENTS = ("scipion-pyworkflow", "scipion-em", "scipion-em-tomo", "pytest")
PROJECT = "cryoet-integration"

COMPLETE_MARKER = ".cryovis-env-complete"
PROJECT_STAMP = ".cryovis-project-digest"


class ExternalEnvError(RuntimeError):
    """A foreign environment could not be created or could not take our package."""


def cache_root() -> Path:
    """Where the cached environments live (``$CRYOVIS_ENV_CACHE`` or ``~/.cache/cryovis/envs``)."""
    return Path(os.environ.get("CRYOVIS_ENV_CACHE", Path.home() / ".cache" / "cryovis" / "envs"))


@functools.cache
def base_python() -> Path:
    """The real interpreter (not a pyenv shim) the foreign envs are created from."""
    name = os.environ.get("CRYOVIS_EXTERNAL_PYTHON", "python3.11")
    exe = shutil.which(name)
    if exe is None:
        raise ExternalEnvError(f"{name}: not found on PATH (set CRYOVIS_EXTERNAL_PYTHON)")
    out = subprocess.run([exe, "-c", "import sys; print(sys.executable)"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@functools.cache
def _python_version() -> str:
    out = subprocess.run([str(base_python()), "-c", "import sys; print(sys.version.split()[0])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def env_key(*parts: bytes) -> str:
    """Short hash (12 hex digits) of everything that defines an environment."""
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def _kit_content() -> bytes:
    # Every file of the kit, not only setup.sh: it reads requirements.txt, the stubs and the
    # stand-in modules, and a change to any of them changes the env it builds.
    if not (CHIMERAX_KIT / "setup.sh").is_file():
        raise ExternalEnvError(f"{CHIMERAX_KIT}/setup.sh: missing (set CRYOVIS_SHARED)")
    return b"".join(p.name.encode() + b"\0" + p.read_bytes()
                    for p in sorted(CHIMERAX_KIT.iterdir()) if p.is_file())


def scipion_env_path() -> Path:
    """Where the Scipion env for the current requirement lines lives (created or not)."""
    key = env_key("\n".join(SCIPION_REQUIREMENTS).encode(), _python_version().encode())
    return cache_root() / f"scipion-{key}"


def chimerax_env_path() -> Path:
    """Where the ChimeraX env for the current headless kit lives (created or not)."""
    return cache_root() / f"chimerax-{env_key(_kit_content(), _python_version().encode())}"


def env_python(env: Path) -> Path:
    """The interpreter of a cached environment."""
    return env / "bin" / "python"


@contextlib.contextmanager
def env_lock(env: Path) -> Iterator[None]:
    """Exclusive lock on one environment (its creation, or installing into it)."""
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


NETWORK_HINT = ("; it needs the package index (a fresh machine without network access cannot"
                " build the foreign envs)")


def _run(cmd: Sequence[str], what: str, env: dict | None = None, hint: str = "") -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ExternalEnvError(f"{what} failed (exit {proc.returncode}){hint}.\n"
                               f"Command: {' '.join(map(str, cmd))}\n{tail}")
    return proc.stdout


def _ensure(env: Path, build) -> Path:
    if (env / COMPLETE_MARKER).is_file():
        return env
    with env_lock(env):
        if (env / COMPLETE_MARKER).is_file():
            return env
        if env.exists():
            shutil.rmtree(env)  # an interrupted build: never trust half an env
        build(env)
        (env / COMPLETE_MARKER).write_text(json.dumps({"python": _python_version()}) + "\n")
    return env


def _build_scipion(env: Path) -> None:
    _run([base_python(), "-m", "venv", env], f"creating venv {env}")
    _run([env_python(env), "-m", "pip", "install", "-q", *SCIPION_REQUIREMENTS],
         f"installing Scipion 3 into {env}", hint=NETWORK_HINT)


def _build_chimerax(env: Path) -> None:
    # setup.sh calls `python3 -m venv`: put the chosen interpreter first on PATH as python3.
    # A wrapper that execs it, not a symlink: venv links to the path it was started as.
    with tempfile.TemporaryDirectory(prefix="cryovis-py-") as shim:
        wrapper = Path(shim) / "python3"
        wrapper.write_text(f'#!/bin/sh\nexec "{base_python()}" "$@"\n')
        wrapper.chmod(0o755)
        run_env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
        _run(["bash", CHIMERAX_KIT / "setup.sh", env], f"ChimeraX headless setup into {env}",
             env=run_env, hint=NETWORK_HINT)


def scipion_env() -> Path:
    """A venv with real Scipion 3 (pyworkflow, pwem, tomo) and pytest; created on first use."""
    return _ensure(scipion_env_path(), _build_scipion)


def chimerax_env() -> Path:
    """A venv with headless ChimeraX 1.7.1 (``../shared/chimerax-headless/setup.sh``)."""
    return _ensure(chimerax_env_path(), _build_chimerax)


def installed_versions(env: Path) -> dict[str, str]:
    """``{distribution name (normalised): version}`` of everything installed in ``env``."""
    code = ("import json, re\nfrom importlib import metadata\n"
            "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
            " for d in metadata.distributions() if d.metadata['Name']}))")
    return json.loads(_run([env_python(env), "-c", code], f"reading versions in {env}"))


def base_requirements(wheel: Path) -> list[str]:
    """The base ``Requires-Dist`` lines of a wheel (those without an ``extra`` marker)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return [req for req in meta.get_all("Requires-Dist") or [] if "extra ==" not in req]


PACKAGE_FILES = ("pyproject.toml", "README.md")
PACKAGE_DIRS = ("cryoet_integration", "formats")


@functools.cache
def project_snapshot() -> tuple[Path, str]:
    """A copy of the files the package is built from, and a digest of them (once per process).

    Copying keeps setuptools' ``build/`` and ``*.egg-info`` out of the work tree, and pins
    what is built and stamped to one moment while others edit the tree.
    """
    tmp = Path(tempfile.mkdtemp(prefix="cryovis-wheel-"))
    atexit.register(shutil.rmtree, tmp, True)
    src = tmp / "src"
    src.mkdir()
    for name in PACKAGE_FILES:
        shutil.copy2(REPO / name, src / name)
    for pkg in PACKAGE_DIRS:
        shutil.copytree(REPO / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return src, digest.hexdigest()


@functools.cache
def project_wheel() -> Path:
    """A wheel of this checkout's snapshot, built once per process into a temporary folder."""
    src, _ = project_snapshot()
    dist = src.parent / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", dist, src], "building the project wheel")
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise ExternalEnvError(f"{dist}: expected one wheel, found {len(wheels)}")
    return wheels[0]


def _installed_digest(env: Path) -> str | None:
    stamp = env / PROJECT_STAMP
    dist_info = list(env.glob("lib/python*/site-packages/cryoet_integration-*.dist-info"))
    return stamp.read_text().strip() if stamp.is_file() and dist_info else None


def install_project(env: Path, force: bool = False) -> None:
    """Install this checkout's base package into ``env`` without moving the env's pins.

    The base requirement lines are installed first under a constraints file that fixes the
    version of everything already in the env (numpy, mrcfile, scipy, ...: pip fails rather
    than move them; it may only add what is missing), then the wheel replaces any earlier
    copy with ``--no-deps``. Nothing is done when the env already holds a copy of exactly
    these sources (a stamp in the env records their digest), unless ``force``.
    Raises ``ExternalEnvError``.
    """
    _, digest = project_snapshot()
    with env_lock(env):
        if not force and _installed_digest(env) == digest:
            return
        (env / PROJECT_STAMP).unlink(missing_ok=True)
        wheel = project_wheel()
        pins = {k: v for k, v in installed_versions(env).items() if k != PROJECT}
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="cryovis-pins-",
                                         delete=False) as fh:
            fh.write("".join(f"{name}=={ver}\n" for name, ver in pins.items()))
        try:
            _run([env_python(env), "-m", "pip", "install", "-q", "-c", fh.name,
                  *base_requirements(wheel)], f"installing the base requirements into {env}",
                 hint=NETWORK_HINT)
        finally:
            os.unlink(fh.name)
        _run([env_python(env), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
              wheel], f"installing {wheel.name} into {env}")
        (env / PROJECT_STAMP).write_text(digest + "\n")


def pip_check(env: Path) -> str:
    """``pip check`` output for ``env`` (empty string when it finds no problem)."""
    proc = subprocess.run([env_python(env), "-m", "pip", "check"], capture_output=True, text=True)
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()


if __name__ == "__main__":
    # `python tests/external_envs.py [scipion|chimerax ...]`: create (or find) the envs.
    for which in sys.argv[1:] or ["scipion", "chimerax"]:
        path = {"scipion": scipion_env, "chimerax": chimerax_env}[which]()
        print(f"{which}: {path}")
